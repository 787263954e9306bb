"""Per-domain loss weighting behind one interface, selected by name (the LibMTL pattern).

* `uniform`     w_d = 1.
* `abdp`        adaptive balanced domain prioritisation, our documented reading of the MPNAS paper
                (docs/method.md section 6.3; the paper's own formula is not public):
                  KPI     k_d <- mu * k_d + (1 - mu) * acc_d        (EMA of training-batch top-1, debiased)
                  prio    p_d = -(1 - k_d)^gamma * log(k_d)         (focal / dynamic-task-prioritisation form)
                  balance w_d = (1 - floor) * D * p_d / sum_j p_j + floor, clipped to [clip_min, clip_max]
                Harder domains (lower accuracy) get larger weights; the floor keeps easy domains from starving; the
                weights have mean ~1 so learning-rate semantics match uniform. Weights are 1 during burn-in and are
                refreshed every `update_every` steps.
* `dwa`         dynamic weight averaging (Liu et al., CVPR 2019): w_d = D softmax(r_d / T), r_d = L_d(now) / L_d(before),
                losses averaged over windows of `update_every` steps.
* `uncertainty` homoscedastic uncertainty weighting (Kendall et al., CVPR 2018): L = sum_d exp(-s_d) L_d + s_d with
                learnable s_d; reported weight exp(-s_d).

Every strategy combines as L = (1/|present|) * sum_d w_d * L_d, with w_d a constant for autograd (except the learnable
uncertainty terms).
"""

from __future__ import annotations

import math
from typing import Iterable

import torch
from torch import nn

from mpnas.config import WeightingConfig


class LossWeighting:
    """Base: uniform weights. Subclasses override `_compute` (and `update` where they keep statistics)."""

    name = "uniform"

    def __init__(self, cfg: WeightingConfig, domains: list[str], total_steps: int):
        self.cfg, self.domains, self.total_steps = cfg, list(domains), max(1, total_steps)
        self._w = {d: 1.0 for d in self.domains}

    def weights(self, step: int) -> dict[str, float]:
        """Current weights (mean ~1) to apply at `step`."""
        return dict(self._w)

    def update(self, step: int, losses: dict[str, float], accuracies: dict[str, float]) -> None:
        """Feed the statistics of a finished step (losses/accuracies of the domains present in it)."""

    def combine(self, losses: dict[str, torch.Tensor], step: int) -> torch.Tensor:
        w = self.weights(step)
        return torch.stack([w[d] * loss for d, loss in losses.items()]).mean()

    def parameters(self) -> Iterable[nn.Parameter]:
        return []

    def state_dict(self) -> dict:
        return {"w": dict(self._w)}

    def load_state_dict(self, s: dict) -> None:
        self._w = dict(s["w"])


class Abdp(LossWeighting):
    name = "abdp"

    def __init__(self, cfg: WeightingConfig, domains: list[str], total_steps: int):
        super().__init__(cfg, domains, total_steps)
        self.kpi = {d: 0.0 for d in self.domains}
        self.count = {d: 0 for d in self.domains}

    def update(self, step: int, losses: dict[str, float], accuracies: dict[str, float]) -> None:
        mu = self.cfg.abdp.momentum
        for d, a in accuracies.items():
            self.kpi[d] = mu * self.kpi[d] + (1 - mu) * float(a)
            self.count[d] += 1
        a = self.cfg.abdp
        if step + 1 >= a.burn_in_fraction * self.total_steps and (step + 1) % a.update_every == 0:
            self._w = self.priority_weights()

    def debiased_kpi(self) -> dict[str, float]:
        mu, eps = self.cfg.abdp.momentum, self.cfg.abdp.eps
        out = {}
        for d in self.domains:
            k = self.kpi[d] / (1 - mu ** self.count[d]) if self.count[d] else 0.5
            out[d] = min(max(k, eps), 1 - eps)
        return out

    def priority_weights(self) -> dict[str, float]:
        a = self.cfg.abdp
        kpi = self.debiased_kpi()
        prio = {d: -((1 - k) ** a.gamma) * math.log(k) for d, k in kpi.items()}
        total = sum(prio.values())
        n = len(self.domains)
        if total <= 0:
            return {d: 1.0 for d in self.domains}
        return {d: min(max((1 - a.floor) * n * p / total + a.floor, a.clip_min), a.clip_max) for d, p in prio.items()}

    def state_dict(self) -> dict:
        return {"w": dict(self._w), "kpi": dict(self.kpi), "count": dict(self.count)}

    def load_state_dict(self, s: dict) -> None:
        self._w, self.kpi, self.count = dict(s["w"]), dict(s["kpi"]), dict(s["count"])


