"""Search-signal options (issue 10): the no-signal control, smooth and paired rewards, leave-one-out baselines, tied
controllers and the marginal cost; each changes what it says and nothing else, and resumes bit-for-bit."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from mpnas.config import ConfigError, load_config
from mpnas.nas.controller import Controller, SharedPrior, tying_penalty
from mpnas.nas.reward import NullQuality, path_quality
from mpnas.nas.search import SearchEngine, build_space, run_search
from mpnas.nas.signal import node_counts
from mpnas.data.prepared import PreparedDataset
from mpnas.space import Genotype


def test_null_control_replaces_the_quality_the_controllers_see(tiny_config, tiny_data):
    """The control's history holds the architecture-independent draws, not the real reward-batch accuracy."""
    cfg = tiny_config("search.steps=8", "search.rl_delay_fraction=0", "search.op_warmup_fraction=0",
                      "search.null_control=true", "search.paths_per_domain=2")
    engine = SearchEngine(cfg, PreparedDataset(tiny_data), ["alpha", "beta", "gamma"], build_space(cfg))
    seen = []
    original = engine.null.draw

    def draw(i, real):
        out = original(i, real)
        seen.append((real.copy(), out.copy()))
        return out
    engine.null.draw = draw
    rows = []
    for _ in range(8):
        rows.extend(engine.run_step())
        engine.step += 1
    assert len(seen) == 8 * 3
    drawn_means = [float(out.mean()) for _, out in seen]
    assert [r["accuracy"] for r in rows] == pytest.approx(drawn_means)
    assert any(not np.allclose(real, out) for real, out in seen)
    n = engine.null.n_images
    assert all(np.allclose(out * n, np.round(out * n)) for _, out in seen)  # binomial draws over n images


def test_null_quality_draws_around_the_tracked_mean():
    null = NullQuality(n_domains=1, metric="top1", n_images=32, seed=0)
    good = np.random.default_rng(1).random(4000) < 0.5  # which architecture was sampled, step by step
    draws = np.array([null.draw(0, np.array([0.9 if g else 0.1]))[0] for g in good])
    # independent of the architecture sampled in the same step: equal means for the good and the bad one
    assert abs(draws[good].mean() - draws[~good].mean()) < 0.02
    assert abs(draws.mean() - 0.5) < 0.05
    assert set(np.round(draws * 32) / 32) == set(draws)  # binomial grid of 32 images
    smooth = NullQuality(n_domains=1, metric="true_prob", n_images=32, seed=0)
    d = np.array([smooth.draw(0, np.array([0.3, 0.5]))[0] for _ in range(2000)])
    assert 0.35 < d.mean() < 0.45 and 0.0 < d.std() < 0.2 and (d >= 0).all() and (d <= 1).all()


def test_path_quality_metrics():
    logits = torch.tensor([[2.0, 0.0], [0.0, 2.0], [2.0, 0.0]])
    y = torch.tensor([0, 1, 1])
    assert path_quality(logits, y, "top1").item() == pytest.approx(2 / 3)
    p = torch.softmax(logits, 1)[torch.arange(3), y]
    assert path_quality(logits, y, "true_prob").item() == pytest.approx(p.mean().item())
    assert path_quality(logits, y, "log_prob").item() == pytest.approx(p.log().mean().item())


