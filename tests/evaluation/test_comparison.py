"""The cross-method comparison: reference-based decathlon score, ratios to the backbone, the paper's targets."""

import pytest

from mpnas.evaluation.comparison import accuracy_cost_figure, aggregate_seeds, compare_methods, comparison_markdown


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


# ------------------------------------------------------------------------------------------------------ seeds


def test_aggregate_seeds_means_std_and_per_domain_means(table):
    runs = {0: metrics({"a": 0.9, "b": 0.6}, 2e6, 60e6), 1: metrics({"a": 0.7, "b": 0.6}, 3e6, 80e6),
            2: metrics({"a": 0.8, "b": 0.3}, 4e6, 70e6)}
    e = aggregate_seeds({2: runs[2], 0: runs[0], 1: runs[1]})
    assert e["seeds"] == [0, 1, 2] and [r["params_total"] for r in e["runs"]] == [2e6, 3e6, 4e6]
    assert e["mean_top1_test"] == pytest.approx((0.75 + 0.65 + 0.55) / 3)
    assert e["std_top1_test"] == pytest.approx(0.1)  # sample std of 0.75, 0.65, 0.55
    assert e["domains"]["a"]["top1_test"] == pytest.approx(0.8)
    assert e["domains"]["a"]["top1_test_std"] == pytest.approx(0.1)
    assert e["domains"]["b"]["top1_test"] == pytest.approx(0.5)
    assert e["params_total"] == pytest.approx(3e6)
    one = aggregate_seeds({5: runs[0]})
    assert one["seeds"] == [5] and one["std_top1_test"] is None and one["mean_top1_test"] == pytest.approx(0.75)


def test_markdown_shows_mean_plus_minus_std_over_seeds(table):
    agg = {name: aggregate_seeds({0: m, 1: metrics({d: v["top1_test"] - 0.1 for d, v in m["domains"].items()},
                                                     m["params_total"], m["flops_sum_paths"])})
           for name, m in table.items()}
    summary = compare_methods(agg)
    assert summary["rows"]["mpnas"]["std_top1_test"] == pytest.approx(0.0707, abs=1e-4)
    md = comparison_markdown(summary)
    assert "| mpnas | 70.0 ± 7.1 |" in md  # mean of 75 and 65
    assert "85.0 ± 7.1" in md  # domain a of mpnas: 0.9 and 0.8
    assert "Seeds: 0, 1." in md


def test_shared_domain_bn_and_null_control_targets(table):
    table["shared_domain_bn"] = metrics({"a": 0.8, "b": 0.6}, 1.9e6, 50e6)
    table["mpnas_null"] = metrics({"a": 0.8, "b": 0.6}, 2e6, 60e6)
    met = {t["target"]: t["met"] for t in compare_methods(table)["targets"]}
    assert met["mpnas mean top-1 >= shared_domain_bn"] is True  # 0.75 vs 0.70
    assert met["mpnas params <= 110% of shared_domain_bn"] is True  # 2.0 M vs 2.09 M
    assert met["mpnas mean top-1 > mpnas_null (no-signal search)"] is True
    table["shared_domain_bn"]["params_total"] = 1.5e6
    met = {t["target"]: t["met"] for t in compare_methods(table)["targets"]}
    assert met["mpnas params <= 110% of shared_domain_bn"] is False


def test_paired_differences_seed_by_seed(table):
    """mpnas minus each method on the same seed: a consistent sign shows even where the two means' stds overlap."""
    mpnas = {0: metrics({"a": 0.5, "b": 0.5}, 2e6, 60e6), 1: metrics({"a": 0.7, "b": 0.7}, 2e6, 60e6),
             2: metrics({"a": 0.3, "b": 0.3}, 2e6, 60e6)}
    uniform = {s: metrics({d: v["top1_test"] - 0.02 * (s + 1) for d, v in m["domains"].items()}, 2e6, 60e6)
               for s, m in mpnas.items()}
    agg = {"mpnas": aggregate_seeds(mpnas), "mpnas_uniform": aggregate_seeds(uniform),
           "independent_nas": aggregate_seeds({1: metrics({"a": 0.8, "b": 0.8}, 9e6, 90e6)})}  # one shared seed
    summary = compare_methods(agg)
    p = summary["paired"]["mpnas_uniform"]
    assert p["per_seed"] == pytest.approx({0: 0.02, 1: 0.04, 2: 0.06}) and p["wins"] == 3 and p["seeds"] == 3
    assert p["mean"] == pytest.approx(0.04) and p["std"] == pytest.approx(0.02)
    assert summary["rows"]["mpnas"]["std_top1_test"] == pytest.approx(0.2)  # the means alone overlap widely
    ind = summary["paired"]["independent_nas"]
    assert ind["per_seed"] == pytest.approx({1: -0.1}) and ind["std"] is None and ind["wins"] == 0
    md = comparison_markdown(summary)
    assert "| mpnas_uniform | +2.0, +4.0, +6.0 | +4.0 ± 2.0 | 3 of 3 |" in md
    assert "| independent_nas | -10.0 | -10.0 | 0 of 1 |" in md
    assert compare_methods(table)["paired"]["mpnas_uniform"]["seeds"] == 0  # plain metrics.json: no seeds to pair
