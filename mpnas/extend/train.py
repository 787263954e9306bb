"""Train what add-domain added, and nothing else: new nodes, the new classifier and the new domain's BN rows.

Only the new domain's batches run (train mode), so the only BN statistics that move are the new domain's rows; the
optimiser sees only the trainable parameters (mpnas.extend.grow.trainable_parameters), and a parameter shared
row-wise (per-domain affine BN) has its other rows' gradients zeroed and no weight decay, so those rows never move.
`mpnas.extend.grow.old_tensors_changed` checks the result after training.
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable, Optional

import torch
import torch.nn.functional as F

from mpnas.config import MpnasConfig
from mpnas.data.loading import MultiDomainLoader
from mpnas.data.prepared import PreparedDataset
from mpnas.extend.grow import Trainable, freeze_all_but
from mpnas.loop import (build_optimizer, format_duration, rng_states, set_lr, set_rng_states, warmup_cosine,
                        warmup_steps)
from mpnas.models.multipath import MultiPathNet

Log = Callable[[str], None]


class NewDomainTrainer:
    """The state of training one added domain (what a checkpoint captures)."""

    def __init__(self, cfg: MpnasConfig, ds: PreparedDataset, grown: MultiPathNet, domain: str,
                 trainable: Trainable, device: torch.device):
        tc = self.tc = cfg.train
        self.grown, self.domain = grown.to(device), domain
        self.hooks = freeze_all_but(grown, trainable)
        whole = [(n, p) for n, p, row in trainable if row is None]
        rows = [p for _, p, row in trainable if row is not None]
        decay = [p for n, p in whole if p.ndim > 1 and not n.startswith("classifiers.")]
        no_decay = [p for n, p in whole if not (p.ndim > 1 and not n.startswith("classifiers."))]
        groups = [{"params": decay, "weight_decay": tc.weight_decay},
                  {"params": no_decay + list({id(p): p for p in rows}.values()), "weight_decay": 0.0}]
        self.optimizer = build_optimizer([g for g in groups if g["params"]], tc)
        self.loader = MultiDomainLoader(ds, [domain], "train", tc.batch_size, cfg.data, seed=cfg.seed + 17,
                                        device=device, augment=True)
        self.warmup = warmup_steps(tc.warmup_fraction, tc.steps)
        self.step, self.elapsed = 0, 0.0
        self.history: list[dict[str, Any]] = []

    def run_step(self) -> dict[str, Any]:
        t, tc = self.step, self.tc
        lr = warmup_cosine(t, tc.steps, self.warmup, tc.lr)
        x, y = self.loader.next_batch()[self.domain]
        self.grown.train()
        logits = self.grown(x, self.domain)
        loss = F.cross_entropy(logits, y, label_smoothing=tc.label_smoothing)
        loss_f = float(loss.detach())
        if not math.isfinite(loss_f):
            raise FloatingPointError(f"add-domain training step {t + 1}: non-finite loss (try a lower train.lr)")
        set_lr(self.optimizer, lr)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return {"step": t + 1, "domain": self.domain, "loss": loss_f, "lr": lr,
                "train_accuracy": float((logits.argmax(1) == y).float().mean())}

    def state_dict(self) -> dict[str, Any]:
        return {"step": self.step, "elapsed": self.elapsed, "history": list(self.history),
                "model": self.grown.state_dict(), "optimizer": self.optimizer.state_dict(),
                "loader": self.loader.state_dict(), "rng": rng_states()}

    def load_state_dict(self, st: dict[str, Any]) -> None:
        self.grown.load_state_dict(st["model"])
        self.optimizer.load_state_dict(st["optimizer"])
        self.loader.load_state_dict(st["loader"])
        set_rng_states(st["rng"])
        self.step, self.elapsed, self.history = int(st["step"]), float(st["elapsed"]), list(st["history"])

    def run(self, save: Callable[[dict[str, Any]], None], log: Optional[Log] = None,
            on_log: Optional[Callable[[int, dict[str, float]], None]] = None) -> None:
        start_step, start, base = self.step, time.perf_counter(), self.elapsed
        try:
            while self.step < self.tc.steps:
                row = self.run_step()
                self.step += 1
                self.history.append(row)
                self.elapsed = base + time.perf_counter() - start
                done = self.step == self.tc.steps
                if self.step % self.tc.log_every == 0 or done:
                    rate = (self.step - start_step) / max(1e-9, time.perf_counter() - start)
                    eta = (self.tc.steps - self.step) / rate if rate > 0 else math.inf
                    if log is not None:
                        log(f"add-domain train {self.step}/{self.tc.steps} | {rate:.2f} step/s | "
                            f"ETA {format_duration(eta)} | loss {row['loss']:.3f} | "
                            f"train acc {row['train_accuracy']:.3f}")
                    if on_log is not None:
                        on_log(self.step, {k: float(v) for k, v in row.items() if isinstance(v, (int, float))})
                if self.step % self.tc.checkpoint_every == 0 or done:
                    save(self.state_dict())
        finally:
            for h in self.hooks:
                h.remove()
            self.grown.eval()
