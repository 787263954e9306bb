import json

import pandas as pd
import pytest

from mpnas.cli import main
from mpnas.config import ConfigError
from mpnas.nas.controller import Controller
from mpnas.nas.search import SearchEngine, build_space, run_search
from mpnas.space import Genotype, genotypes_from_json, genotypes_to_json


def test_outputs_and_genotype_round_trip(tiny_config, tiny_data, tmp_path):
    cfg = tiny_config("search.steps=3")
    res = run_search(cfg, tiny_data, tmp_path, progress=False)
    assert set(res.genotypes) == {"alpha", "beta", "gamma"}
    doc = json.loads((tmp_path / "genotypes.json").read_text())
    assert doc["meta"]["mode"] == "multi_path" and doc["meta"]["steps"] == 3 and doc["meta"]["data_hash"]
    assert genotypes_from_json((tmp_path / "genotypes.json").read_text()) == res.genotypes
    hist = pd.read_parquet(tmp_path / "history.parquet")
    assert len(hist) == 3 * 3 and list(hist["step"].unique()) == [1, 2, 3]
    decisions = [f"p_max.{key}" for key in Controller(build_space(cfg)).max_probs()]
    assert any(d.endswith(".op") for d in decisions) and any(d.endswith(".kernel") for d in decisions)
    for col in ["reward", "accuracy", "cost_ratio", "baseline", "entropy", "loss", "lr", "rl_lr", *decisions]:
        assert col in hist.columns
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert set(summary["domains"]["beta"]) >= {"reward", "accuracy", "flops", "params", "entropy", "genotype"}
    assert summary["wall_time_s"] > 0
    assert (tmp_path / "checkpoint.pt").is_file()


def _kill_after(monkeypatch, at_step: int, before: bool, exc: type[BaseException]):
    original = SearchEngine.run_step

    def run_step(self):
        if before and self.step == at_step:
            raise exc("simulated")
        rows = original(self)
        if not before and self.step == at_step:
            raise exc("simulated")
        return rows
    monkeypatch.setattr(SearchEngine, "run_step", run_step)


@pytest.mark.slow
@pytest.mark.parametrize("before,exc", [(False, RuntimeError), (True, KeyboardInterrupt)])
def test_resume_gives_the_same_result_as_an_uninterrupted_run(tiny_config, tiny_data, tmp_path, monkeypatch,
                                                              before, exc):
    """Killed mid-step 5 (only the step-3 checkpoint survives) or interrupted before step 5 (checkpoint at 4)."""
    cfg = tiny_config("search.steps=6", "search.checkpoint_every=3", "search.rl_delay_fraction=0.3",
                      "search.op_warmup_fraction=0.3", "search.rl_lr=0.05", "search.paths_per_domain=2",
                      "search.loss_weighting.name=abdp", "search.loss_weighting.abdp.update_every=1",
                      "search.loss_weighting.abdp.burn_in_fraction=0")
    full = run_search(cfg, tiny_data, tmp_path / "full", progress=False)
    with monkeypatch.context() as m:
        _kill_after(m, 4, before, exc)
        with pytest.raises(exc):
            run_search(cfg, tiny_data, tmp_path / "resumed", progress=False)
    resumed = run_search(cfg, tiny_data, tmp_path / "resumed", resume=True, progress=False)
    assert resumed.genotypes == full.genotypes
    pd.testing.assert_frame_equal(resumed.history, full.history)
    assert full.history["rl_lr"].iloc[-1] > 0  # the controllers did learn in the compared window


