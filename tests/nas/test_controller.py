import math

import numpy as np
import pytest
import torch

from mpnas.loop import warmup_cosine, warmup_steps
from mpnas.nas.controller import Controller, op_warmup_prob, rl_lr_at, rl_optimizer
from mpnas.nas.reward import CostModel, EmaBaseline, path_reward
from mpnas.nas.search import build_space


@pytest.fixture(scope="module")
def space(tiny_config):
    return build_space(tiny_config())


def _index(ctrl, layer_name, decision):
    return next(i for i, d in enumerate(ctrl.decisions) if d.key(ctrl.space) == f"{layer_name}.{decision}")


def test_hierarchical_log_prob_ignores_inner_choices_of_a_skipped_layer(space):
    ctrl = Controller(space)
    with torch.no_grad():
        ctrl.logits.normal_()
    rng = np.random.default_rng(0)
    idx = ctrl.sample(rng, 1)
    op = _index(ctrl, "s1.l1", "op")
    kernel = _index(ctrl, "s1.l1", "kernel")
    idx[0, op] = 0  # zero
    a = idx.copy()
    b = idx.copy()
    b[0, kernel] = 1 - a[0, kernel]
    assert torch.allclose(ctrl.log_prob(a), ctrl.log_prob(b))
    a[0, op] = b[0, op] = 1  # block: now the kernel counts
    assert not torch.allclose(ctrl.log_prob(a), ctrl.log_prob(b))
    # the log-prob is the sum of the active decisions' log-probs
    lp = ctrl.log_probs()
    expected = sum(lp[i, a[0, i]] for i, d in enumerate(ctrl.decisions)
                   if d.parent < 0 or a[0, d.parent] == 1)
    assert torch.allclose(ctrl.log_prob(a)[0], expected)


def test_entropy_is_hierarchical(space):
    ctrl = Controller(space)
    uniform = ctrl.entropy().item()
    expected = 0.0
    for layer in space.layers:
        dec = layer.decisions()
        inner = sum(math.log(len(v)) for k, v in dec.items() if k != "op")
        expected += math.log(2) + 0.5 * inner if "op" in dec else inner
    assert uniform == pytest.approx(expected, rel=1e-5)
    with torch.no_grad():  # a layer that surely skips contributes nothing beyond its op entropy (~0)
        for layer in space.layers:
            if layer.allow_zero:
                ctrl.logits[_index(ctrl, layer.name, "op"), 0] = 50.0
    fixed = sum(sum(math.log(len(v)) for k, v in l.decisions().items()) for l in space.layers if not l.allow_zero)
    assert ctrl.entropy().item() == pytest.approx(fixed, rel=1e-4)


def test_samples_follow_the_policy_and_map_to_valid_genotypes(space):
    ctrl = Controller(space)
    i = _index(ctrl, "s2.l0", "kernel")
    with torch.no_grad():
        ctrl.logits[i, 0] = math.log(3.0)  # p = 3/4 for kernel 3
    idx = ctrl.sample(np.random.default_rng(1), 4000)
    assert abs((idx[:, i] == 0).mean() - 0.75) < 0.03
    for row in idx[:20]:
        ctrl.genotype(row).validate(space)


def test_controller_learns_the_better_arm_on_a_toy_bandit(space):
    """REINFORCE with the EMA baseline prefers the kernel that pays more."""
    torch.manual_seed(0)
    ctrl = Controller(space)
    opt = rl_optimizer(ctrl.parameters())
    for g in opt.param_groups:
        g["lr"] = 0.05
    base = EmaBaseline(0.95)
    rng = np.random.default_rng(0)
    i = _index(ctrl, "s2.l0", "kernel")
    for _ in range(150):
        idx = ctrl.sample(rng, 4)
        r = np.where(idx[:, i] == 1, 0.8, 0.5) + rng.normal(0, 0.05, 4)
        b = base.update(float(r.mean()))
        loss = -(torch.as_tensor(r - b, dtype=torch.float32) * ctrl.log_prob(idx)).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert ctrl.argmax_genotype().choices[ctrl.decisions[i].layer].kernel == 5
    assert ctrl.probs()[i, 1] > 0.9


def test_ema_baseline_is_zero_debiased():
    b = EmaBaseline(0.95)
    assert b.update(2.0) == pytest.approx(2.0)
    v = b.update(4.0)
    assert v == pytest.approx((0.95 * 0.05 * 2 + 0.05 * 4) / (0.95 * 0.05 + 0.05))


def test_reward_is_accuracy_plus_abs_cost_terms(tiny_config, space):
    cfg = tiny_config("search.cost_beta=-0.2", "search.params_beta=-0.5", "search.cost_metric=flops").search
    assert path_reward(0.7, 1.5, 3.0, cfg) == pytest.approx(0.7 - 0.2 * 0.5)
    assert path_reward(0.7, 0.5, 3.0, cfg) == pytest.approx(0.7 - 0.2 * 0.5)
    both = cfg.model_copy(update={"cost_metric": "both"})
    assert path_reward(0.7, 1.5, 3.0, both) == pytest.approx(0.7 - 0.1 - 0.5 * 2.0)
    costs = CostModel(space, cfg)
    ref = space.reference_genotype()
    assert costs.ratios(ref) == pytest.approx((1.0, 1.0))
    assert costs.cost(ref)[0] == space.path_flops(ref)
    explicit = CostModel(space, cfg.model_copy(update={"cost_target": space.path_flops(ref) / 2}))
    assert explicit.ratios(ref)[0] == pytest.approx(2.0)


def test_schedules(tiny_config):
    s = tiny_config("search.rl_delay_fraction=0.25", "search.op_warmup_fraction=0.2", "search.rl_lr=0.01",
                    "search.rl_lr_growth=10", "search.lr_warmup_fraction=0.1", "search.lr=0.1").search
    assert rl_lr_at(24, 100, s) == 0.0
    assert rl_lr_at(25, 100, s) == pytest.approx(0.01)
    assert rl_lr_at(99, 100, s) == pytest.approx(0.1)
    assert op_warmup_prob(0, 100, s) == 1.0 and op_warmup_prob(10, 100, s) == pytest.approx(0.5)
    assert op_warmup_prob(20, 100, s) == 0.0
    warm = warmup_steps(s.lr_warmup_fraction, 100)
    assert warm == 10 and warmup_steps(0.29, 100) == 29  # floor, robust to 0.29 x 100 = 28.999...
    assert warmup_cosine(0, 100, warm, s.lr) == pytest.approx(0.01) and warmup_cosine(10, 100, warm, s.lr) == 0.1
    assert warmup_cosine(99, 100, warm, s.lr) < 0.001
