"""The cross-method comparison: reference-based decathlon score, ratios to the backbone, the paper's targets."""

import pytest

from mpnas.evaluation.comparison import accuracy_cost_figure, compare_methods, comparison_markdown


def metrics(acc: dict, params: float, flops: float) -> dict:
    return {"domains": {d: {"top1_test": a} for d, a in acc.items()}, "mean_top1_test": sum(acc.values()) / len(acc),
            "mean_top1_val": None, "params_total": params, "flops_sum_paths": flops, "flops_union": flops / 2}


@pytest.fixture
def table() -> dict:
    return {"mpnas": metrics({"a": 0.9, "b": 0.6}, 2e6, 60e6),
            "mpnas_uniform": metrics({"a": 0.9, "b": 0.5}, 2e6, 60e6),
            "independent_nas": metrics({"a": 0.8, "b": 0.6}, 10e6, 100e6),
            "multi_head_nas": metrics({"a": 0.7, "b": 0.4}, 1e6, 40e6),
            "single_path_multi_head": metrics({"a": 0.6, "b": 0.4}, 1e6, 50e6)}


def test_decathlon_score_uses_reference_errors(table):
    rows = compare_methods(table)["rows"]
    # reference matches itself: (1/2)^2 * 1000 = 250 per domain
    assert rows["independent_nas"]["decathlon_score_vs_reference"] == pytest.approx(500.0)
    # mpnas domain a: E_max = 0.4, E = 0.1 -> 1000 * (0.3 / 0.4)^2 = 562.5; domain b = 250
    assert rows["mpnas"]["decathlon_score_vs_reference"] == pytest.approx(812.5)
    assert rows["mpnas"]["params_ratio_to_backbone"] == pytest.approx(2.0)
    assert rows["mpnas"]["flops_sum_ratio_to_backbone"] == pytest.approx(1.2)


def test_targets(table):
    met = {t["target"]: t["met"] for t in compare_methods(table)["targets"]}
    assert met["mpnas mean top-1 >= independent_nas"] is True
    assert met["mpnas params <= 30% of independent_nas"] is True
    assert met["mpnas FLOPs (sum of paths) <= 70% of independent_nas"] is True
    assert met["ABDP (mpnas) mean top-1 >= uniform (mpnas_uniform)"] is True
    table["mpnas"]["params_total"] = 4e6
    met = {t["target"]: t["met"] for t in compare_methods(table)["targets"]}
    assert met["mpnas params <= 30% of independent_nas"] is False
    del table["independent_nas"]
    summary = compare_methods(table)
    assert summary["rows"]["mpnas"]["decathlon_score_vs_reference"] is None
    assert {t["target"]: t["met"] for t in summary["targets"]}["mpnas mean top-1 >= independent_nas"] is None


def test_markdown_and_figure(table, tmp_path):
    summary = compare_methods(table)
    md = comparison_markdown(summary)
    assert "| mpnas | 75.0 |" in md and "Test top-1 per domain" in md and "| yes |" in md
    png = accuracy_cost_figure(summary, tmp_path / "fig.png")
    assert png.stat().st_size > 1000
