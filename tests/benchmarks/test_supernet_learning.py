"""benchmarks.supernet_learning on tiny synthetic data: the fixed-path run really samples the reference path only,
and the history summary reports each domain's chance level."""

import json

import pytest

from benchmarks import supernet_learning as sl
from mpnas.config import load_config
from mpnas.data.prepared import PreparedDataset
from mpnas.data.synthetic import make_synthetic
from mpnas.nas.search import SearchEngine, build_space, run_search

FAST = ["search.steps=4", "search.batch_size=8", "search.log_every=2", "search.checkpoint_every=4",
        "search.tying.prior=shared"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_synthetic(tmp_path_factory.mktemp("learn") / "data", {"alpha": 3, "beta": 4}, per_class=8, size=16)


def test_fixed_path_samples_only_the_reference(data, tiny_overrides):
    cfg = load_config(None, tiny_overrides + FAST)
    space, ds = build_space(cfg), PreparedDataset(data)
    engine = SearchEngine(cfg, ds, ds.subset(None), space)
    sl.fix_reference_path(engine, space)
    _, genos, _ = engine._sample_paths(0.0)
    ref = str(space.reference_genotype())
    assert all(str(g) == ref for per_ctrl in genos for g in per_ctrl)


def test_engine_runs_report_quality_and_history_reports_chance(data, tiny_overrides, tmp_path, capsys):
    cfg = load_config(None, tiny_overrides + FAST)
    run_search(cfg, data, tmp_path / "search", progress=False)
    got = sl.reward_vs_chance(tmp_path / "search" / "history.parquet", PreparedDataset(data), last=2)
    assert got["alpha"]["chance"] == pytest.approx(1 / 3) and got["beta"]["chance"] == pytest.approx(1 / 4)
    assert all(0 <= v["reward"] <= 1 for v in got.values())
    for fixed in (False, True):
        row = sl.run_engine(load_config(None, tiny_overrides + FAST + ["search.rl_delay_fraction=0.99"]),
                            PreparedDataset(data), steps=3, fixed=fixed, window=2)
        assert row["steps"] == 3 and -1 <= row["reward_above_chance"] <= 1 and 0 <= row["train_top1"] <= 1
        json.dumps(row)
