"""Accuracy over a prepared split and the Visual Decathlon score.

Decathlon score (Rebuffi et al. 2017; data.md section 1.5): S = sum_d alpha_d max(0, E_max_d - E_d)^gamma with
gamma = 2, alpha_d = 1000 E_max_d^-gamma, E_max_d = 2 x a baseline's test error. A perfect domain scores 1000, the
baseline itself 250. The official baselines are the NIPS'17 "Finetune" accuracies; for other datasets E_max comes from
the test errors of a fixed reference model's metrics.json.
"""

from __future__ import annotations

import math
from typing import Optional

import torch

from mpnas.data.loading import iterate_split
from mpnas.data.prepared import PreparedDataset
from mpnas.models.multipath import MultiPathNet

# Official decathlon baseline top-1 accuracies in percent (the "Finetune" row the scoring code uses).
DECATHLON_BASELINE_ACC = {"imagenet12": 59.87, "aircraft": 60.34, "cifar100": 82.12, "daimlerpedcls": 92.82,
                          "dtd": 55.53, "gtsrb": 97.53, "vgg-flowers": 81.41, "omniglot": 87.69, "svhn": 96.55,
                          "ucf101": 51.20}
GAMMA = 2.0


@torch.inference_mode()
def split_accuracy(model: MultiPathNet, ds: PreparedDataset, domain: str, split: str, crop: int,
                   batch_size: int = 256, device: Optional[torch.device] = None) -> Optional[float]:
    """Top-1 of one domain on one split (centre crop), or None when the split is empty or unlabelled."""
    if not ds.has_labels(domain, split):
        return None
    was_training = model.training
    model.eval()
    correct = total = 0
    for x, y in iterate_split(ds, domain, split, batch_size, crop, device):
        correct += int((model(x, domain).argmax(1) == y).sum())
        total += len(y)
    model.train(was_training)
    return correct / total if total else None


def domain_score(accuracy: float, e_max: float) -> float:
    """One domain's decathlon points for a top-1 accuracy in [0, 1] given E_max (0 error scores 1000)."""
    err = 1.0 - accuracy
    if e_max <= 0:  # the reference was perfect: only a perfect domain can match it
        return 1000.0 if err <= 0 else 0.0
    return 1000.0 * e_max ** -GAMMA * max(0.0, e_max - err) ** GAMMA


def decathlon_score(accuracies: dict[str, Optional[float]], e_max: dict[str, float]) -> tuple[Optional[float], dict]:
    """(total, per-domain points); the total is None if any domain lacks an accuracy."""
    per = {d: (domain_score(a, e_max[d]) if a is not None else None) for d, a in accuracies.items()}
    total = None if any(v is None for v in per.values()) else sum(per.values())
    return total, per


def official_e_max(domains: list[str]) -> Optional[dict[str, float]]:
    """E_max = 2 x the official baseline error, if every domain is a real decathlon domain."""
    if not domains or any(d not in DECATHLON_BASELINE_ACC for d in domains):
        return None
    return {d: 2.0 * (1.0 - DECATHLON_BASELINE_ACC[d] / 100.0) for d in domains}


def reference_e_max(reference: dict, domains: list[str], source: str) -> dict[str, float]:
    """E_max = 2 x the test error of a reference metrics.json (top1_test per domain)."""
    ref_domains = reference.get("domains", {})
    out = {}
    for d in domains:
        acc = ref_domains.get(d, {}).get("top1_test")
        if acc is None or (isinstance(acc, float) and math.isnan(acc)):
            raise ValueError(f"{source}: reference metrics have no domains.{d}.top1_test")
        out[d] = 2.0 * (1.0 - float(acc))
    return out
