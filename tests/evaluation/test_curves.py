"""Val top-1 against training steps: one run's curve from its history, the mean and std over seeds, the figure."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from mpnas.evaluation.curves import aggregate_curves, learning_curves_figure, read_run_curve, run_curve


def history(vals: dict[int, float], every: int = 1, last: int = 8) -> pd.DataFrame:
    """Training rows every step, val columns only on the evaluated steps (as the trainer writes them)."""
    rows = []
    for step in range(1, last + 1, every):
        row = {"step": step, "loss": 1.0 / step}
        if step in vals:
            row["val_top1_mean"] = vals[step]
        rows.append(row)
    return pd.DataFrame(rows)


def test_run_curve_keeps_only_the_evaluated_steps():
    assert run_curve(history({4: 0.2, 8: 0.3})) == {4: 0.2, 8: 0.3}
    assert run_curve(pd.DataFrame({"step": [1, 2], "loss": [1.0, 0.5]})) == {}  # never evaluated


def test_aggregate_is_mean_and_sample_std_over_the_steps_every_seed_evaluated():
    c = aggregate_curves([{4: 0.2, 8: 0.4}, {4: 0.4, 8: 0.6, 12: 0.9}, {}])  # an empty curve is no seed
    assert c["steps"] == [4, 8] and c["seeds"] == 2
    assert c["mean"] == pytest.approx([0.3, 0.5])
    assert c["std"] == pytest.approx([0.1 * math.sqrt(2)] * 2)
    assert aggregate_curves([{4: 0.2}])["std"] == [None]
    assert aggregate_curves([])["steps"] == []


def test_read_run_curve_from_a_model_dir_and_figure(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    history({100: 0.25, 200: 0.35}, last=200).to_parquet(model / "history.parquet", index=False)
    assert read_run_curve(model) == {100: 0.25, 200: 0.35}
    assert read_run_curve(tmp_path / "no_such_model") == {}
    curves = {"mpnas": aggregate_curves([read_run_curve(model), {100: 0.3, 200: 0.4}]),
              "independent_nas": aggregate_curves([{100: 0.2, 200: 0.3}]), "empty": aggregate_curves([])}
    out = learning_curves_figure(curves, tmp_path / "figs" / "curves.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(out.parent.glob(".*tmp*"))  # written to a temp name, then renamed
