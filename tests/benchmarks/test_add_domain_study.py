"""benchmarks.add_domain_study end to end on tiny synthetic data: per-seed figures recomputed from the written models,
mean ± sample std, the reference comparison, resume per seed, and refusals of a bad reference before any work."""

import json

import numpy as np
import pytest
import torch

from benchmarks import add_domain_study as study
from mpnas.data.loading import iterate_split
from mpnas.data.prepared import PreparedDataset
from mpnas.data.synthetic import make_synthetic
from mpnas.evaluation.metrics import split_accuracy
from mpnas.models.multipath import load_model

FAST = ["search.steps=4", "search.batch_size=8", "search.paths_per_domain=2", "search.log_every=2",
        "search.rl_delay_fraction=0.25", "search.op_warmup_fraction=0.25", "search.checkpoint_every=4",
        "train.steps=4", "train.batch_size=8", "train.eval_every=2", "train.log_every=2", "train.checkpoint_every=4",
        "evaluate.latency_repeats=1", "evaluate.latency_warmup=0"]
REF = {"mpnas_tied": {"seeds": [0, 1], "domains": {"gamma": {"values": [0.5, 0.25]}, "alpha": {"values": [1, 1]}},
                      "search": {"wall_time_s": {"values": [10.0, 12.0]}}}}


@pytest.fixture(scope="module")
def ran(tmp_path_factory, tiny_overrides):
    root = tmp_path_factory.mktemp("study")
    data = make_synthetic(root / "data", {"alpha": 3, "beta": 4, "gamma": 3}, per_class=8, size=16)
    (root / "ref.json").write_text(json.dumps(REF))
    argv = ["--data", str(data), "--held-out", "gamma", "--seeds", "0", "1", "--study-dir", str(root / "runs"),
            "--out", str(root / "out.json"), "--reference", str(root / "ref.json"), "--quiet"]
    for s in tiny_overrides + FAST:
        argv += ["--set", s]
    assert study.main(argv) == 0
    return root, data, argv


def test_per_seed_figures_match_the_written_models(ran):
    root, data, _ = ran
    doc = json.loads((root / "out.json").read_text())
    ds = PreparedDataset(data)
    assert doc["seeds"] == [0, 1] and doc["held_out"] == "gamma"
    for row, ref in zip(doc["per_seed"], REF["mpnas_tied"]["domains"]["gamma"]["values"]):
        base = root / "runs" / f"seed{row['seed']}"
        parent, grown = load_model(base / "model"), load_model(base / "added")
        assert parent.domains == ["alpha", "beta"] and grown.domains == ["alpha", "beta", "gamma"]
        assert row["top1_test"] == split_accuracy(grown, ds, "gamma", "test", 16)
        assert row["added_parameters"] == grown.num_parameters() - parent.num_parameters() > 0
        assert row["added_params_ratio"] == pytest.approx(row["added_parameters"] / parent.num_parameters())
        assert row["logits_identical_all_test"] == {"alpha": True, "beta": True}
        with torch.no_grad():  # the study's check, redone independently on every test image
            for d in parent.domains:
                for x, _ in iterate_split(ds, d, "test", 7, 16):
                    assert torch.equal(parent(x, d), grown(x, d))
        w = row["wall_s"]
        assert w["parent"] == pytest.approx(w["parent_search"] + w["parent_train"]) and w["add"] > 0
        assert row["wall_ratio"] == pytest.approx(w["add"] / w["parent"])
        c = row["cpu_s"]
        assert c["parent"] == pytest.approx(c["parent_search"] + c["parent_train"]) and 0 < c["add"] <= 2 * w["add"]
        assert row["cpu_ratio"] == pytest.approx(c["add"] / c["parent"])
        assert row["genotype"] == grown.genotypes["gamma"].to_strings()
    tops = [r["top1_test"] for r in doc["per_seed"]]
    assert doc["top1_test"]["mean"] == pytest.approx(np.mean(tops))
    assert doc["top1_test"]["std"] == pytest.approx(np.std(tops, ddof=1))
    diffs = [100 * (t - r) for t, r in zip(tops, [0.5, 0.25])]
    assert doc["difference_points"]["values"] == pytest.approx(diffs)
    assert doc["met"]["top1_within_2_points"] == (np.mean(diffs) >= -2.0)
    assert doc["met"]["logits_identical"] is True
    assert doc["met"]["added_params_at_most_15pct"] == (doc["added_params_ratio"]["mean"] <= 0.15)
    assert doc["met"]["cpu_at_most_25pct"] == (np.mean([r["cpu_ratio"] for r in doc["per_seed"]]) <= 0.25)


def test_a_rerun_reuses_finished_seeds_and_a_missing_result_reuses_the_stages(ran, monkeypatch, capsys):
    root, _, argv = ran
    before = json.loads((root / "out.json").read_text())

    def boom(*a, **k):
        raise AssertionError("a finished stage ran again")

    for name in ("run_search", "train_model", "add_domain"):
        monkeypatch.setattr(study, name, boom)
    (root / "runs" / "seed1" / "result.json").unlink()
    assert study.main(argv) == 0
    assert "seed 0: " in capsys.readouterr().out
    after = json.loads((root / "out.json").read_text())
    assert after["per_seed"] == before["per_seed"]


@pytest.mark.parametrize("ref, message", [
    ({"other": {}}, "no method 'mpnas_tied'"),
    ({"mpnas_tied": {"seeds": [0, 1], "domains": {"alpha": {"values": [1, 1]}}}}, "mpnas_tied.domains.gamma.values"),
    ({"mpnas_tied": {"seeds": [0], "domains": {"gamma": {"values": [0.5]}}}}, "lacks seed(s) [1]"),
])
def test_a_bad_reference_is_refused_before_any_work(ran, tmp_path, ref, message):
    _, data, _ = ran
    (tmp_path / "ref.json").write_text(json.dumps(ref))
    with pytest.raises(ValueError, match=r"ref\.json") as err:
        study.main(["--data", str(data), "--held-out", "gamma", "--seeds", "0", "1", "--study-dir",
                    str(tmp_path / "runs"), "--out", str(tmp_path / "o.json"),
                    "--reference", str(tmp_path / "ref.json")])
    assert message in str(err.value)
    assert not (tmp_path / "runs").exists() and not (tmp_path / "o.json").exists()


def test_unknown_held_out_domain_is_refused(ran, tmp_path):
    _, data, _ = ran
    with pytest.raises(ValueError, match="--held-out"):
        study.main(["--data", str(data), "--held-out", "nope", "--out", str(tmp_path / "o.json")])


def test_help_names_every_option(capsys):
    with pytest.raises(SystemExit):
        study.parse_args(["--help"])
    out = capsys.readouterr().out
    for flag in ("--config", "--set", "--data", "--held-out", "--seeds", "--study-dir", "--out", "--reference",
                 "--reference-method", "--reference-runs", "--quiet"):
        assert flag in out


def test_markdown_table_has_a_row_per_seed_and_the_mean(ran):
    root, _, _ = ran
    doc = json.loads((root / "out.json").read_text())
    table = study.render_markdown(doc).splitlines()
    assert len(table) == 2 + len(doc["per_seed"]) + 1
    for line, row in zip(table[2:], doc["per_seed"]):
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert cells[0] == str(row["seed"]) and cells[1] == f"{100 * row['top1_test']:.1f}"
        assert cells[4].startswith("yes")
    assert table[-1].startswith("| **mean ± std** |") and f"{100 * doc['top1_test']['mean']:.1f} ± " in table[-1]