def _toy_reward(self, domain, genotype, accuracy):
    """alpha pays for kernel 3 at s1.l0, everything else for kernel 5: a robust reason for paths to differ."""
    c = genotype.choices[1]
    want = 3 if domain == "alpha" else 5
    return (1.0 if (not c.is_zero and c.kernel == want) else 0.0), 1.0, 1.0


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["multi_path", "multi_head"])
def test_domains_that_want_different_blocks(tiny_config, tiny_data, tmp_path, monkeypatch, mode):
    monkeypatch.setattr(SearchEngine, "reward", _toy_reward)
    cfg = tiny_config(f"search.mode={mode}", "search.steps=25", "search.rl_delay_fraction=0",
                      "search.op_warmup_fraction=0", "search.rl_lr=0.15", "search.rl_lr_growth=1",
                      "search.paths_per_domain=2", "search.batch_size=4", "data.domains=[alpha, beta]")
    res = run_search(cfg, tiny_data, tmp_path, progress=False)
    a, b = res.genotypes["alpha"].choices[1], res.genotypes["beta"].choices[1]
    if mode == "multi_path":
        assert (a.kernel, b.kernel) == (3, 5)
        assert res.genotypes["alpha"] != res.genotypes["beta"]
    else:
        assert res.genotypes["alpha"] == res.genotypes["beta"]
        assert res.summary["distinct_paths"] == 1


def test_same_seed_same_result(tiny_config, tiny_data, tmp_path):
    cfg = tiny_config("search.steps=3", "search.rl_delay_fraction=0", "search.op_warmup_fraction=0")
    a = run_search(cfg, tiny_data, tmp_path / "a", progress=False)
    b = run_search(cfg, tiny_data, tmp_path / "b", progress=False)
    assert a.genotypes == b.genotypes
    pd.testing.assert_frame_equal(a.history, b.history)


def test_resume_refuses_a_changed_config(tiny_config, tiny_data, tmp_path):
    run_search(tiny_config("search.steps=2"), tiny_data, tmp_path, progress=False)
    with pytest.raises(ValueError, match="search.lr"):
        run_search(tiny_config("search.steps=2", "search.lr=0.3"), tiny_data, tmp_path, resume=True, progress=False)


def test_impossible_configs_are_refused_early(tiny_config, tiny_data, tmp_path):
    space = build_space(tiny_config())
    bad = [str(c) for c in space.reference_genotype()]
    bad[3] = "zero"  # s2.l0 changes stride and width
    path = tmp_path / "bad.json"
    path.write_text(genotypes_to_json({"x": Genotype.from_strings(bad)}))
    with pytest.raises(ValueError, match="search.fixed_genotype.*s2.l0"):
        run_search(tiny_config("search.mode=fixed", f"search.fixed_genotype={path}"), tiny_data, tmp_path / "o")
    path.write_text(json.dumps({"genotypes": {"x": ["conv_k3", "ir_k9_e3"] + bad[2:]}}))
    with pytest.raises(ValueError, match="search.fixed_genotype"):
        run_search(tiny_config("search.mode=fixed", f"search.fixed_genotype={path}"), tiny_data, tmp_path / "o")
    with pytest.raises(ValueError, match="search.fixed_genotype"):
        run_search(tiny_config("search.mode=fixed", "search.fixed_genotype=resnet"), tiny_data, tmp_path / "o")
    with pytest.raises(ValueError, match="search.paths_per_domain"):
        run_search(tiny_config("search.paths_per_domain=3"), tiny_data, tmp_path / "o")
    with pytest.raises(ConfigError, match="search.cost_target"):
        tiny_config("search.cost_target=0")


@pytest.mark.parametrize("mode", ["multi_path", "multi_head", "independent", "fixed"])
def test_cli_runs_every_mode(tiny_overrides, tiny_data, tmp_path, capsys, mode):
    sets = [a for o in tiny_overrides + [f"search.mode={mode}", "search.steps=2"] for a in ("--set", o)]
    assert main(["search", "--data", str(tiny_data), "--out", str(tmp_path), *sets]) == 0
    out = capsys.readouterr().out
    assert f"{mode}:" in out and "alpha" in out and "gamma" in out
    if mode != "fixed":
        assert "search 2/2" in out and "step/s" in out and "ETA" in out
    for name in ("genotypes.json", "history.parquet", "summary.json", "checkpoint.pt"):
        assert (tmp_path / name).is_file()
    genotypes = genotypes_from_json((tmp_path / "genotypes.json").read_text())
    assert set(genotypes) == {"alpha", "beta", "gamma"}
    if mode in ("fixed", "multi_head"):
        assert len({str(g) for g in genotypes.values()}) == 1
    assert main(["search", "--data", str(tiny_data), "--out", str(tmp_path), "--resume", *sets]) == 0
