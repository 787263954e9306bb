"""Growing a model by one domain: old tensors copied unchanged, new ones trainable, old logits bit-for-bit equal."""

import pytest
import torch

from mpnas.extend.grow import (freeze_all_but, grow_model, new_node_ids, old_tensors_changed,
                               trainable_parameters)
from mpnas.nas.supernet import SuperNet
from mpnas.space import Genotype

from .conftest import parent_model

NEW_PATH = Genotype.from_strings(["conv_k3", "ir_k3_e2", "ir_k3_e1_se", "ir_k5_e2_se", "zero"])  # L02 node is new


@pytest.mark.parametrize("bn_mode", ["per_domain", "per_domain_affine"])
def test_grown_model_keeps_old_logits_and_trains_only_new_parameters(add_cfg, bn_mode):
    parent = parent_model(add_cfg, bn_mode)
    supernet = SuperNet(parent.space)
    grown = grow_model(parent, "gamma", NEW_PATH, 3, supernet).eval()
    assert new_node_ids(parent, grown) == ["L02/ir_k3_e1_se"]
    x = torch.randn(5, 3, 16, 16)
    for d in parent.domains:
        assert torch.equal(parent(x, d), grown(x, d)), d
    assert old_tensors_changed(parent, grown) == []

    trainable = trainable_parameters(parent, grown, "gamma")
    hooks = freeze_all_but(grown, trainable)
    opt = torch.optim.AdamW([p for _, p, _ in trainable], lr=0.1, weight_decay=0.0)
    grown.train()
    for _ in range(3):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(grown(x, "gamma"), torch.tensor([0, 1, 2, 0, 1])).backward()
        opt.step()
    for h in hooks:
        h.remove()
    grown.eval()
    assert old_tensors_changed(parent, grown) == []
    for d in parent.domains:
        assert torch.equal(parent(x, d), grown(x, d)), d
    assert grown.classifiers["gamma"][1].bias.abs().sum() > 0  # the new classifier did train
    if bn_mode == "per_domain_affine":  # the new domain's own BN row in a reused node trained too
        bn = grown.nodes["L00/conv_k3"].bn
        assert not torch.equal(bn.weight[2], bn.weight[:2].mean(0))


def test_new_nodes_start_from_the_supernet_weights(add_cfg):
    parent = parent_model(add_cfg)
    supernet = SuperNet(parent.space)
    grown = grow_model(parent, "gamma", NEW_PATH, 3, supernet)
    node = grown.nodes["L02/ir_k3_e1_se"]
    assert torch.equal(node.depthwise.conv.weight, supernet.layers[2].dw["k3"][:node.depthwise.conv.weight.shape[0]])


def test_growing_by_an_existing_domain_is_refused(add_cfg):
    with pytest.raises(ValueError, match="already in the model"):
        grow_model(parent_model(add_cfg), "alpha", NEW_PATH, 3)
