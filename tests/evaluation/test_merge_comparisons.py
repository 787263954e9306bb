"""Merging per-seed comparison results (one pipeline run per seed) into one multi-seed comparison."""

import json

import pytest

from benchmarks.merge_comparisons import main as merge_main
from mpnas.evaluation.comparison import aggregate_seeds, compare_methods, merge_results


def run(acc: dict, params: float, seed: int) -> dict:
    return {"domains": {d: {"top1_test": a, "num_classes": 3} for d, a in acc.items()}, "seed": seed,
            "mean_top1_test": sum(acc.values()) / len(acc), "mean_top1_val": None, "params_total": params,
            "flops_sum_paths": 50e6, "flops_union": 20e6}


def result(seed: int, shift: float, data: str = "abc", path: str = "/a") -> dict:
    runs = {"mpnas": {seed: run({"a": 0.8 + shift, "b": 0.5}, 2e6, seed)},
            "independent_nas": {seed: run({"a": 0.7, "b": 0.5 - shift}, 9e6, seed)}}
    table = {n: aggregate_seeds(r) for n, r in runs.items()}
    return {"methods": table, "summary": compare_methods(table), "seeds": [seed], "data": {"content_hash": data, "path": path}}


def test_merge_equals_one_multi_seed_run():
    merged = merge_results([result(0, 0.0), result(2, 0.1, path="/b"), result(1, 0.05)])  # copies of one data set
    assert merged["seeds"] == [0, 1, 2]
    one_run = aggregate_seeds({0: run({"a": 0.8, "b": 0.5}, 2e6, 0), 1: run({"a": 0.85, "b": 0.5}, 2e6, 1),
                               2: run({"a": 0.9, "b": 0.5}, 2e6, 2)})
    assert merged["methods"]["mpnas"]["seeds"] == [0, 1, 2]
    assert merged["methods"]["mpnas"]["mean_top1_test"] == pytest.approx(one_run["mean_top1_test"])
    assert merged["methods"]["mpnas"]["std_top1_test"] == pytest.approx(one_run["std_top1_test"])
    assert merged["methods"]["mpnas"]["domains"]["a"]["top1_test_std"] == pytest.approx(0.05)
    assert merged["summary"]["rows"]["independent_nas"]["std_top1_test"] == pytest.approx(0.025)


def test_merge_refuses_duplicate_seed_and_other_data():
    with pytest.raises(ValueError, match="seed 0 is already"):
        merge_results([result(0, 0.0), result(0, 0.1)], ["a.json", "b.json"])
    with pytest.raises(ValueError, match="b.json: its data version differs"):
        merge_results([result(0, 0.0), result(1, 0.1, data="other")], ["a.json", "b.json"])


def test_cli_writes_merge_and_never_into_an_input_dir(tmp_path, capsys):
    paths = []
    for seed in (0, 1):
        d = tmp_path / f"run{seed}"
        d.mkdir()
        (d / "comparison.json").write_text(json.dumps(result(seed, 0.1 * seed)))
        paths.append(str(d / "comparison.json"))
    assert merge_main(paths + ["--out", str(tmp_path / "merged"), "--note", "quick budget"]) == 0
    merged = json.loads((tmp_path / "merged" / "comparison.json").read_text())
    assert merged["seeds"] == [0, 1] and merged["sources"] == paths and merged["note"] == "quick budget"
    assert "85.0 ± 7.1" in (tmp_path / "merged" / "comparison.md").read_text()  # mpnas domain a over two seeds
    assert (tmp_path / "merged" / "accuracy_vs_cost.png").stat().st_size > 0
    with pytest.raises(SystemExit):
        merge_main(paths + ["--out", str(tmp_path / "run0")])
    (tmp_path / "bad.json").write_text("{")
    assert merge_main([str(tmp_path / "bad.json"), "--out", str(tmp_path / "m2")]) == 2
    assert "error:" in capsys.readouterr().err


def test_one_input_keeps_its_val_curves_and_figure(tmp_path):
    """Re-rendering one run's comparison.json (e.g. with a newer table) keeps its curves; several inputs drop them,
    since curves hold seed means that cannot be pooled again."""
    curves = {"mpnas": {"steps": [100, 200], "mean": [0.2, 0.3], "std": [0.01, 0.02], "seeds": 2}}
    one = {**result(0, 0.0), "val_curves": curves}
    (tmp_path / "a.json").write_text(json.dumps(one))
    assert merge_main([str(tmp_path / "a.json"), "--out", str(tmp_path / "m")]) == 0
    assert json.loads((tmp_path / "m" / "comparison.json").read_text())["val_curves"] == curves
    assert (tmp_path / "m" / "val_top1_vs_steps.png").stat().st_size > 0
    assert "val_top1_vs_steps.png" in (tmp_path / "m" / "comparison.md").read_text()
    assert "val_curves" not in merge_results([one, result(1, 0.1)])
