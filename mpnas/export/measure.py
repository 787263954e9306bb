"""Parity, accuracy and batch-1 latency of one runtime on one domain's evaluation images."""

from __future__ import annotations

from typing import Callable

import numpy as np

from mpnas.utils.timing import median_latency_ms


def parity(reference: np.ndarray, candidate: np.ndarray) -> dict:
    """Top-1 agreement and max |logit difference| of `candidate` against eager `reference` logits."""
    if reference.shape != candidate.shape:
        raise ValueError(f"logit shapes differ: eager {reference.shape}, export {candidate.shape}")
    return {"agreement": float((reference.argmax(1) == candidate.argmax(1)).mean()),
            "max_abs_diff": float(np.abs(reference.astype(np.float64) - candidate).max()),
            "max_abs_logit": float(np.abs(reference).max())}  # scale of the logits, to read max_abs_diff against


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    return float((logits.argmax(1) == labels).mean())


def latency_ms(run: Callable[[np.ndarray], object], x1: np.ndarray, repeats: int, warmup: int = 5) -> float:
    """Median wall time of `run(x1)` in milliseconds over `repeats` calls after `warmup` calls."""
    return median_latency_ms(lambda: run(x1), repeats, warmup)
