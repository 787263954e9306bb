"""Grow a trained merged model by one domain: the old tensors are copied unchanged, only the new domain gets new ones.

The new domain is appended last, so every old domain keeps its index, its BN rows and its modules: its forward pass
computes exactly what it computed in the parent model. What is new (and the only thing add-domain trains):

* the nodes of the new path that no old domain has (initialised from the add-domain supernet's weights, sliced);
* the new domain's classifier;
* the new domain's BN row in every reused node and in the shared head: running statistics (from the model's
  defaults, mean 0 / var 1, re-estimated by training) and, under `bn_mode="per_domain_affine"`, its affine scale and
  shift (initialised as the mean of the old domains' rows, so the frozen convolutions start in a familiar range).
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from mpnas.models.blocks import DomainBatchNorm2d
from mpnas.models.multipath import MultiPathNet
from mpnas.nas.supernet import SuperNet
from mpnas.space import Genotype

Trainable = list[tuple[str, nn.Parameter, Optional[int]]]  # (name, parameter, the one row it may change or None)


def grow_model(parent: MultiPathNet, domain: str, genotype: Genotype, num_classes: int,
               supernet: Optional[SuperNet] = None) -> MultiPathNet:
    """`parent` plus `domain` on the path `genotype`; the parent is not modified (its tensors are copied)."""
    if domain in parent.domains:
        raise ValueError(f"domain {domain!r} is already in the model ({', '.join(parent.domains)})")
    genotypes = {**parent.genotypes, domain: genotype}
    classes = {**parent.num_classes, domain: int(num_classes)}
    grown = MultiPathNet(parent.space, genotypes, classes, parent.bn_mode, parent.dropout, parent.share_nodes,
                         parent.space_config)
    grown.meta = dict(parent.meta)
    new = set(grown.nodes) - set(parent.nodes)
    if supernet is not None:
        for key in new:
            layer_index, choice = grown.node_specs[key]
            load_supernet_choice(grown.nodes[key], supernet, layer_index, choice)
    _copy_parent_state(parent, grown)
    _init_new_affine_rows(parent, grown, domain)
    return grown.to(next(parent.parameters()).device)


def _copy_parent_state(parent: MultiPathNet, grown: MultiPathNet) -> None:
    """Every parent tensor into `grown`: same shape -> copied; per-domain BN tensors -> the first n rows."""
    target = grown.state_dict()
    with torch.no_grad():
        for name, value in parent.state_dict().items():
            dst = target[name]
            if dst.shape == value.shape:
                dst.copy_(value)
            elif dst.shape[1:] == value.shape[1:] and dst.shape[0] == value.shape[0] + 1:
                dst[:value.shape[0]].copy_(value)
            else:
                raise ValueError(f"cannot grow {name}: shape {tuple(value.shape)} -> {tuple(dst.shape)}")


def _init_new_affine_rows(parent: MultiPathNet, grown: MultiPathNet, domain: str) -> None:
    if grown.bn_mode != "per_domain_affine":
        return
    n, i = len(parent.domains), grown.index[domain]
    with torch.no_grad():
        for module in _reused_modules(parent, grown):
            for bn in module.modules():
                if isinstance(bn, DomainBatchNorm2d):
                    bn.weight[i].copy_(bn.weight[:n].mean(0))
                    bn.bias[i].copy_(bn.bias[:n].mean(0))


def _reused_modules(parent: MultiPathNet, grown: MultiPathNet) -> list[nn.Module]:
    """The grown model's modules that the parent already had (old nodes and heads)."""
    return [grown.nodes[k] for k in parent.nodes] + [grown.heads[k] for k in parent.heads]


def new_node_ids(parent: MultiPathNet, grown: MultiPathNet) -> list[str]:
    return [k for k in grown.nodes if k not in parent.nodes]


def trainable_parameters(parent: MultiPathNet, grown: MultiPathNet, domain: str) -> Trainable:
    """What add-domain may train: new nodes and classifier whole, plus the new domain's affine rows in reused BN."""
    out: Trainable = []
    for key in new_node_ids(parent, grown):
        out += [(f"nodes.{key}.{n}", p, None) for n, p in grown.nodes[key].named_parameters()]
    out += [(f"classifiers.{domain}.{n}", p, None) for n, p in grown.classifiers[domain].named_parameters()]
    if grown.bn_mode == "per_domain_affine":
        i = grown.index[domain]
        for module in _reused_modules(parent, grown):
            for bn in module.modules():
                if isinstance(bn, DomainBatchNorm2d):
                    out += [("bn.weight", bn.weight, i), ("bn.bias", bn.bias, i)]
    return out


def freeze_all_but(grown: MultiPathNet, trainable: Trainable) -> list[torch.utils.hooks.RemovableHandle]:
    """requires_grad only on `trainable`; a parameter shared row-wise gets a hook that zeroes the other rows' grad."""
    for p in grown.parameters():
        p.requires_grad_(False)
    handles = []
    for _, p, row in trainable:
        p.requires_grad_(True)
        if row is not None:
            mask = torch.zeros_like(p)
            mask[row] = 1.0
            handles.append(p.register_hook(lambda g, m=mask: g * m))
    return handles


def load_supernet_choice(block: nn.Module, supernet: SuperNet, layer_index: int, choice) -> None:
    """Copy the supernet's weights of `choice` at one layer into a fixed block (all BN rows get the same affine)."""
    sd = supernet_choice_state(supernet, layer_index, choice)
    current = block.state_dict()
    with torch.no_grad():
        for name, value in sd.items():
            current[name].copy_(value.expand_as(current[name]) if current[name].ndim > value.ndim else value)


def supernet_choice_state(supernet: SuperNet, layer_index: int, choice) -> dict[str, torch.Tensor]:
    """The sliced supernet tensors a fixed block of `choice` holds (names of mpnas.models.blocks modules)."""
    module, layer = supernet.layers[layer_index], supernet.space.layers[layer_index]
    if choice.kind == "conv":
        return {"conv.weight": module.weights[f"k{choice.kernel}"], "bn.weight": module.bn.weight,
                "bn.bias": module.bn.bias}
    hid, s = layer.hidden_ch(choice), layer.se_ch(choice)
    sd = {}
    if hid != layer.in_ch:
        sd.update({"expand.conv.weight": module.expand[:hid], "expand.bn.weight": module.expand_bn.weight[:hid],
                   "expand.bn.bias": module.expand_bn.bias[:hid]})
    sd.update({"depthwise.conv.weight": module.dw[f"k{choice.kernel}"][:hid],
               "depthwise.bn.weight": module.dw_bn.weight[:hid], "depthwise.bn.bias": module.dw_bn.bias[:hid],
               "project.conv.weight": module.project[:, :hid], "project.bn.weight": module.project_bn.weight,
               "project.bn.bias": module.project_bn.bias})
    if choice.se:
        sd.update({"se.reduce.weight": module.se_reduce[:s, :hid], "se.reduce.bias": module.se_reduce_b[:s],
                   "se.expand.weight": module.se_expand[:hid, :s], "se.expand.bias": module.se_expand_b[:hid]})
    return {k: v.detach() for k, v in sd.items()}


def old_tensors_changed(parent: MultiPathNet, grown: MultiPathNet) -> list[str]:
    """Names of parent tensors (parameters and BN rows of old domains) whose values differ in `grown`."""
    target = grown.state_dict()
    changed = []
    for name, value in parent.state_dict().items():
        dst = target[name][:value.shape[0]] if target[name].shape != value.shape else target[name]
        if not torch.equal(dst.cpu(), value.cpu()):
            changed.append(name)
    return changed
