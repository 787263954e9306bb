"""Train what add-domain added, and nothing else: new nodes, the new classifier and the new domain's BN rows.

Only the new domain's batches run (train mode), so the only BN statistics that move are the new domain's rows; the
optimiser sees only the trainable parameters (mpnas.extend.grow.trainable_parameters), and a parameter shared
row-wise (per-domain affine BN) has its other rows' gradients zeroed and no weight decay, so those rows never move.
`mpnas.extend.grow.old_tensors_changed` checks the result after training.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import torch
import torch.nn.functional as F

from mpnas.config import MpnasConfig
from mpnas.data.loading import MultiDomainLoader
from mpnas.data.prepared import PreparedDataset
from mpnas.extend.grow import Trainable, freeze_all_but
from mpnas.extend.phase import Log, Phase
from mpnas.loop import OnLog, build_optimizer, rng_states, set_rng_states, warmup_cosine, warmup_steps
from mpnas.models.multipath import MultiPathNet


class NewDomainTrainer(Phase):
    """The state of training one added domain (what a checkpoint captures)."""

    name, noun = "train", "training"

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
        self._start(tc.steps, tc.log_every, tc.checkpoint_every)

    def run_step(self) -> dict[str, Any]:
        t, tc = self.step, self.tc
        lr = warmup_cosine(t, tc.steps, self.warmup, tc.lr)
        x, y = self.loader.next_batch()[self.domain]
        self.grown.train()
        logits = self.grown(x, self.domain)
        loss_f = self.descend(F.cross_entropy(logits, y, label_smoothing=tc.label_smoothing), lr)
        return {"step": t + 1, "domain": self.domain, "loss": loss_f, "lr": lr,
                "train_accuracy": float((logits.argmax(1) == y).float().mean())}

    def progress(self, row: dict[str, Any]) -> str:
        return f"loss {row['loss']:.3f} | train acc {row['train_accuracy']:.3f}"

    # ---- state (weights-only checkpoint contents; Phase adds step, elapsed and history)
    def _state(self) -> dict[str, Any]:
        return {"model": self.grown.state_dict(), "optimizer": self.optimizer.state_dict(),
                "loader": self.loader.state_dict(), "rng": rng_states()}

    def _load(self, st: dict[str, Any]) -> None:
        self.grown.load_state_dict(st["model"])
        self.optimizer.load_state_dict(st["optimizer"])
        self.loader.load_state_dict(st["loader"])
        set_rng_states(st["rng"])

    def run(self, save: Callable[[dict[str, Any]], None], log: Optional[Log] = None,
            on_log: Optional[OnLog] = None) -> None:
        """Phase.run, then the freezing hooks come off and the model is left in eval mode (also on an error)."""
        try:
            super().run(save, log, on_log)
        finally:
            for h in self.hooks:
                h.remove()
            self.grown.eval()
