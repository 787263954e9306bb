"""TuNAS absolute-value reward and the per-controller EMA baseline.

R(path) = top-1(searchval batch) + cost_beta * |F/F0 - 1|   (cost_metric flops)
                                 + params_beta * |P/P0 - 1| (cost_metric params; both terms for `both`)

F and P are the analytic FLOPs / parameters of the path *without* a classifier (stem, searchable layers, head convs):
the classifier is the same for every path of a domain, so leaving it out keeps the ratio comparable across domains.
F0/P0 default to the space's reference (MobileNetV3-like) genotype.
"""

from __future__ import annotations

from dataclasses import dataclass

from mpnas.config import SearchConfig
from mpnas.space import Genotype, SearchSpace


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
