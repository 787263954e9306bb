"""Per-domain export programs: one domain's path with its batch-norm statistics frozen to constants.

Why not export `model.domain_module(d)` directly: `DomainBatchNorm2d` indexes its running statistics with the domain
(`running_mean[d]`), which backends cannot fold (XNNPACK's batch-norm fusion refuses a computed parameter). Why not
fold batch-norm into the convolution either: with per-domain statistics the folded weights of a *shared* node differ
per domain, so a multi-method .pte would store every shared convolution once per domain. Instead each batch-norm
becomes a per-channel affine `x * scale_d + shift_d` (two small per-domain vectors) after the untouched shared
convolution, and the convolution weights stay byte-identical across methods, which lets ExecuTorch store them once.
"""

from __future__ import annotations

import copy
import re

import torch
from torch import nn

from mpnas.models.blocks import DomainBatchNorm2d
from mpnas.models.multipath import MultiPathNet


class FrozenAffine(nn.Module):
    """Eval-mode batch-norm of one domain as a per-channel scale and shift (same maths, no domain index)."""

    def __init__(self, bn: DomainBatchNorm2d, domain_index: int):
        super().__init__()
        scale, shift = bn.folded(domain_index)  # this domain's statistics and (under per_domain_affine) its affine
        self.register_buffer("scale", scale.view(1, -1, 1, 1).clone())
        self.register_buffer("shift", shift.view(1, -1, 1, 1).clone())

    def forward(self, x: torch.Tensor, d: object = None) -> torch.Tensor:
        return x * self.scale + self.shift


def domain_program(model: MultiPathNet, domain: str) -> nn.Module:
    """An eval-mode module `forward(x) -> logits` for one domain with no control flow on the domain.

    Works on a deep copy, so the caller's model is untouched; weights other than batch-norm keep their values
    (and names), so equal tensors across domains remain equal in every exported program."""
    index = model.domains.index(domain)
    copy_ = copy.deepcopy(model).eval()
    for parent in list(copy_.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, DomainBatchNorm2d):
                setattr(parent, name, FrozenAffine(child, index))
    return copy_.domain_module(domain).eval()


def entry_names(domains: list[str]) -> dict[str, str]:
    """Domain -> a unique Python/C identifier (`forward_<entry>` is its ExecuTorch method, `<entry>.onnx` its graph)."""
    out: dict[str, str] = {}
    for d in domains:
        base = re.sub(r"\W", "_", d, flags=re.ASCII) or "domain"
        if base[0].isdigit():
            base = "d_" + base
        name, k = base, 2
        while name in out.values():
            name, k = f"{base}_{k}", k + 1
        out[d] = name
    return out
