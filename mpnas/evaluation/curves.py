"""Validation accuracy against training steps, per method and over seeds: where each method saturates.

Every training run evaluates on the val split every `train.eval_every` steps and keeps the rows in its
history.parquet (`val_top1_mean`). The curve of one run is read from there; a method's curve is the mean and sample
std over its seeds at each evaluated step. Caveat, stated on the figure too: the points come from one warm-up + cosine
schedule of the full length, so an early point is a model whose learning rate has not decayed yet. A separate, shorter
run would score somewhat higher at that step; the curve is a lower bound of accuracy against budget.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import matplotlib
import pandas as pd

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from mpnas.evaluation.comparison import mean_std, save_figure  # noqa: E402

HISTORY = "history.parquet"  # in a trained model dir (mpnas.training.trainer)
VAL_COLUMN = "val_top1_mean"


def run_curve(history: pd.DataFrame) -> dict[int, float]:
    """{step: mean val top-1} of one training run's history (the evaluated steps only)."""
    if VAL_COLUMN not in history or "step" not in history:
        return {}
    rows = history[["step", VAL_COLUMN]].dropna()
    return {int(s): float(v) for s, v in zip(rows["step"], rows[VAL_COLUMN])}


def read_run_curve(model_dir: str | Path) -> dict[int, float]:
    """The curve of a trained model dir; {} when it has no history (an older or a foreign model dir)."""
    path = Path(model_dir) / HISTORY
    if not path.is_file():
        return {}
    return run_curve(pd.read_parquet(io.BytesIO(path.read_bytes())))


def aggregate_curves(curves: list[dict[int, float]]) -> dict[str, list[Any]]:
    """{"steps", "mean", "std", "seeds"} over the steps every run evaluated; std is the sample std (None for one run)."""
    curves = [c for c in curves if c]
    if not curves:
        return {"steps": [], "mean": [], "std": [], "seeds": 0}
    steps = sorted(set.intersection(*(set(c) for c in curves)))
    stats = [mean_std([c[s] for c in curves]) for s in steps]
    return {"steps": steps, "mean": [m for m, _ in stats], "std": [sd for _, sd in stats], "seeds": len(curves)}


def learning_curves_figure(curves: dict[str, dict[str, list[Any]]], path: str | Path,
                           highlight: tuple[str, ...] = ("mpnas", "mpnas_uniform", "independent_nas")) -> Path:
    """Mean val top-1 against training steps, one line per method (a band of ±1 seed std); the highlighted methods
    are drawn solid, the others dashed."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, c in curves.items():
        if not c["steps"]:
            continue
        y = [100 * v for v in c["mean"]]
        line, = ax.plot(c["steps"], y, marker="o", ms=3, label=f"{name} ({c['seeds']} seeds)",
                        linestyle="-" if name in highlight else "--", linewidth=2 if name in highlight else 1)
        if all(s is not None for s in c["std"]):
            lo = [a - 100 * s for a, s in zip(y, c["std"])]
            hi = [a + 100 * s for a, s in zip(y, c["std"])]
            ax.fill_between(c["steps"], lo, hi, color=line.get_color(), alpha=0.12)
    ax.set_xlabel("training steps (each: a batch of every domain)")
    ax.set_ylabel("mean val top-1 (%)")
    ax.set_title("Accuracy against training budget\n(points inside one cosine schedule: a lower bound for shorter runs)",
                 fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return save_figure(fig, path, dpi=120)
