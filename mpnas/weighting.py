"""Per-domain loss weighting behind one interface, selected by name (the LibMTL pattern). docs/weighting.md says why.

* `uniform`     w_d = 1.
* `abdp`        adaptive balanced domain prioritisation by *attainable* progress (the default):
                  KPI     k_d <- mu * k_d + (1 - mu) * acc_d          (EMA of training-batch top-1, debiased)
                  kappa   kappa_d = (k_d - c_d) / (1 - c_d)           (chance-corrected, c_d = 1 / classes)
                  gap     g_d = (a_d - kappa_d)_+                      (a_d: attainable chance-corrected accuracy)
                  balance s_d = floor + (1 - floor) * D * g_d / sum_j g_j, then capped at `cap` with the excess
                          handed to the uncapped domains, so the shares stay in [floor, cap] with mean 1.
                  fade    w_d = 1 + f * (s_d - 1), f = min(1, sum_j g_j / sum_j a_j): the prioritisation fades to
                          uniform as the attainable progress left closes (still in [floor, cap], mean 1).
                a_d is the chance-corrected accuracy of a reference model (`abdp.reference_metrics`, e.g. the
                uniform-weight run): its final training-batch top-1 where its metrics carry it (the KPI's own
                quantity), else its val top-1; without one, a_d = 1 for every domain. Why this rule: the priority
                is the accuracy a domain can still gain, so a domain already at its reference gets the floor, a
                domain that no model learns (reference at chance, a_d ~ 0) gets the floor instead of the largest
                weight, and chance correction stops a 2-class domain at 50% from looking half-learnt. It is bounded
                (no log blow-up) and capped. Weights are 1 during burn-in and are refreshed every `update_every` steps.
* `abdp_focal`  the earlier reading of the MPNAS paper (kept as the ablation; the paper's formula is not public):
                  prio    p_d = -(1 - k_d)^gamma * log(k_d)         (focal / dynamic-task-prioritisation form)
                  balance w_d = (1 - floor) * D * p_d / sum_j p_j + floor, clipped to [clip_min, clip_max]
                It grows without bound as k_d -> 0, so an unlearnable domain takes the largest weight (issue 11).
* `dwa`         dynamic weight averaging (Liu et al., CVPR 2019): w_d = D softmax(r_d / T), r_d = L_d(now) / L_d(before),
                losses averaged over windows of `update_every` steps.
* `uncertainty` homoscedastic uncertainty weighting (Kendall et al., CVPR 2018): L = sum_d exp(-s_d) L_d + s_d with
                learnable s_d; reported weight exp(-s_d).

Every strategy combines as L = (1/|present|) * sum_d w_d * L_d, with w_d a constant for autograd (except the learnable
uncertainty terms). With `apply_to: shared_parameters` (the default) the trainer then divides the gradient of every
parameter only one domain touches by that domain's weight (`unscale_exclusive_gradients`): the weights arbitrate
between domains only where they compete, on shared parameters. A domain's own classifier and exclusive nodes get its
plain gradient, whatever the optimiser (under AdamW a constant scale there is normalised away anyway; under SGD it
would silently change that domain's learning rate).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Iterable, Optional

import torch
from torch import nn

from mpnas.config import WeightingConfig
from mpnas.utils.io import read_json


class LossWeighting:
    """Base: uniform weights. Subclasses override `_compute` (and `update` where they keep statistics)."""

    name = "uniform"

    def __init__(self, cfg: WeightingConfig, domains: list[str], total_steps: int,
                 num_classes: Optional[dict[str, int]] = None):
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


class _AccuracyKpi(LossWeighting):
    """Keeps the debiased EMA of each domain's training-batch accuracy and refreshes the weights on schedule."""

    def __init__(self, cfg: WeightingConfig, domains: list[str], total_steps: int,
                 num_classes: Optional[dict[str, int]] = None):
        super().__init__(cfg, domains, total_steps, num_classes)
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
        raise NotImplementedError

    def state_dict(self) -> dict:
        return {"w": dict(self._w), "kpi": dict(self.kpi), "count": dict(self.count)}

    def load_state_dict(self, s: dict) -> None:
        self._w, self.kpi, self.count = dict(s["w"]), dict(s["kpi"]), dict(s["count"])


