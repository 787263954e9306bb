"""Loss weighting strategies: ABDP favours the domain doing worse with mean ~1 after burn-in; DWA favours the domain
whose loss falls slowest; uncertainty weights are learnable; every strategy's state round-trips."""

import copy

import pytest
import torch

from mpnas.config import WeightingConfig
from mpnas.weighting import build_weighting

DOMAINS = ["easy", "hard", "mid"]


def _cfg(name, **abdp):
    return WeightingConfig.model_validate({"name": name, "abdp": {"update_every": 1, **abdp}})


def _feed(w, steps, acc, loss=None, start=0):
    for s in range(start, start + steps):
        w.update(s, loss(s) if loss else {d: 1.0 for d in DOMAINS}, acc)


def test_abdp_weights_rise_for_the_worse_domain_and_average_one():
    w = build_weighting(_cfg("abdp", burn_in_fraction=0.1), DOMAINS, total_steps=100)
    _feed(w, 30, {"easy": 0.95, "hard": 0.2, "mid": 0.6})
    ws = w.weights(30)
    assert ws["hard"] > ws["mid"] > ws["easy"]
    assert sum(ws.values()) / 3 == pytest.approx(1.0)
    assert ws["easy"] >= 0.3  # the floor keeps easy domains from starving


def test_abdp_burn_in_keeps_uniform_weights():
    w = build_weighting(_cfg("abdp", burn_in_fraction=0.5), DOMAINS, total_steps=100)
    _feed(w, 40, {"easy": 0.95, "hard": 0.1, "mid": 0.5})
    assert w.weights(40) == {d: 1.0 for d in DOMAINS}
    _feed(w, 20, {"easy": 0.95, "hard": 0.1, "mid": 0.5}, start=40)
    assert w.weights(60)["hard"] > 1.0


def test_abdp_combine_is_the_weighted_mean():
    w = build_weighting(_cfg("abdp", burn_in_fraction=0.0), DOMAINS, total_steps=10)
    _feed(w, 3, {"easy": 0.9, "hard": 0.3, "mid": 0.5})
    losses = {"easy": torch.tensor(1.0), "hard": torch.tensor(2.0), "mid": torch.tensor(3.0)}
    ws = w.weights(3)
    assert float(w.combine(losses, 3)) == pytest.approx(sum(ws[d] * float(v) for d, v in losses.items()) / 3)


def test_dwa_favours_the_domain_whose_loss_falls_slowest():
    w = build_weighting(_cfg("dwa"), DOMAINS, total_steps=100)
    _feed(w, 3, {}, loss=lambda s: {"easy": 1.0 / (s + 1), "hard": 1.0, "mid": 1.0 / (s + 1) ** 0.5})
    ws = w.weights(3)
    assert ws["hard"] > ws["mid"] > ws["easy"] and sum(ws.values()) / 3 == pytest.approx(1.0)


def test_uncertainty_weights_are_learnable():
    w = build_weighting(_cfg("uncertainty"), DOMAINS, total_steps=10)
    opt = torch.optim.SGD(list(w.parameters()), lr=0.1)
    for _ in range(20):
        loss = w.combine({"easy": torch.tensor(0.1), "hard": torch.tensor(3.0), "mid": torch.tensor(1.0)}, 0)
        opt.zero_grad()
        loss.backward()
        opt.step()
    ws = w.weights(0)
    assert ws["easy"] > ws["mid"] > ws["hard"]  # noisier (higher-loss) domains are down-weighted


@pytest.mark.parametrize("name", ["uniform", "abdp", "dwa", "uncertainty"])
def test_state_round_trip(name):
    a = build_weighting(_cfg(name, burn_in_fraction=0.0), DOMAINS, total_steps=50)
    _feed(a, 5, {"easy": 0.9, "hard": 0.2, "mid": 0.5}, loss=lambda s: {"easy": 1 / (s + 1), "hard": 1.0, "mid": 0.5})
    b = build_weighting(_cfg(name, burn_in_fraction=0.0), DOMAINS, total_steps=50)
    b.load_state_dict(copy.deepcopy(a.state_dict()))
    for s in range(5, 12):  # both continue identically
        acc = {"easy": 0.9, "hard": 0.2 + 0.05 * s, "mid": 0.5}
        loss = {"easy": 1 / (s + 1), "hard": 1.0 - 0.02 * s, "mid": 0.5}
        a.update(s, loss, acc)
        b.update(s, loss, acc)
        assert a.weights(s) == b.weights(s)


def test_loaded_state_is_not_aliased():
    """Continuing from a loaded state must not modify the state dict it came from (e.g. a checkpoint in memory)."""
    cfg = WeightingConfig.model_validate({"name": "dwa", "abdp": {"update_every": 10}})
    a = build_weighting(cfg, DOMAINS, total_steps=50)
    a.update(0, {"easy": 1.0, "hard": 1.0, "mid": 1.0}, {})
    state = a.state_dict()
    b = build_weighting(cfg, DOMAINS, total_steps=50)
    b.load_state_dict(state)
    b.update(1, {"easy": 2.0, "hard": 2.0, "mid": 2.0}, {})
    assert state["window"] == {d: [1.0] for d in DOMAINS}


def test_unknown_strategy_is_refused():
    cfg = WeightingConfig()
    object.__setattr__(cfg, "name", "nope")
    with pytest.raises(ValueError, match="unknown strategy"):
        build_weighting(cfg, DOMAINS, 10)