@pytest.mark.parametrize("extra", [
    ["search.null_control=true"],
    ["search.reward_metric=true_prob", "search.paired_rewards=true", "search.baseline=leave_one_out"],
    ["search.tying.prior=shared", "search.tying.strength=0.05", "search.cost_scope=marginal"],
])
def test_every_signal_option_runs_and_resumes_bit_for_bit(tiny_config, tiny_data, tmp_path, extra):
    cfg = tiny_config("search.steps=6", "search.checkpoint_every=3", "search.rl_delay_fraction=0.3",
                      "search.op_warmup_fraction=0.3", "search.rl_lr=0.05", "search.paths_per_domain=2", *extra)
    full = run_search(cfg, tiny_data, tmp_path / "full", progress=False)
    part = cfg.model_copy(update={"search": cfg.search.model_copy(update={"steps": 6})})
    engine = SearchEngine(part, PreparedDataset(tiny_data), ["alpha", "beta", "gamma"], build_space(part))
    for _ in range(3):
        engine.history.extend(engine.run_step())
        engine.step += 1
    ckpt = tmp_path / "ckpt.pt"
    from mpnas.nas.checkpoint import load_checkpoint, save_checkpoint
    save_checkpoint(ckpt, engine.state_dict())
    resumed = SearchEngine(part, PreparedDataset(tiny_data), ["alpha", "beta", "gamma"], build_space(part))
    resumed.load_state_dict(load_checkpoint(ckpt))
    while resumed.step < 6:
        resumed.history.extend(resumed.run_step())
        resumed.step += 1
    pd.testing.assert_frame_equal(pd.DataFrame(resumed.history), full.history)
    assert resumed.genotypes() == full.genotypes
    summary = json.loads((tmp_path / "full" / "summary.json").read_text())
    assert {"p_argmax_mean", "entropy_mean", "nodes", "shared_nodes", "null_control"} <= set(summary)
    assert all("p_argmax" in v for v in summary["domains"].values())


def test_leave_one_out_advantages_sum_to_zero(tiny_config, tiny_data):
    cfg = tiny_config("search.paths_per_domain=4", "search.batch_size=8", "search.baseline=leave_one_out")
    engine = SearchEngine(cfg, PreparedDataset(tiny_data), ["alpha", "beta", "gamma"], build_space(cfg))
    adv = engine._advantages(np.array([1.0, 0.0, 0.5, 0.5]), baseline=123.0)
    assert adv.sum() == pytest.approx(0.0)
    assert adv[0] == pytest.approx(1.0 - 1.0 / 3)  # against the mean of the other three


def test_tied_controllers_share_a_prior_that_learns_from_every_domain(tiny_config):
    cfg = tiny_config()
    space = build_space(cfg)
    prior = SharedPrior(space)
    ctrls = [Controller(space, prior) for _ in range(3)]
    assert all("prior.logits" not in dict(c.named_parameters()) for c in ctrls)  # saved once, by the engine
    rng = np.random.default_rng(0)
    loss = sum(-(c.log_prob(c.sample(rng, 2))).mean() for c in ctrls)
    loss.backward()
    assert prior.logits.grad is not None and prior.logits.grad.abs().sum() > 0
    with torch.no_grad():
        prior.logits[0, 0] += 50.0  # the prior decides: every tied controller follows
    assert all(c.argmax_indices()[0] == 0 for c in ctrls)
    for c in ctrls:
        c.logits.data.fill_(1.0)
    assert tying_penalty(ctrls, 0.5).item() == pytest.approx(0.5 * ctrls[0].logits.numel())


def test_marginal_cost_charges_only_what_others_do_not_provide(tiny_config, tiny_data):
    cfg = tiny_config("search.cost_scope=marginal", "search.share_beta=-0.5")
    engine = SearchEngine(cfg, PreparedDataset(tiny_data), ["alpha", "beta", "gamma"], build_space(cfg))
    g = engine.space.reference_genotype()
    alone, _, _ = engine.reward("alpha", g, 0.5, others=set())
    shared, _, _ = engine.reward("alpha", g, 0.5, others=g.nodes())
    plain, _, _ = engine.reward("alpha", g, 0.5)
    assert shared == pytest.approx(plain) and alone < shared
    assert alone - shared == pytest.approx(-0.5 * engine.costs.marginal_params_ratio(g, set()))


def test_node_counts():
    a = Genotype.from_strings(["conv_k3", "ir_k3_e3", "zero"])
    b = Genotype.from_strings(["conv_k3", "ir_k5_e3", "zero"])
    assert node_counts({"a": a, "b": b}) == (3, 1)


@pytest.mark.parametrize("overrides,field", [
    (["search.mode=fixed", "search.null_control=true"], "search"),
    (["search.tying.strength=-1"], "search.tying.strength"),
    (["search.baseline=leave_one_out"], "search"),
    (["search.mode=multi_head", "search.tying.prior=shared"], "search"),
    (["search.mode=independent", "search.cost_scope=marginal"], "search"),
    (["search.share_beta=0.5"], "search.share_beta"),
])
def test_options_that_cannot_work_together_are_refused(overrides, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        load_config(None, overrides)
