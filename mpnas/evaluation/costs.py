"""Measured cost of a merged model: FLOPs with torch's FlopCounterMode (2 per multiply-add; BN, activations and
pooling are not counted, matching `SearchSpace.path_flops`), unique parameters, and CPU latency at batch 1.

Three whole-model FLOPs figures, from most to least optimistic about sharing:
- `union_flops`: every distinct node once. Not achievable: a node shared by two domains still sees two different
  inputs unless everything before it is shared too.
- `prefix_tree_flops`: classifying one image in every domain, where a node's computation is reused only when the
  whole prefix up to and including it is shared *and* produces the same activations, i.e. with shared batch-norm (the
  honest figure; the targets use it). With per-domain batch-norm only the stem's convolution is reused.
- sum of the paths: no reuse at all (a bundle's cost).
"""

from __future__ import annotations


import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from mpnas.models.multipath import MultiPathNet
from mpnas.space import Choice
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


def prefix_tree_flops(model: MultiPathNet, flops_paths: dict[str, int]) -> int:
    """FLOPs of one image per domain with computation reused only along shared prefixes (a trie over the paths).

    Reuse needs identical activations: with per-domain batch-norm statistics or affine parameters (bn_mode
    per_domain / per_domain_affine) a shared node's output differs per domain, so only the stem's convolution is
    reused; the trie applies in full only to bn_mode shared.

    Starts from the measured per-path FLOPs and subtracts, for every trie node (a distinct prefix ending in layer l)
    used by n domains, (n - 1) x that layer's analytic FLOPs; likewise for the head after a shared full path. A bundle
    (share_nodes=False) reuses nothing.
    """
    total = sum(flops_paths[d] for d in model.domains)
    if not model.share_nodes:
        return total
    # With per-domain batch-norm (statistics or affine), a shared node's *output* differs per domain, so only the
    # first convolution (the stem's, before its batch-norm) can be computed once; deeper reuse needs bn_mode shared.
    reusable_layers = model.space.layers if model.bn_mode == "shared" else model.space.layers[:1]
    groups: dict[tuple[str, ...], list[str]] = {(): list(model.domains)}
    for li, layer in enumerate(reusable_layers):
        deeper: dict[tuple[str, ...], list[str]] = {}
        for prefix, members in groups.items():
            for d in members:
                deeper.setdefault(prefix + (str(model.genotypes[d].choices[li]),), []).append(d)
        for prefix, members in deeper.items():
            total -= (len(members) - 1) * 2 * layer.cost(Choice.parse(prefix[-1]))[0]
        groups = deeper
    if len(reusable_layers) < len(model.space.layers):
        return total
    head_flops = 2 * model.space.head_cost()[0]
    for members in groups.values():
        per_head: dict[str, int] = {}
        for d in members:
            per_head[model.head_key(d)] = per_head.get(model.head_key(d), 0) + 1
        total -= sum(n - 1 for n in per_head.values()) * head_flops
    return total


@torch.inference_mode()
def cpu_latency_ms(module: nn.Module, input_size: int, repeats: int, warmup: int) -> float:
    """Median wall time of one batch-1 forward on the CPU (the module must already be on the CPU, in eval mode)."""
    x = torch.randn(1, 3, input_size, input_size, generator=torch.Generator().manual_seed(0))
    return median_latency_ms(lambda: module(x), repeats, warmup)
