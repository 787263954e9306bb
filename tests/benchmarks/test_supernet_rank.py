"""benchmarks.supernet_rank on tiny synthetic data: scores recomputed from the checkpoint, stand-alone runs cached and
reused, rank correlations that could fail, and a refusal of a search that is not multi_path."""

import json

import numpy as np
import pytest

from benchmarks import supernet_rank as rank
from mpnas.config import load_config
from mpnas.data.prepared import PreparedDataset
from mpnas.data.synthetic import make_synthetic
from mpnas.nas.checkpoint import load_state
from mpnas.nas.search import build_space, run_search
from mpnas.space import Genotype

FAST = ["search.steps=4", "search.batch_size=8", "search.log_every=2", "search.checkpoint_every=4",
        "search.tying.prior=shared", "train.steps=3", "train.batch_size=8", "train.eval_every=3",
        "train.log_every=3", "train.checkpoint_every=3"]


def test_kendall_tau_agreement_reversal_and_ties():
    assert rank.kendall_tau([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert rank.kendall_tau([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert rank.kendall_tau([1, 2, 3], [5, 5, 5]) != rank.kendall_tau([1, 2, 3], [5, 5, 5])  # nan: no order


@pytest.fixture(scope="module")
def searched(tmp_path_factory, tiny_overrides):
    root = tmp_path_factory.mktemp("rank")
    data = make_synthetic(root / "data", {"alpha": 3, "beta": 4}, per_class=8, size=16)
    cfg = load_config(None, tiny_overrides + FAST)
    run_search(cfg, data, root / "search", progress=False)
    argv = ["--data", str(data), "--checkpoint", str(root / "search" / "checkpoint.pt"), "--domains", "alpha",
            "--paths", "3", "--seeds", "0", "1", "--reward-batch", "4", "--work", str(root / "work"),
            "--out", str(root / "out.json")]
    for s in tiny_overrides + FAST:
        argv += ["--set", s]
    return root, data, cfg, argv


def _run(argv, monkeypatch):  # the tiny config comes from --set, not a file
    monkeypatch.setattr(rank, "load_any_config", lambda path, overrides: load_config(None, overrides))
    rank.main(["-c", "unused.yaml", *argv])


def test_report_scores_paths_and_reuses_trained_ones(searched, monkeypatch):
    root, data, cfg, argv = searched
    _run(argv, monkeypatch)
    doc = json.loads((root / "out.json").read_text())
    rows = doc["domains"]["alpha"]["paths"]
    assert len(rows) == 3 and doc["policy"] == "final" and doc["seeds"] == [0, 1]
    st = load_state(root / "search" / "checkpoint.pt")
    space, ds = build_space(cfg), PreparedDataset(data)
    net, heads = rank.load_supernet(st, root / "search" / "checkpoint.pt", space, ds)
    for row in rows:
        g = Genotype.from_strings(row["genotype"])
        again = rank.supernet_score(net, heads["alpha"], ds, "alpha", g, cfg.data.crop, 4)
        assert again == pytest.approx(row["supernet"])  # the report's score is the supernet's, recomputable
        assert 0 <= row["supernet"]["true_prob"] <= 1 and len(row["standalone"]) == 2
        assert all(0 <= v <= 1 for v in row["standalone"])
        assert row["flops"] == space.path_flops(g, ds.num_classes("alpha"))
    tau = doc["domains"]["alpha"]["tau"]
    assert set(tau) >= {"supernet_prob_vs_standalone", "flops_vs_standalone", "standalone_seed_vs_seed"}
    assert all(np.isnan(v) or -1 <= v <= 1 for v in tau.values())
    done = sorted((root / "work").rglob("result.json"))
    assert len(done) == 6
    stamps = [p.stat().st_mtime_ns for p in done]
    _run(argv, monkeypatch)  # a second run reads the cached stand-alone results instead of training again
    assert [p.stat().st_mtime_ns for p in done] == stamps


def test_a_search_that_is_not_multi_path_is_refused(searched, tmp_path):
    root, data, cfg, _ = searched
    st = load_state(root / "search" / "checkpoint.pt")
    st["mode"] = "independent"
    with pytest.raises(ValueError, match="independent search; this diagnostic needs multi_path"):
        rank.load_supernet(st, tmp_path / "x.pt", build_space(cfg), PreparedDataset(data))
