"""How decided and how shared a search ended: the figures every claim about search signal is judged by.

p(argmax) is the mean over a controller's decisions of the probability of its most likely option (1/options is
uniform); entropy is the controller's hierarchical entropy in nats; nodes are the distinct non-zero (layer, block)
nodes of the domains' argmax paths and shared nodes those used by two or more domains. A search with real signal
must beat the same figures of its `null_control` twin (same budget and seed, architecture-independent rewards).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from mpnas.nas.controller import Controller
from mpnas.space import Genotype


def node_counts(genotypes: dict[str, Genotype]) -> tuple[int, int]:
    """(distinct non-zero nodes, nodes used by at least two domains) of a set of paths."""
    users = Counter(node for g in genotypes.values() for node in g.nodes())
    return len(users), sum(1 for n in users.values() if n >= 2)


def signal_stats(controllers: dict[str, Controller]) -> dict[str, Any]:
    """Per-domain p(argmax) and entropy, their means, and the node counts of the argmax paths."""
    per_domain = {}
    for d, c in controllers.items():
        per_domain[d] = {"p_argmax": float(np.mean(list(c.max_probs().values()))),
                         "entropy": float(c.entropy().detach())}
    nodes, shared = node_counts({d: c.argmax_genotype() for d, c in controllers.items()})
    return {"p_argmax_mean": float(np.mean([v["p_argmax"] for v in per_domain.values()])),
            "entropy_mean": float(np.mean([v["entropy"] for v in per_domain.values()])),
            "nodes": nodes, "shared_nodes": shared, "domains": per_domain}