class AbdpFocal(_AccuracyKpi):
    """The earlier ABDP: focal priority on the accuracy KPI (unbounded as accuracy -> 0); the ablation."""

    name = "abdp_focal"

    def priority_weights(self) -> dict[str, float]:
        a = self.cfg.abdp
        kpi = self.debiased_kpi()
        prio = {d: -((1 - k) ** a.gamma) * math.log(k) for d, k in kpi.items()}
        total = sum(prio.values())
        n = len(self.domains)
        if total <= 0:
            return {d: 1.0 for d in self.domains}
        return {d: min(max((1 - a.floor) * n * p / total + a.floor, a.clip_min), a.clip_max) for d, p in prio.items()}


def chance_corrected(acc: float, chance: float) -> float:
    """(acc - chance) / (1 - chance): 0 at chance level, 1 at perfect accuracy."""
    return (acc - chance) / (1.0 - chance) if chance < 1 else 0.0


def capped_weights(priority: dict[str, float], floor: float, cap: float) -> dict[str, float]:
    """w_d = floor + share of the remaining budget in proportion to priority; mean 1, each in [floor, cap].

    Domains whose share would pass `cap` are fixed at `cap` and the rest of the budget is shared again among the
    others (at most D rounds). All-zero priority gives uniform weights."""
    n = len(priority)
    if sum(priority.values()) <= 0:
        return {d: 1.0 for d in priority}
    capped: dict[str, float] = {}
    while True:
        free = {d: p for d, p in priority.items() if d not in capped}
        budget = n - cap * len(capped) - floor * len(free)  # what the free domains share above their floor
        total = sum(free.values())
        w = {d: floor + (budget * p / total if total > 0 else budget / len(free)) for d, p in free.items()}
        over = [d for d, v in w.items() if v > cap]
        if not over:
            return {d: capped.get(d, w.get(d)) for d in priority}
        capped.update({d: cap for d in over})


class Abdp(_AccuracyKpi):
    """ABDP by attainable progress: weight in proportion to the chance-corrected accuracy a domain can still gain."""

    name = "abdp"

    def __init__(self, cfg: WeightingConfig, domains: list[str], total_steps: int,
                 num_classes: Optional[dict[str, int]] = None):
        super().__init__(cfg, domains, total_steps, num_classes)
        ref = cfg.abdp.reference_metrics
        self.chance = {d: 1.0 / num_classes[d] if num_classes and d in num_classes else 0.0 for d in self.domains}
        self.attainable = attainable_from_reference(ref, self.domains, self.chance) if ref is not None \
            else {d: 1.0 for d in self.domains}

    def gaps(self) -> dict[str, float]:
        kpi = self.debiased_kpi()
        return {d: max(0.0, self.attainable[d] - chance_corrected(kpi[d], self.chance[d])) for d in self.domains}

    def priority_weights(self) -> dict[str, float]:
        """Capped gap shares, faded towards uniform by the fraction of attainable progress still open.

        Without the fade a tiny gap left on one domain would take the cap while every other domain sits at the
        floor, and the weights would jump to uniform once that gap closed (measured, RESULTS.md)."""
        gaps = self.gaps()
        shares = capped_weights(gaps, self.cfg.abdp.floor, self.cfg.abdp.cap)
        attainable = sum(self.attainable.values())
        open_fraction = min(1.0, sum(gaps.values()) / attainable) if attainable > 0 else 0.0
        return {d: 1.0 + open_fraction * (w - 1.0) for d, w in shares.items()}


