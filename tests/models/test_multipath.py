"""Merged multi-path model: node sharing is real (same tensors), counts match the analytic costs, routed execution
equals per-domain calls, and the model directory round-trips exactly."""

import copy
import json

import pytest
import safetensors.torch
import torch

from mpnas.models.blocks import init_weights
from mpnas.models.multipath import MultiPathNet, load_model, save_model
from mpnas.models.sharing import jaccard_matrix, sharing_report
from mpnas.space import Genotype, SearchSpace


@pytest.fixture
def space(tiny_cfg):
    return SearchSpace.from_config(tiny_cfg.space, 16)


def _geno(*blocks):
    return Genotype.from_strings(blocks)


@pytest.fixture
def genotypes():
    # layers: stem, s1.l0 (skippable), s1.l1 (skippable), s2.l0, s2.l1 (skippable)
    return {"a": _geno("conv_k3", "ir_k3_e2", "zero", "ir_k5_e2_se", "ir_k3_e1"),
            "b": _geno("conv_k3", "ir_k3_e2", "ir_k5_e1", "ir_k3_e2", "ir_k3_e1"),
            "c": _geno("conv_k3", "ir_k5_e2_se", "zero", "ir_k5_e2_se", "zero")}


NUM_CLASSES = {"a": 3, "b": 4, "c": 5}


def _model(space, genotypes, tiny_cfg, **kw):
    torch.manual_seed(0)
    m = MultiPathNet(space, genotypes, NUM_CLASSES, space_config=tiny_cfg.space, **kw)
    init_weights(m)
    return m


def test_one_module_per_distinct_node(space, genotypes, tiny_cfg):
    m = _model(space, genotypes, tiny_cfg)
    assert sorted(m.nodes) == ["L00/conv_k3", "L01/ir_k3_e2", "L01/ir_k5_e2_se", "L02/ir_k5_e1",
                               "L03/ir_k3_e2", "L03/ir_k5_e2_se", "L04/ir_k3_e1"]
    assert m.paths["a"][2] is None and m.paths["c"][4] is None  # zero layers are identities, not modules
    assert len(m.heads) == 1 and set(m.classifiers) == {"a", "b", "c"}


def test_parameter_count_matches_modules_and_analytic(space, genotypes, tiny_cfg):
    m = _model(space, genotypes, tiny_cfg)
    by_module = (sum(p.numel() for node in m.nodes.values() for p in node.parameters())
                 + sum(p.numel() for p in m.heads.parameters()) + sum(p.numel() for p in m.classifiers.parameters()))
    assert m.num_parameters() == by_module == m.analytic_parameters()
    for d, g in genotypes.items():
        assert m.path_parameters(d) == space.path_cost(g, NUM_CLASSES[d])[1]
    bundle = _model(space, genotypes, tiny_cfg, share_nodes=False)
    assert bundle.num_parameters() == bundle.analytic_parameters() == \
        sum(space.path_cost(g, NUM_CLASSES[d])[1] for d, g in genotypes.items())
    assert bundle.num_parameters() > m.num_parameters()


def test_shared_nodes_hold_the_same_tensors(space, genotypes, tiny_cfg):
    m = _model(space, genotypes, tiny_cfg)
    pa, pb, pc = (dict(m.domain_module(d).named_parameters()) for d in "abc")
    # layer 1: a and b share ir_k3_e2 (the first node on both paths after the stem)
    assert pa["nodes.1.expand.conv.weight"].data_ptr() == pb["nodes.1.expand.conv.weight"].data_ptr()
    assert pa["nodes.1.expand.conv.weight"].data_ptr() != pc["nodes.1.expand.conv.weight"].data_ptr()
    assert pa["head.first.conv.weight"].data_ptr() == pc["head.first.conv.weight"].data_ptr()
    assert pa["classifier.1.weight"].data_ptr() != pb["classifier.1.weight"].data_ptr()
    bundle = _model(space, genotypes, tiny_cfg, share_nodes=False)
    qa, qb = (dict(bundle.domain_module(d).named_parameters()) for d in "ab")
    assert qa["nodes.1.expand.conv.weight"].data_ptr() != qb["nodes.1.expand.conv.weight"].data_ptr()


