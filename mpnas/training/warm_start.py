"""Warm-start a merged model from the search's supernet (issue 11's recipe study).

The supernet keeps one weight per layer at the widest shape and slices it for narrower choices (TuNAS style), so each
merged node takes the slice its choice used during the search: the kernel's depthwise weight, the first `hidden`
channels of expand/depthwise/SE/project, the layer's BN affine prefix. The head and each domain's classifier copy
over whole. BN running statistics stay fresh: the search's batch norms are stateless (batch statistics only).
In `independent` searches each domain has its own supernet, and a node takes the weights of its domain's net.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from mpnas.models.blocks import ConvBnAct, DomainBatchNorm2d, Head, InvertedBottleneck
from mpnas.models.multipath import MultiPathNet
from mpnas.nas.checkpoint import load_checkpoint

CHECKPOINT = "checkpoint.pt"


def _copy(dst: torch.Tensor, src: torch.Tensor, name: str) -> None:
    if dst.shape != src.shape:
        raise ValueError(f"warm start: {name} has shape {tuple(src.shape)} in the supernet slice but "
                         f"{tuple(dst.shape)} in the model; was the search run with another space?")
    dst.copy_(src)


def _bn(dst: DomainBatchNorm2d, weight: torch.Tensor, bias: torch.Tensor, name: str) -> None:
    c = dst.weight.shape[-1]
    _copy(dst.weight, weight[:c].expand_as(dst.weight), f"{name}.weight")  # per_domain_affine: every row alike
    _copy(dst.bias, bias[:c].expand_as(dst.bias), f"{name}.bias")


def _stem(node: ConvBnAct, sn: dict[str, torch.Tensor], p: str, kernel: int) -> None:
    _copy(node.conv.weight, sn[f"{p}.weights.k{kernel}"], f"{p}.weights.k{kernel}")
    _bn(node.bn, sn[f"{p}.bn.weight"], sn[f"{p}.bn.bias"], f"{p}.bn")


def _bottleneck(node: InvertedBottleneck, sn: dict[str, torch.Tensor], p: str, kernel: int) -> None:
    hid = node.depthwise.conv.weight.shape[0]
    if node.expand is not None:
        _copy(node.expand.conv.weight, sn[f"{p}.expand"][:hid], f"{p}.expand")
        _bn(node.expand.bn, sn[f"{p}.expand_bn.weight"], sn[f"{p}.expand_bn.bias"], f"{p}.expand_bn")
    _copy(node.depthwise.conv.weight, sn[f"{p}.dw.k{kernel}"][:hid], f"{p}.dw.k{kernel}")
    _bn(node.depthwise.bn, sn[f"{p}.dw_bn.weight"], sn[f"{p}.dw_bn.bias"], f"{p}.dw_bn")
    if node.se is not None:
        s = node.se.reduce.weight.shape[0]
        _copy(node.se.reduce.weight, sn[f"{p}.se_reduce"][:s, :hid], f"{p}.se_reduce")
        _copy(node.se.reduce.bias, sn[f"{p}.se_reduce_b"][:s], f"{p}.se_reduce_b")
        _copy(node.se.expand.weight, sn[f"{p}.se_expand"][:hid, :s], f"{p}.se_expand")
        _copy(node.se.expand.bias, sn[f"{p}.se_expand_b"][:hid], f"{p}.se_expand_b")
    _copy(node.project.conv.weight, sn[f"{p}.project"][:, :hid], f"{p}.project")
    _bn(node.project.bn, sn[f"{p}.project_bn.weight"], sn[f"{p}.project_bn.bias"], f"{p}.project_bn")


def _head(head: Head, sn: dict[str, torch.Tensor], p: str) -> None:
    _copy(head.first.conv.weight, sn[f"{p}.head.first"], f"{p}.head.first")
    _bn(head.first.bn, sn[f"{p}.head.first_bn.weight"], sn[f"{p}.head.first_bn.bias"], f"{p}.head.first_bn")
    for j, lin in enumerate(head.rest):
        _copy(lin.weight, sn[f"{p}.head.rest.{j}.weight"], f"{p}.head.rest.{j}.weight")
        _copy(lin.bias, sn[f"{p}.head.rest.{j}.bias"], f"{p}.head.rest.{j}.bias")


def load_supernet_state(search: str | Path, data_hash: str | None = None) -> dict:
    """The search checkpoint (a search --out directory or its checkpoint.pt), read without pickle; with `data_hash`,
    a search of other data is refused."""
    path = Path(search)
    path = path / CHECKPOINT if path.is_dir() else path
    if not path.is_file():
        raise FileNotFoundError(f"train.warm_start: {path} does not exist; give a search --out directory (it holds "
                                f"{CHECKPOINT}) or the checkpoint file itself")
    state = load_checkpoint(path)
    if data_hash is not None and state.get("data_hash") != data_hash:
        raise ValueError(f"train.warm_start: {path} searched data with content hash {str(state.get('data_hash'))[:12]}, "
                         f"but this training's data has {data_hash[:12]}; warm-start from a search of the same data")
    if "nets" not in state or "classifiers" not in state:
        raise ValueError(f"train.warm_start: {path} holds no supernet weights (a 'fixed' search trains none); "
                         f"warm-start from a multi_path, multi_head or independent search")
    return state


@torch.no_grad()
def warm_start(model: MultiPathNet, state: dict) -> None:
    """Copy the supernet's weights into `model` (see the module docstring), in place."""
    searched = list(state["domains"])
    missing = [d for d in model.domains if d not in searched]
    if missing:
        raise ValueError(f"train.warm_start: the search covered {', '.join(searched)} but not {', '.join(missing)}")
    nets, classifiers = state["nets"], state["classifiers"]
    independent = state.get("mode") == "independent"
    net_of = {d: (searched.index(d) if independent else 0) for d in model.domains}
    users = model.node_users()
    for key, node in model.nodes.items():
        layer_index, choice = model.node_specs[key]
        p = f"{net_of[users[key][0]]}.layers.{layer_index}"
        if isinstance(node, InvertedBottleneck):
            _bottleneck(node, nets, p, choice.kernel)
        else:
            _stem(node, nets, p, choice.kernel)
    for key, head in model.heads.items():
        domain = key if key in net_of else model.domains[0]  # the shared head (share_nodes) reads net 0
        _head(head, nets, str(net_of[domain]))
    for d in model.domains:
        linear = model.classifiers[d][1]
        assert isinstance(linear, nn.Linear)
        i = searched.index(d)
        _copy(linear.weight, classifiers[f"{i}.weight"], f"classifiers.{i}.weight ({d})")
        _copy(linear.bias, classifiers[f"{i}.bias"], f"classifiers.{i}.bias ({d})")
