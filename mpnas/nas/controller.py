"""The TuNAS policy: independent categorical logits per decision, hierarchical log-prob and entropy, RL schedules.

A controller holds one logit vector per decision of `LayerSpec.decisions()` (op, kernel, expansion, se), all
initialised to 0 (uniform). The logits are packed in one padded (n_decisions, max_options) matrix so sampling,
log-probs and entropies are single vectorised ops (padding is masked with -inf and never receives gradient).

Hierarchy: where a layer's `op` decision is `zero`, its kernel/expansion/se decisions are inactive. They are still
sampled (so the random stream does not depend on the outcome), but they count neither in the log-probability of the
sample nor in the entropy, which is the exact entropy of the distribution over distinct layer choices:
H(layer) = H(op) + P(block) * sum of the inner entropies.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
from torch import nn

from mpnas.config import SearchConfig
from mpnas.space import Genotype, SearchSpace

BLOCK = 1  # index of "block" in a layer's ("zero", "block") op decision


@dataclass(frozen=True)
class Decision:
    layer: int
    name: str
    options: tuple
    parent: int  # index of the layer's `op` decision, -1 when always active

    def key(self, space: SearchSpace) -> str:
        return f"{space.layers[self.layer].name}.{self.name}"


def space_decisions(space: SearchSpace) -> list[Decision]:
    out: list[Decision] = []
    for li, layer in enumerate(space.layers):
        op_index = -1
        for name, options in layer.decisions().items():
            out.append(Decision(li, name, tuple(options), op_index if name != "op" else -1))
            if name == "op":
                op_index = len(out) - 1
    return out


class Controller(nn.Module):
    """Policy over the paths of one search space (one per domain in multi_path, one shared in multi_head)."""

    def __init__(self, space: SearchSpace, prior: Optional["SharedPrior"] = None):
        super().__init__()
        self.space = space
        # Tied controllers (search.tying.prior=shared): the effective logits are prior + own offset. The prior is
        # owned by the engine (one for all domains) and deliberately not registered here, so it is saved once.
        object.__setattr__(self, "prior", prior)
        self.decisions = space_decisions(space)
        n, m = len(self.decisions), max(len(d.options) for d in self.decisions)
        self.logits = nn.Parameter(torch.zeros(n, m))
        valid = torch.zeros(n, m, dtype=torch.bool)
        for i, d in enumerate(self.decisions):
            valid[i, :len(d.options)] = True
        self.register_buffer("valid", valid, persistent=False)
        parent = torch.tensor([d.parent for d in self.decisions])
        self.register_buffer("parent", parent, persistent=False)
        self.sizes = np.array([len(d.options) for d in self.decisions])

    def effective_logits(self) -> torch.Tensor:
        return self.logits if self.prior is None else self.prior.logits + self.logits

    def log_probs(self) -> torch.Tensor:
        return torch.log_softmax(self.effective_logits().masked_fill(~self.valid, -math.inf), dim=1)

    def probs(self) -> np.ndarray:
        with torch.no_grad():
            return self.log_probs().exp().cpu().numpy().astype(np.float64)

    def sample(self, rng: np.random.Generator, k: int = 1) -> np.ndarray:
        """k independent samples: int array (k, n_decisions) of option indices (inverse-CDF on one uniform each)."""
        cdf = np.cumsum(self.probs(), axis=1)
        u = rng.random((k, len(self.decisions)))
        idx = (u[:, :, None] > cdf[None, :, :]).sum(axis=2)
        return np.minimum(idx, self.sizes[None, :] - 1)

    def active(self, idx: torch.Tensor) -> torch.Tensor:
        """(k, n) bool: which decisions of each sample matter (inner decisions of a skipped layer do not)."""
        has_parent = self.parent >= 0
        parent_choice = idx[:, self.parent.clamp(min=0)]
        return ~has_parent[None, :] | (parent_choice == BLOCK)

    def log_prob(self, idx: np.ndarray | torch.Tensor) -> torch.Tensor:
        """(k,) hierarchical log-probabilities of samples `idx` (k, n)."""
        idx = torch.as_tensor(np.asarray(idx), dtype=torch.long, device=self.logits.device)
        lp = self.log_probs().gather(1, idx.t()).t()  # (k, n)
        return (lp * self.active(idx)).sum(1)

    def entropy(self) -> torch.Tensor:
        """Hierarchical entropy (nats) of the whole path distribution."""
        lp = self.log_probs()
        p = lp.exp()
        h = -(p * lp.masked_fill(~self.valid, 0.0)).sum(1)  # per decision
        has_parent = self.parent >= 0
        p_block = p[self.parent.clamp(min=0), BLOCK]
        weight = torch.where(has_parent, p_block, torch.ones_like(p_block))
        return (h * weight).sum()

    def entropy_value(self) -> float:
        with torch.no_grad():
            return float(self.entropy())

    def genotype(self, idx_row: np.ndarray) -> Genotype:
        values: list[dict[str, object]] = [{} for _ in self.space.layers]
        for d, i in zip(self.decisions, idx_row):
            values[d.layer][d.name] = d.options[int(i)]
        return Genotype(tuple(layer.choice_from_decisions(v) for layer, v in zip(self.space.layers, values)))

    def argmax_indices(self) -> np.ndarray:
        with torch.no_grad():
            return self.effective_logits().masked_fill(~self.valid, -math.inf).argmax(1).cpu().numpy()

    def argmax_genotype(self) -> Genotype:
        """The final architecture: the most likely option of every decision (TuNAS)."""
        return self.genotype(self.argmax_indices())

    def max_probs(self) -> dict[str, float]:
        """Probability of the most likely option per decision, keyed `<layer>.<decision>`."""
        p = self.probs().max(axis=1)
        return {d.key(self.space): float(v) for d, v in zip(self.decisions, p)}


class SharedPrior(nn.Module):
    """The logits every tied controller adds its own offset to; it learns from all domains' samples."""

    def __init__(self, space: SearchSpace):
        super().__init__()
        decisions = space_decisions(space)
        self.logits = nn.Parameter(torch.zeros(len(decisions), max(len(d.options) for d in decisions)))


