"""flops_prefix_tree: a node's computation is reused only along a shared prefix with identical activations (shared
batch-norm); checked against FlopCounterMode."""

import pytest
import torch

from mpnas.evaluation.costs import path_flops, prefix_tree_flops, union_flops
from mpnas.models.blocks import init_weights
from mpnas.models.multipath import MultiPathNet
from mpnas.space import Genotype, SearchSpace

A = ["conv_k3", "ir_k3_e2", "zero", "ir_k5_e2_se", "ir_k3_e1"]
B = ["conv_k3", "ir_k5_e2_se", "zero", "ir_k5_e2_se", "ir_k3_e1"]  # differs from A at layer 1, then agrees


def _model(tiny_cfg, genos, share=True, bn_mode="shared"):
    space = SearchSpace.from_config(tiny_cfg.space, 16)
    g = {d: Genotype.from_strings(v) for d, v in genos.items()}
    torch.manual_seed(0)
    m = MultiPathNet(space, g, {d: 3 + i for i, d in enumerate(g)}, space_config=tiny_cfg.space, share_nodes=share,
                     bn_mode=bn_mode)
    init_weights(m)
    return m.eval()


def _paths(m):
    return {d: path_flops(m, d) for d in m.domains}


def test_identical_paths_cost_one_path_plus_classifiers(tiny_cfg):
    m = _model(tiny_cfg, {"a": A, "b": A, "c": A})
    assert prefix_tree_flops(m, _paths(m)) == union_flops(m)  # everything before each classifier is reused


def test_paths_that_diverge_reuse_only_the_common_prefix(tiny_cfg):
    m = _model(tiny_cfg, {"a": A, "b": B})
    flops = _paths(m)
    stem = _model(tiny_cfg, {"a": A})
    stem_flops = 2 * stem.space.layers[0].cost(stem.genotypes["a"].choices[0])[0]
    assert prefix_tree_flops(m, flops) == sum(flops.values()) - stem_flops
    # layers 3-4 hold the same blocks but see different inputs: union counts them once, the prefix tree twice
    assert prefix_tree_flops(m, flops) > union_flops(m)


def test_a_bundle_reuses_nothing(tiny_cfg):
    m = _model(tiny_cfg, {"a": A, "b": A}, share=False)
    flops = _paths(m)
    assert prefix_tree_flops(m, flops) == sum(flops.values())


def test_per_domain_batch_norm_reuses_only_the_stem_convolution(tiny_cfg):
    """Per-domain BN makes a shared node's output differ per domain: nothing after the stem's conv is reusable."""
    for bn in ("per_domain", "per_domain_affine"):
        m = _model(tiny_cfg, {"a": A, "b": A, "c": A}, bn_mode=bn)
        flops = _paths(m)
        stem_flops = 2 * m.space.layers[0].cost(m.genotypes["a"].choices[0])[0]
        assert prefix_tree_flops(m, flops) == sum(flops.values()) - 2 * stem_flops
