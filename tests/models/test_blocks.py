"""Fixed blocks: analytic FLOPs/params equal torch's counts; per-domain BN keeps separate statistics."""

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from mpnas.config import load_config
from mpnas.models.blocks import DomainBatchNorm2d, Head, build_block
from mpnas.space import Choice, SearchSpace


@pytest.fixture(scope="module")
def space() -> SearchSpace:
    return SearchSpace.from_config(load_config().space, 32)


def _every_choice(space):
    for layer in space.layers[:4]:
        for c in layer.choices():
            if not c.is_zero:
                yield layer, c


def test_every_choice_matches_analytic_cost(space):
    for layer, c in _every_choice(space):
        m = build_block(layer, c, n_domains=2).eval()
        x = torch.randn(2, layer.in_ch, layer.in_res, layer.in_res)
        with FlopCounterMode(display=False) as fc:
            y = m(x, 1)
        madds, params = layer.cost(c)
        assert y.shape == (2, layer.out_ch, layer.out_res, layer.out_res)
        assert fc.get_total_flops() == 2 * 2 * madds, (layer.name, str(c))
        assert sum(p.numel() for p in m.parameters()) == params, (layer.name, str(c))


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