def tying_penalty(controllers: list[Controller], strength: float) -> torch.Tensor:
    """strength x mean over domains of ||offset||^2: pulls each tied controller back towards the shared prior."""
    return strength * torch.stack([(c.logits ** 2).sum() for c in controllers]).mean()


def tying_strength_at(step: int, total: int, cfg: SearchConfig) -> float:
    """tying.strength, annealed linearly to strength x anneal_to between the RL delay and the last step."""
    delay = int(cfg.rl_delay_fraction * total)
    progress = min(1.0, max(0.0, (step - delay) / max(1, total - 1 - delay)))
    return cfg.tying.strength * (1.0 + (cfg.tying.anneal_to - 1.0) * progress)


def rl_optimizer(params) -> torch.optim.Adam:
    """Adam(beta1=0, beta2=0.999, eps=1e-8) as TuNAS; the lr is set every step from `rl_lr_at`."""
    return torch.optim.Adam(params, lr=0.0, betas=(0.0, 0.999), eps=1e-8)


def rl_lr_at(step: int, total: int, cfg: SearchConfig) -> float:
    """0 during the first rl_delay_fraction of steps, then rl_lr growing exponentially to rl_lr_growth x at the end."""
    delay = int(cfg.rl_delay_fraction * total)
    if step < delay:
        return 0.0
    progress = (step - delay) / max(1, total - 1 - delay)
    return cfg.rl_lr * cfg.rl_lr_growth ** min(1.0, progress)


def op_warmup_prob(step: int, total: int, cfg: SearchConfig) -> float:
    """Probability that a layer runs the warm-up mixture: 1 -> 0 linearly over op_warmup_fraction of the steps."""
    span = cfg.op_warmup_fraction * total
    if span <= 0:
        return 0.0
    return max(0.0, 1.0 - step / span)
