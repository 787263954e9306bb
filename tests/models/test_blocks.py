"""Fixed blocks: analytic FLOPs/params equal torch's counts; per-domain BN keeps separate statistics."""

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from mpnas.config import load_config
from mpnas.models.blocks import DomainBatchNorm2d, Head, build_block
from mpnas.space import Choice, SearchSpace


SPACE = SearchSpace.from_config(load_config().space, 32)
# Every block the space offers, checked on a residual relu layer (s1.l1) and a stride-2 hswish layer (s3.l0); every
# layer checked with every choice it offers (shape, parameters) and its largest choice (FLOPs). Counting FLOPs for all
# 469 (layer, choice) pairs would take about 10 s, this covers each block and each layer shape in about 2 s.
BLOCKS = sorted({str(c) for layer in SPACE.layers for c in layer.choices() if not c.is_zero})
BLOCK_LAYERS = ("stem", "s1.l1", "s3.l0")


@pytest.fixture(scope="module")
def space() -> SearchSpace:
    return SPACE


def _check_cost(layer, c: Choice) -> None:
    m = build_block(layer, c, n_domains=2).eval()
    x = torch.randn(2, layer.in_ch, layer.in_res, layer.in_res)
    with FlopCounterMode(display=False) as fc:
        y = m(x, 1)
    madds, params = layer.cost(c)
    assert y.shape == (2, layer.out_ch, layer.out_res, layer.out_res)
    assert fc.get_total_flops() == 2 * 2 * madds, (layer.name, str(c))
    assert sum(p.numel() for p in m.parameters()) == params, (layer.name, str(c))


@pytest.mark.parametrize("block", BLOCKS)
def test_every_block_matches_analytic_cost(block):
    layers = [l for l in SPACE.layers if l.name in BLOCK_LAYERS and block in {str(c) for c in l.choices()}]
    assert layers, block
    for layer in layers:
        _check_cost(layer, Choice.parse(block))


@pytest.mark.parametrize("layer", SPACE.layers, ids=[l.name for l in SPACE.layers])
def test_every_layer_builds_every_choice(layer):
    choices = [c for c in layer.choices() if not c.is_zero]
    for c in choices:
        m = build_block(layer, c, n_domains=2).eval()
        with torch.no_grad():
            y = m(torch.randn(2, layer.in_ch, layer.in_res, layer.in_res), 0)
        assert y.shape == (2, layer.out_ch, layer.out_res, layer.out_res), (layer.name, str(c))
        assert sum(p.numel() for p in m.parameters()) == layer.cost(c)[1], (layer.name, str(c))
    _check_cost(layer, max(choices, key=lambda c: layer.cost(c)[0]))


def test_head_cost_matches(space):
    head = Head(space, 1).eval()
    x = torch.randn(1, space.final_width, space.final_res, space.final_res)
    with FlopCounterMode(display=False) as fc:
        head(x, 0)
    madds, params = space.head_cost()
    assert fc.get_total_flops() == 2 * madds
    assert sum(p.numel() for p in head.parameters()) == params


def test_zero_has_no_module(space):
    layer = next(l for l in space.layers if l.allow_zero)
    with pytest.raises(ValueError, match="identity"):
        build_block(layer, Choice("zero"), 1)


def test_per_domain_bn_statistics_are_separate():
    bn = DomainBatchNorm2d(4, n_domains=2).train()
    bn(torch.randn(8, 4, 3, 3) + 5.0, 0)
    assert torch.all(bn.running_mean[0] > 0.3) and torch.all(bn.running_mean[1] == 0)
    shared = DomainBatchNorm2d(4, n_domains=2, bn_mode="shared").train()
    shared(torch.randn(8, 4, 3, 3) + 5.0, 1)
    assert shared.running_mean.shape == (1, 4) and torch.all(shared.running_mean[0] > 0.3)
