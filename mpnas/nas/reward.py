"""TuNAS absolute-value reward and the per-controller EMA baseline.

R(path) = top-1(searchval batch) + cost_beta * |F/F0 - 1|   (cost_metric flops)
                                 + params_beta * |P/P0 - 1| (cost_metric params; both terms for `both`)

F and P are the analytic FLOPs / parameters of the path *without* a classifier (stem, searchable layers, head convs):
the classifier is the same for every path of a domain, so leaving it out keeps the ratio comparable across domains.
F0/P0 default to the space's reference (MobileNetV3-like) genotype.

Beyond the paper (each an option, the paper's behaviour being the default of each):
- `reward_metric`: the quality term may be the mean probability or log-probability of the true class instead of
  top-1, which is far less noisy on a 32-image batch;
- `cost_scope: marginal` adds share_beta x (parameters the path adds to the other domains' current argmax paths)/P0,
  i.e. the merged model's marginal cost, so a domain pays for a node only when no other domain already pays for it;
- `null_control` replaces the quality by an architecture-independent draw (NullQuality): the control every claim
  about learning is measured against.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from mpnas.config import SearchConfig
from mpnas.space import Genotype, SearchSpace


def path_quality(logits: torch.Tensor, labels: torch.Tensor, metric: str) -> torch.Tensor:
    """Quality of one path on its reward images, as a 0-d tensor on the logits' device (no host sync)."""
    if metric == "top1":
        return (logits.argmax(1) == labels).float().mean()
    logp = torch.log_softmax(logits.float(), dim=1).gather(1, labels[:, None]).squeeze(1)
    return logp.exp().mean() if metric == "true_prob" else logp.mean()


class CostModel:
    """Cached analytic path costs and their ratios to the targets."""

    def __init__(self, space: SearchSpace, cfg: SearchConfig):
        self.space = space
        ref = space.reference_genotype()
        self.flops_target = float(cfg.cost_target) if cfg.cost_target is not None else float(space.path_flops(ref))
        self.params_target = (float(cfg.params_target) if cfg.params_target is not None
                              else float(space.path_cost(ref)[1]))
        self._cache: dict[Genotype, tuple[int, int]] = {}

    def cost(self, g: Genotype) -> tuple[int, int]:
        """(FLOPs, params) of a path (2 FLOPs per multiply-add)."""
        if g not in self._cache:
            madds, params = self.space.path_cost(g)
            self._cache[g] = (2 * madds, params)
        return self._cache[g]

    def ratios(self, g: Genotype) -> tuple[float, float]:
        f, p = self.cost(g)
        return f / self.flops_target, p / self.params_target

    def marginal_params_ratio(self, g: Genotype, others: set[tuple[int, str]]) -> float:
        """Parameters of the nodes of `g` that no node in `others` (layer, block) provides, over P0."""
        added = sum(self.space.layers[i].cost(c)[1] for i, c in enumerate(g.choices)
                    if not c.is_zero and (i, str(c)) not in others)
        return added / self.params_target


def path_reward(accuracy: float, flops_ratio: float, params_ratio: float, cfg: SearchConfig) -> float:
    r = accuracy
    if cfg.cost_metric in ("flops", "both"):
        r += cfg.cost_beta * abs(flops_ratio - 1.0)
    if cfg.cost_metric in ("params", "both"):
        r += cfg.params_beta * abs(params_ratio - 1.0)
    return r


@dataclass
class EmaBaseline:
    """Zero-debiased exponential moving average of rewards (TuNAS: momentum 0.95)."""

    momentum: float = 0.95
    num: float = 0.0
    den: float = 0.0

    def update(self, value: float) -> float:
        """Fold in this step's mean reward and return the debiased baseline (which includes it)."""
        self.num = self.momentum * self.num + (1 - self.momentum) * value
        self.den = self.momentum * self.den + (1 - self.momentum)
        return self.value

    @property
    def value(self) -> float:
        return self.num / self.den if self.den > 0 else 0.0

    def state_dict(self) -> dict:
        return {"num": self.num, "den": self.den}

    def load_state_dict(self, s: dict) -> None:
        self.num, self.den = float(s["num"]), float(s["den"])


@dataclass
class NullQuality:
    """search.null_control: a path quality that does not depend on the architecture.

    Per domain it tracks a zero-debiased EMA of the real qualities (mean, and mean square for the spread) and
    replaces each path's quality by a draw around the mean *before* this step: Binomial(n, p)/n for top-1 (the same
    binomial noise as n reward images), a normal with the tracked spread for the smooth metrics. The real forward
    pass still runs, so the supernet trains exactly as in the real search; only the controllers lose the signal.
    """

    n_domains: int
    metric: str
    n_images: int
    seed: int
    momentum: float = 0.95

    def __post_init__(self) -> None:
        self.rng = np.random.default_rng(self.seed)
        # per domain: EMAs of the real quality and of its square (the same debiased EMA as the REINFORCE baseline)
        self.means = [EmaBaseline(self.momentum) for _ in range(self.n_domains)]
        self.squares = [EmaBaseline(self.momentum) for _ in range(self.n_domains)]

    def draw(self, domain_index: int, real: np.ndarray) -> np.ndarray:
        ema_mean, ema_sq = self.means[domain_index], self.squares[domain_index]
        if ema_mean.den > 0:
            mean = ema_mean.value
            var = max(0.0, ema_sq.value - mean ** 2)
        else:
            mean, var = float(np.mean(real)), float(np.var(real))
        ema_mean.update(float(np.mean(real)))
        ema_sq.update(float(np.mean(np.square(real))))
        k = len(real)
        if self.metric == "top1":
            return self.rng.binomial(self.n_images, min(1.0, max(0.0, mean)), size=k) / self.n_images
        out = self.rng.normal(mean, math.sqrt(var), size=k)
        return np.clip(out, 0.0, 1.0) if self.metric == "true_prob" else np.minimum(out, 0.0)

    def state_dict(self) -> dict:
        return {"means": [b.state_dict() for b in self.means], "squares": [b.state_dict() for b in self.squares]}

    def load_state_dict(self, s: dict) -> None:
        for b, bs in zip(self.means + self.squares, s["means"] + s["squares"]):
            b.load_state_dict(bs)
