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


# ------------------------------------------------------------------------------------- abdp by attainable progress
import json  # noqa: E402

from mpnas.config import ConfigError, load_config  # noqa: E402
from mpnas.weighting import capped_weights, unscale_exclusive_gradients  # noqa: E402


def _reference(tmp_path, val: dict, classes: dict):
    path = tmp_path / "reference_metrics.json"
    path.write_text(json.dumps({"domains": {d: {"top1_val": v, "num_classes": classes[d]} for d, v in val.items()}}))
    return path


def test_abdp_gives_an_unlearnable_domain_the_floor_where_the_focal_rule_gives_it_the_most(tmp_path):
    classes = {"easy": 2, "hard": 200, "mid": 10}
    acc = {"easy": 0.9, "hard": 0.01, "mid": 0.4}  # hard is at chance (1/200 = 0.005) and its reference too
    ref = _reference(tmp_path, {"easy": 0.95, "hard": 0.006, "mid": 0.7}, classes)
    new = build_weighting(_cfg("abdp", burn_in_fraction=0.0, momentum=0.0, reference_metrics=str(ref)), DOMAINS,
                          100, classes)
    old = build_weighting(_cfg("abdp_focal", burn_in_fraction=0.0, momentum=0.0), DOMAINS, 100, classes)
    _feed(new, 5, acc)
    _feed(old, 5, acc)
    assert max(old.weights(5), key=old.weights(5).get) == "hard"
    ws = new.weights(5)
    # nothing attainable left for hard: the floor share, faded towards 1 by the open fraction of attainable progress
    gaps = new.gaps()
    fade = sum(gaps.values()) / sum(new.attainable.values())
    assert 0 < fade < 1 and ws["hard"] == pytest.approx(1 + fade * (0.3 - 1))
    assert ws["mid"] > ws["easy"] > ws["hard"]  # mid has 0.27 chance-corrected accuracy to gain, easy 0.1
    assert sum(ws.values()) / 3 == pytest.approx(1.0)


def test_abdp_fades_to_uniform_as_the_attainable_progress_closes(tmp_path):
    """No floor-or-cap jump when one small gap is left: weights move continuously towards 1."""
    classes = {"easy": 10, "hard": 10, "mid": 10}
    ref = _reference(tmp_path, {"easy": 0.5, "hard": 0.5, "mid": 0.5}, classes)
    w = build_weighting(_cfg("abdp", burn_in_fraction=0.0, momentum=0.0, reference_metrics=str(ref)), DOMAINS,
                        100, classes)
    spreads = []
    for hard_acc in (0.1, 0.3, 0.45, 0.49, 0.5):
        _feed(w, 3, {"easy": 0.6, "hard": hard_acc, "mid": 0.6})  # only hard is below its reference
        ws = w.weights(3)
        assert sum(ws.values()) == pytest.approx(3.0) and ws["hard"] >= ws["easy"] == pytest.approx(ws["mid"])
        spreads.append(ws["hard"] - ws["easy"])
    assert spreads == sorted(spreads, reverse=True) and spreads[-1] == pytest.approx(0.0)
    assert spreads[-2] < 0.1  # a gap of 1 point out of 44 attainable moves the weights by little


def test_abdp_reference_prefers_the_final_training_accuracy(tmp_path):
    """The KPI is training-batch top-1, so a reference that records its own (train.train_top1_final) is used."""
    classes = {"easy": 2, "hard": 10, "mid": 10}
    path = tmp_path / "ref.json"
    doc = {"domains": {d: {"top1_val": 0.55, "num_classes": c} for d, c in classes.items()},
           "train": {"train_top1_final": {"easy": 0.9, "hard": 0.3, "mid": 0.6}}}
    path.write_text(json.dumps(doc))
    w = build_weighting(_cfg("abdp", reference_metrics=str(path)), DOMAINS, 100, classes)
    assert w.attainable == pytest.approx({"easy": 0.8, "hard": (0.3 - 0.1) / 0.9, "mid": (0.6 - 0.1) / 0.9})
    del doc["train"]["train_top1_final"]["mid"]  # incomplete: val top-1 for every domain
    path.write_text(json.dumps(doc))
    w = build_weighting(_cfg("abdp", reference_metrics=str(path)), DOMAINS, 100, classes)
    assert w.attainable["easy"] == pytest.approx(0.1) and w.attainable["mid"] == pytest.approx(0.5)


def test_abdp_weights_never_pass_the_cap_and_keep_mean_one():
    w = build_weighting(_cfg("abdp", burn_in_fraction=0.0, momentum=0.0, cap=1.5), DOMAINS, 100,
                        {"easy": 10, "hard": 10, "mid": 10})
    _feed(w, 3, {"easy": 0.99, "hard": 0.1, "mid": 0.98})  # nearly all the gap is hard's
    shares = capped_weights(w.gaps(), 0.3, 1.5)
    assert shares["hard"] == pytest.approx(1.5)
    ws = w.weights(3)
    assert max(ws.values()) <= 1.5 + 1e-12 and ws["hard"] == max(ws.values())
    assert min(ws.values()) >= 0.3 and sum(ws.values()) == pytest.approx(3.0)
    assert ws["mid"] > ws["easy"]  # the excess over the cap goes to the others in proportion to their gaps