@pytest.mark.parametrize("train", [True, False])
def test_routed_equals_per_domain_calls(space, genotypes, tiny_cfg, train):
    m = _model(space, genotypes, tiny_cfg, dropout=0.0)
    # give the per-domain BN statistics distinct values, so eval mode must pick the right ones
    for mod in m.modules():
        if hasattr(mod, "running_mean"):
            mod.running_mean.uniform_(-0.5, 0.5)
            mod.running_var.uniform_(0.5, 2.0)
    m.train(train)
    ref = copy.deepcopy(m)
    torch.manual_seed(1)
    xs = {"a": torch.randn(4, 3, 16, 16), "b": torch.randn(3, 3, 16, 16) + 1.0, "c": torch.randn(5, 3, 16, 16)}
    routed = m.forward_routed(xs)
    separate = {d: ref(x, d) for d, x in xs.items()}
    for d in xs:
        torch.testing.assert_close(routed[d], separate[d], rtol=1e-5, atol=1e-5)
    for (k, v), (_, w) in zip(m.state_dict().items(), ref.state_dict().items()):
        torch.testing.assert_close(v, w, rtol=1e-5, atol=1e-6, msg=k)  # running statistics updated identically


@pytest.mark.parametrize("bn_mode", ["per_domain", "per_domain_affine", "shared"])
@pytest.mark.parametrize("share_nodes", [True, False])
def test_routed_gradients_reach_every_used_parameter(space, genotypes, tiny_cfg, bn_mode, share_nodes):
    m = _model(space, genotypes, tiny_cfg, bn_mode=bn_mode, share_nodes=share_nodes).train()
    out = m.forward_routed({d: torch.randn(4, 3, 16, 16) for d in genotypes})
    torch.stack([o.logsumexp(1).mean() for o in out.values()]).sum().backward()
    missing = [n for n, p in m.named_parameters()
               if p.grad is None or not torch.isfinite(p.grad).all() or not p.grad.abs().sum() > 0]
    assert not missing


def test_domain_module_equals_forward(space, genotypes, tiny_cfg):
    m = _model(space, genotypes, tiny_cfg).eval()
    x = torch.randn(2, 3, 16, 16)
    for d in genotypes:
        torch.testing.assert_close(m.domain_module(d)(x), m(x, d))


def test_save_load_round_trip(space, genotypes, tiny_cfg, tmp_path):
    m = _model(space, genotypes, tiny_cfg).train()
    m.forward_routed({d: torch.randn(4, 3, 16, 16) for d in genotypes})  # non-trivial running statistics
    m.eval()
    save_model(m, tmp_path / "model", {"domains": {"a": {"classes": ["x", "y", "z"]}}, "data": {"crop": 16}})
    arch = json.loads((tmp_path / "model" / "architecture.json").read_text())
    assert arch["format"] == "mpnas.model/1" and arch["genotypes"]["a"][2] == "zero"
    assert arch["domains"]["a"] == {"num_classes": 3, "classes": ["x", "y", "z"]}
    stored = safetensors.torch.load_file(str(tmp_path / "model" / "model.safetensors"))
    assert len(stored) == len(m.state_dict())  # every tensor once
    loaded = load_model(tmp_path / "model")
    x = torch.randn(3, 3, 16, 16)
    for d in genotypes:
        assert torch.equal(loaded(x, d), m(x, d))


def test_genotype_error_names_domain_and_layer(space, genotypes, tiny_cfg):
    bad = dict(genotypes, b=_geno("conv_k3", "ir_k7_e2", "zero", "ir_k3_e2", "zero"))
    with pytest.raises(ValueError, match=r"domain 'b'.*s1\.l0.*kernel 7"):
        _model(space, bad, tiny_cfg)
    with pytest.raises(ValueError, match="domain 'a'.*3 choices"):
        _model(space, dict(genotypes, a=_geno("conv_k3", "zero", "zero")), tiny_cfg)


