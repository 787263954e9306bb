"""Optimiser and learning-rate schedule of the final training (docs/method.md section 7.3).

Weight decay applies to convolution kernels and the head's linear weights only. It skips batch-norm affine parameters
and biases (decaying them only shrinks the normalisation scale) and the per-domain classifiers: a tiny domain's
classifier sees few updates per step, and decaying it towards zero every step biases it to uniform predictions.
"""

from __future__ import annotations

import functools
import math
from typing import Iterable

import torch
from torch import nn

from mpnas.config import SearchConfig, TrainConfig


def parameter_groups(model: nn.Module, weight_decay: float, extra: Iterable[nn.Parameter] = ()) -> list[dict]:
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.ndim <= 1 or name.startswith("classifiers."):
            no_decay.append(p)
        else:
            decay.append(p)
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay + list(extra), "weight_decay": 0.0}]


def build_optimizer(groups: list[dict], cfg: TrainConfig | SearchConfig) -> torch.optim.Optimizer:
    """sgd: momentum SGD; rmsprop: the TuNAS settings (decay 0.9, epsilon 1.0); adamw: decoupled decay."""
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum)
    if cfg.optimizer == "rmsprop":
        return torch.optim.RMSprop(groups, lr=cfg.lr, alpha=0.9, eps=1.0, momentum=cfg.momentum)
    return torch.optim.AdamW(groups, lr=cfg.lr)


def lr_factor(step: int, total: int, warmup: int) -> float:
    """Linear warm-up over `warmup` steps, then cosine decay to zero at `total` (factor for the step about to run)."""
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))


def build_scheduler(opt: torch.optim.Optimizer, total_steps: int, warmup_fraction: float
                    ) -> torch.optim.lr_scheduler.LambdaLR:
    warmup = int(round(warmup_fraction * total_steps))
    return torch.optim.lr_scheduler.LambdaLR(opt, functools.partial(lr_factor, total=total_steps, warmup=warmup))