class Dwa(LossWeighting):
    name = "dwa"

    def __init__(self, cfg: WeightingConfig, domains: list[str], total_steps: int):
        super().__init__(cfg, domains, total_steps)
        self.window: dict[str, list[float]] = {d: [] for d in self.domains}
        self.history: list[dict[str, float]] = []  # mean loss per finished window (last two kept)

    def update(self, step: int, losses: dict[str, float], accuracies: dict[str, float]) -> None:
        for d, v in losses.items():
            self.window[d].append(float(v))
        if (step + 1) % self.cfg.abdp.update_every:
            return
        means = {d: sum(v) / len(v) for d, v in self.window.items() if v}
        self.window = {d: [] for d in self.domains}
        if len(means) == len(self.domains):
            self.history = (self.history + [means])[-2:]
        if len(self.history) == 2:
            prev, now = self.history
            r = {d: now[d] / max(prev[d], 1e-12) for d in self.domains}
            t = self.cfg.dwa_temperature
            z = {d: math.exp(v / t) for d, v in r.items()}
            s = sum(z.values())
            self._w = {d: len(self.domains) * v / s for d, v in z.items()}

    def state_dict(self) -> dict:
        return {"w": dict(self._w), "window": {d: list(v) for d, v in self.window.items()},
                "history": [dict(h) for h in self.history]}

    def load_state_dict(self, s: dict) -> None:
        self._w = dict(s["w"])
        self.window = {d: list(v) for d, v in s["window"].items()}  # copies: later appends must not alias s
        self.history = [dict(h) for h in s["history"]]


class Uncertainty(LossWeighting):
    name = "uncertainty"

    def __init__(self, cfg: WeightingConfig, domains: list[str], total_steps: int):
        super().__init__(cfg, domains, total_steps)
        self.log_vars = nn.ParameterDict({self._key(d): nn.Parameter(torch.zeros(())) for d in self.domains})

    @staticmethod
    def _key(d: str) -> str:
        return d.replace(".", "_")

    def weights(self, step: int) -> dict[str, float]:
        return {d: float(torch.exp(-self.log_vars[self._key(d)]).detach()) for d in self.domains}

    def combine(self, losses: dict[str, torch.Tensor], step: int) -> torch.Tensor:
        terms = []
        for d, loss in losses.items():
            s = self.log_vars[self._key(d)]
            terms.append(torch.exp(-s) * loss + s)
        return torch.stack(terms).mean()

    def parameters(self) -> Iterable[nn.Parameter]:
        return self.log_vars.parameters()

    def state_dict(self) -> dict:
        return {"log_vars": {k: v.detach().clone() for k, v in self.log_vars.items()}}

    def load_state_dict(self, s: dict) -> None:
        with torch.no_grad():
            for k, v in s["log_vars"].items():
                self.log_vars[k].copy_(v)


_REGISTRY: dict[str, type[LossWeighting]] = {c.name: c for c in (LossWeighting, Abdp, Dwa, Uncertainty)}


def build_weighting(cfg: WeightingConfig, domains: list[str], total_steps: int) -> LossWeighting:
    """Instantiate the strategy named by `cfg.name` (uniform, abdp, dwa, uncertainty)."""
    try:
        cls = _REGISTRY[cfg.name]
    except KeyError:
        raise ValueError(f"loss_weighting.name: unknown strategy {cfg.name!r}; choose from {sorted(_REGISTRY)}") \
            from None
    return cls(cfg, domains, total_steps)