def test_sharing_report_and_jaccard(space, genotypes, tiny_cfg):
    m = _model(space, genotypes, tiny_cfg)
    rep = sharing_report(m)
    # shared: stem (a,b,c), L01/ir_k3_e2 (a,b), L03/ir_k5_e2_se (a,c), L04/ir_k3_e1 (a,b)
    assert (rep["nodes_total"], rep["nodes_shared"], rep["nodes_exclusive"]) == (7, 4, 3)
    assert rep["layers"][2]["skipped_by"] == ["a", "c"]
    jac = jaccard_matrix(m)
    mat = torch.tensor(jac["matrix"])
    assert torch.equal(mat, mat.T) and torch.all(mat.diagonal() == 1)
    # a = {0, 1k3, 3k5se, 4}, b = {0, 1k3, 2, 3k3, 4}: 3 common of 6; a vs c = {0, 1k5se, 3k5se}: 2 of 5
    assert jac["matrix"][0][1] == pytest.approx(3 / 6) and jac["matrix"][0][2] == pytest.approx(2 / 5)
    assert jac["matrix"][1][2] == pytest.approx(1 / 7)


def test_architecture_figure_is_written(space, genotypes, tiny_cfg, tmp_path):
    from mpnas.evaluation.figures import architecture_figure

    path = architecture_figure(_model(space, genotypes, tiny_cfg), tmp_path / "arch.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ----------------------------------------------------------------------------------- per-domain affine batch-norm
def _affine_model(space, genotypes, tiny_cfg):
    m = _model(space, genotypes, tiny_cfg, bn_mode="per_domain_affine")
    with torch.no_grad():  # distinct per-domain affine and statistics, so a wrong row would show
        for mod in m.modules():
            if hasattr(mod, "running_mean"):
                mod.weight.uniform_(0.5, 1.5)
                mod.bias.uniform_(-0.3, 0.3)
                mod.running_mean.uniform_(-0.5, 0.5)
                mod.running_var.uniform_(0.5, 2.0)
    return m


def test_per_domain_affine_counts_each_domains_bn_once(space, genotypes, tiny_cfg):
    m = _affine_model(space, genotypes, tiny_cfg)
    base = _model(space, genotypes, tiny_cfg)
    assert m.num_parameters() == m.analytic_parameters() > base.num_parameters()
    for d, g in genotypes.items():  # a path holds only its own BN rows: the same count as a single-domain model
        assert m.path_parameters(d) == space.path_cost(g, NUM_CLASSES[d])[1]
    assert m.nodes["L00/conv_k3"].bn.weight.shape == (3, 8)


@pytest.mark.parametrize("train", [True, False])
def test_per_domain_affine_routed_equals_per_domain_calls_and_affine_matters(space, genotypes, tiny_cfg, train):
    m = _affine_model(space, genotypes, tiny_cfg).train(train)
    ref = copy.deepcopy(m)
    xs = {d: torch.randn(4, 3, 16, 16) for d in genotypes}
    routed = m.forward_routed(xs)
    for d, x in xs.items():
        torch.testing.assert_close(routed[d], ref(x, d), rtol=1e-5, atol=1e-5)
    swapped = copy.deepcopy(m)
    with torch.no_grad():
        swapped.nodes["L00/conv_k3"].bn.weight[0] = swapped.nodes["L00/conv_k3"].bn.weight[1]
    x = torch.randn(2, 3, 16, 16)
    assert torch.equal(swapped.eval()(x, "b"), m.eval()(x, "b"))  # b's row untouched
    assert not torch.allclose(swapped(x, "a"), m(x, "a"))


def test_per_domain_affine_round_trips(space, genotypes, tiny_cfg, tmp_path):
    m = _affine_model(space, genotypes, tiny_cfg).eval()
    save_model(m, tmp_path / "model", {"data": {"crop": 16}})
    loaded = load_model(tmp_path / "model")
    assert loaded.bn_mode == "per_domain_affine"
    x = torch.randn(3, 3, 16, 16)
    for d in genotypes:
        assert torch.equal(loaded(x, d), m(x, d))


def test_unknown_bn_mode_is_refused(space, genotypes, tiny_cfg):
    with pytest.raises(ValueError, match="bn_mode 'per_class'"):
        _model(space, genotypes, tiny_cfg, bn_mode="per_class")