def test_capped_weights_water_fills():
    ws = capped_weights({"a": 10.0, "b": 10.0, "c": 1.0, "d": 0.0}, floor=0.2, cap=1.6)
    assert ws["a"] == ws["b"] == pytest.approx(1.6) and ws["d"] == pytest.approx(0.2)
    assert sum(ws.values()) == pytest.approx(4.0)
    assert capped_weights({"a": 0.0, "b": 0.0}, 0.3, 2.0) == {"a": 1.0, "b": 1.0}


def test_chance_correction_treats_a_two_class_domain_at_half_as_unlearnt():
    w = build_weighting(_cfg("abdp", burn_in_fraction=0.0, momentum=0.0), ["bin", "ten"], 100, {"bin": 2, "ten": 10})
    for s in range(3):
        w.update(s, {"bin": 1.0, "ten": 1.0}, {"bin": 0.5, "ten": 0.55})
    ws = w.weights(3)
    assert ws["bin"] > ws["ten"]  # raw accuracy says bin is worse by 0.05; chance-corrected it is 0 vs 0.5


def test_cap_below_floor_is_refused_naming_the_field():
    with pytest.raises(ConfigError, match=r"train\.loss_weighting\.abdp\.cap: .*below floor"):
        load_config(None, ["train.loss_weighting.abdp.floor=0.9", "train.loss_weighting.abdp.cap=0.5"])
    with pytest.raises(ConfigError, match=r"train\.loss_weighting\.abdp\.cap: .*below 1"):
        load_config(None, ["train.loss_weighting.abdp.cap=0.95"])


def test_missing_reference_metrics_is_refused_naming_the_field(tmp_path):
    with pytest.raises(ConfigError, match=r"train\.loss_weighting\.abdp\.reference_metrics: .*nope\.json: not found"):
        load_config(None, [f"train.loss_weighting.abdp.reference_metrics={tmp_path / 'nope.json'}"])


def test_reference_metrics_lacking_a_domain_is_refused(tmp_path):
    ref = _reference(tmp_path, {"easy": 0.9, "mid": 0.5}, {"easy": 2, "mid": 10})
    cfg = _cfg("abdp", reference_metrics=str(ref))
    with pytest.raises(ValueError, match=r"reference_metrics has no domains.<d>.top1_val for hard"):
        build_weighting(cfg, DOMAINS, 100, {"easy": 2, "hard": 5, "mid": 10})


# ------------------------------------------------------------------------- weights act on shared parameters only
def _grads(model, batches, labels, weights, unscale):
    model.zero_grad(set_to_none=True)
    logits = model.forward_routed(batches)
    losses = {d: torch.nn.functional.cross_entropy(logits[d], labels[d]) for d in logits}
    torch.stack([weights[d] * v for d, v in losses.items()]).mean().backward()
    if unscale:
        unscale_exclusive_gradients(model.exclusive_parameters(), weights)
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("bn_mode", ["per_domain", "per_domain_affine"])
def test_weights_scale_shared_gradients_only(tiny_cfg, bn_mode):
    from mpnas.models.blocks import init_weights
    from mpnas.models.multipath import MultiPathNet
    from mpnas.space import Genotype, SearchSpace

    space = SearchSpace.from_config(tiny_cfg.space, 16)
    genos = {"a": Genotype.from_strings(["conv_k3", "ir_k3_e2", "zero", "ir_k5_e2_se", "ir_k3_e1"]),
             "b": Genotype.from_strings(["conv_k3", "ir_k3_e2", "ir_k5_e1", "ir_k3_e2", "ir_k3_e1"])}
    torch.manual_seed(0)
    model = MultiPathNet(space, genos, {"a": 3, "b": 4}, bn_mode, space_config=tiny_cfg.space)
    init_weights(model)
    model.train()
    batches = {d: torch.randn(6, 3, 16, 16) for d in genos}
    labels = {"a": torch.randint(0, 3, (6,)), "b": torch.randint(0, 4, (6,))}
    w = {"a": 2.0, "b": 0.5}
    uniform = _grads(copy.deepcopy(model), batches, labels, {"a": 1.0, "b": 1.0}, False)
    weighted = _grads(copy.deepcopy(model), batches, labels, w, False)
    shared_only = _grads(copy.deepcopy(model), batches, labels, w, True)
    # exclusive: a's classifier and node L03/ir_k5_e2_se, b's node L02/ir_k5_e1: the plain (uniform) gradient
    for name in ("classifiers.a.1.weight", "classifiers.b.1.bias", "nodes.L03/ir_k5_e2_se.project.conv.weight",
                 "nodes.L02/ir_k5_e1.depthwise.conv.weight"):
        assert torch.allclose(shared_only[name], uniform[name], atol=1e-6), name
        assert not torch.allclose(weighted[name], uniform[name], atol=1e-6), name
    # shared conv (stem, L01, L04, head): the weighted mix, untouched by the unscaling
    for name in ("nodes.L00/conv_k3.conv.weight", "nodes.L04/ir_k3_e1.project.conv.weight", "heads.shared.rest.0.weight"):
        assert torch.equal(shared_only[name], weighted[name]), name
        assert not torch.allclose(shared_only[name], uniform[name], atol=1e-6), name
    bn = "nodes.L00/conv_k3.bn.weight"
    if bn_mode == "per_domain_affine":  # each domain's own BN row is exclusive even inside a shared node
        assert shared_only[bn].shape == (2, 8) and torch.allclose(shared_only[bn], uniform[bn], atol=1e-6)
    else:
        assert torch.equal(shared_only[bn], weighted[bn])
