"""Measured cost of a merged model: FLOPs with torch's FlopCounterMode (2 per multiply-add; BN, activations and
pooling are not counted, matching `SearchSpace.path_flops`), unique parameters, and CPU latency at batch 1."""

from __future__ import annotations


import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from mpnas.models.multipath import MultiPathNet
from mpnas.utils.timing import median_latency_ms


def _count(fn) -> int:
    with FlopCounterMode(display=False) as fc:
        fn()
    return int(fc.get_total_flops())


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.inference_mode()
def path_flops(model: MultiPathNet, domain: str) -> int:
    """FLOPs of one image through a domain's exported path (its nodes, the head, its classifier)."""
    path = model.domain_module(domain).eval()
    x = torch.zeros(1, 3, model.space.input_size, model.space.input_size, device=_device(model))
    return _count(lambda: path(x))


@torch.inference_mode()
def union_flops(model: MultiPathNet) -> int:
    """FLOPs of evaluating every distinct node once, every head once and every classifier once (one image each)."""
    dev = _device(model)
    was_training = model.training
    model.eval()
    total = 0
    for key, (li, _) in model.node_specs.items():
        layer = model.space.layers[li]
        x = torch.zeros(1, layer.in_ch, layer.in_res, layer.in_res, device=dev)
        total += _count(lambda: model.nodes[key](x, 0))
    s = model.space
    for head in model.heads.values():
        x = torch.zeros(1, s.final_width, s.final_res, s.final_res, device=dev)
        total += _count(lambda: head(x, 0))
    for clf in model.classifiers.values():
        total += _count(lambda: clf(torch.zeros(1, s.head_widths[-1], device=dev)))
    model.train(was_training)
    return total


@torch.inference_mode()
def cpu_latency_ms(module: nn.Module, input_size: int, repeats: int, warmup: int) -> float:
    """Median wall time of one batch-1 forward on the CPU (the module must already be on the CPU, in eval mode)."""
    x = torch.randn(1, 3, input_size, input_size, generator=torch.Generator().manual_seed(0))
    return median_latency_ms(lambda: module(x), repeats, warmup)
