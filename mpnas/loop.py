"""What the two training loops (the search in mpnas.nas.search, the final training in mpnas.training.trainer) share:
RNG state for an exact resume, the optimiser, the warm-up + cosine learning rate, the weight-decay rule, the progress
hook's signature and the time format of progress lines. Checkpoints themselves are written by mpnas.nas.checkpoint
(`save_state`/`load_state`, weights-only loadable).
"""

from __future__ import annotations

import math
import random
from typing import Any, Callable, Iterable

import numpy as np
import torch
from torch import nn

from mpnas.config import OptimizerConfig

# The progress hook of both loops: `on_log(step, metrics)`, step = steps done so far, metrics = flat numbers.
OnLog = Callable[[int, dict[str, float]], None]


# ------------------------------------------------------------------------------------------------------ RNG state
def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


def rng_states() -> dict[str, Any]:
    """Every global RNG a step may draw from (checkpointed so a resumed run draws what the uninterrupted one did)."""
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def set_rng_states(s: dict[str, Any]) -> None:
    torch.set_rng_state(s["torch"])
    np.random.set_state(s["numpy"])
    random.setstate(s["python"])
    if s.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(s["cuda"])


# ------------------------------------------------------------------------------------------ optimiser and schedule
def build_optimizer(groups: list[dict], cfg: OptimizerConfig) -> torch.optim.Optimizer:
    """sgd: momentum SGD; rmsprop: the TuNAS settings (decay 0.9, epsilon 1.0); adamw: decoupled decay."""
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum)
    if cfg.optimizer == "rmsprop":
        return torch.optim.RMSprop(groups, lr=cfg.lr, alpha=0.9, eps=1.0, momentum=cfg.momentum)
    return torch.optim.AdamW(groups, lr=cfg.lr)


def warmup_steps(fraction: float, total: int) -> int:
    """The warm-up length: floor(fraction x total), with a guard so 0.29 x 100 = 28.999... still counts 29."""
    return int(fraction * total + 1e-9)


def warmup_cosine(step: int, total: int, warmup: int, peak: float = 1.0) -> float:
    """The learning rate of the step about to run (0-based): linear warm-up to `peak` over `warmup` steps, then
    cosine decay to 0 at `total`."""
    if step < warmup:
        return peak * ((step + 1) / warmup)
    return 0.5 * peak * (1.0 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


# ------------------------------------------------------------------------------------------------ weight decay
def decay_groups(named: Iterable[tuple[str, nn.Parameter]], weight_decay: float,
                 extra: Iterable[nn.Parameter] = ()) -> list[dict]:
    """Two optimiser groups: decay on convolution kernels and the head's linear weights only.

    No decay on batch-norm affine parameters and biases (decaying them only shrinks the normalisation scale), nor on
    the per-domain classifiers (parameters named `classifiers.*`): a tiny domain's classifier sees few updates per
    step, and decaying it towards zero every step biases it to uniform predictions. `extra` (loss-weighting
    parameters) is never decayed."""
    decay, no_decay = [], []
    for name, p in named:
        (no_decay if p.ndim <= 1 or name.startswith("classifiers.") else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay + list(extra), "weight_decay": 0.0}]


# ------------------------------------------------------------------------------------------------------ progress
def format_duration(seconds: float) -> str:
    """1h02m03s / 2m03s; `?` while unknown (no rate yet)."""
    if not math.isfinite(seconds):
        return "?"
    m, s = divmod(int(round(max(0.0, seconds))), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"