def attainable_from_reference(path: Path, domains: list[str], chance: dict[str, float]) -> dict[str, float]:
    """Chance-corrected attainable accuracy per domain from a reference metrics.json, clipped to [0, 1].

    Like with like: the KPI is training-batch top-1, so the reference's final training-batch top-1
    (`train.train_top1_final`, written by the trainer) is used when it covers every domain. Otherwise its val top-1,
    which sits below training accuracy late in training: every domain's KPI then passes its reference, the gaps hit
    zero and the weights collapse to floor-or-cap (measured, RESULTS.md). Never test: the weights steer training,
    and test must stay unseen by every training decision."""
    doc = read_json(path, "set loss_weighting.abdp.reference_metrics to a metrics.json from `mpnas evaluate`")
    ref = doc.get("domains") if isinstance(doc.get("domains"), dict) else {}
    missing = [d for d in domains if not isinstance(ref.get(d), dict) or ref[d].get("top1_val") is None]
    if missing:
        raise ValueError(f"{path}: loss_weighting.abdp.reference_metrics has no domains.<d>.top1_val for "
                         f"{', '.join(missing)}; use a reference model trained on the same domains")
    train = doc.get("train") if isinstance(doc.get("train"), dict) else {}
    final = train.get("train_top1_final") if isinstance(train.get("train_top1_final"), dict) else {}
    use_train = all(isinstance(final.get(d), (int, float)) for d in domains)
    out = {}
    for d in domains:
        c = chance[d] or (1.0 / int(ref[d]["num_classes"]) if ref[d].get("num_classes") else 0.0)
        chance[d] = c
        acc = float(final[d]) if use_train else float(ref[d]["top1_val"])
        out[d] = min(1.0, max(0.0, chance_corrected(acc, c)))
    return out


class Dwa(LossWeighting):
    name = "dwa"

    def __init__(self, cfg: WeightingConfig, domains: list[str], total_steps: int,
                 num_classes: Optional[dict[str, int]] = None):
        super().__init__(cfg, domains, total_steps, num_classes)
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

    def __init__(self, cfg: WeightingConfig, domains: list[str], total_steps: int,
                 num_classes: Optional[dict[str, int]] = None):
        super().__init__(cfg, domains, total_steps, num_classes)
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


_REGISTRY: dict[str, type[LossWeighting]] = {c.name: c for c in (LossWeighting, Abdp, AbdpFocal, Dwa, Uncertainty)}


def build_weighting(cfg: WeightingConfig, domains: list[str], total_steps: int,
                    num_classes: Optional[dict[str, int]] = None) -> LossWeighting:
    """Instantiate the strategy named by `cfg.name` (uniform, abdp, abdp_focal, dwa, uncertainty).

    `num_classes` (domain -> classes) gives abdp its chance levels; without it chance is taken as 0."""
    try:
        cls = _REGISTRY[cfg.name]
    except KeyError:
        raise ValueError(f"loss_weighting.name: unknown strategy {cfg.name!r}; choose from {sorted(_REGISTRY)}") \
            from None
    return cls(cfg, domains, total_steps, num_classes)


ExclusiveParameters = dict[str, list[tuple[nn.Parameter, Optional[int]]]]


def unscale_exclusive_gradients(exclusive: ExclusiveParameters, weights: dict[str, float]) -> None:
    """Divide the gradient of each parameter (or row) only domain d touches by w_d, after backward.

    The combined loss scaled every gradient of domain d by w_d; this leaves the weights acting on shared parameters
    only. `exclusive` comes from `MultiPathNet.exclusive_parameters()`. Domains absent from the step have no
    gradient there; a weight of 0 leaves its (zero) gradient alone."""
    with torch.no_grad():
        for d, items in exclusive.items():
            w = float(weights.get(d, 1.0))
            if w == 1.0 or w <= 0:
                continue
            for p, row in items:
                if p.grad is None:
                    continue
                if row is None:
                    p.grad.div_(w)
                else:
                    p.grad[row].div_(w)
