"""Fixed (non-search) modules for one layer choice, shared by every domain path that picks the same node.

Every module takes `(x, d)` with `d` the domain index (a Python int), so batch-norm can keep per-domain running
statistics in shared nodes: the affine parameters are shared (they are weights), the running mean/variance are not
(mixing the statistics of ten very different domains breaks evaluation; docs/method.md section 7.2 item 5).
`bn_mode="per_domain_affine"` also gives every domain its own affine scale and shift (Bilen and Vedaldi 2017's
"universal parametric families": shared convolutions, per-domain batch-norm), at 2 x channels parameters per domain.
An exported per-domain program fixes `d` as a constant, so no control flow on the domain survives export.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from mpnas.space import Choice, LayerSpec, SearchSpace

BnMode = Literal["per_domain", "per_domain_affine", "shared"]
BN_MODES: tuple[str, ...] = ("per_domain", "per_domain_affine", "shared")
BN_MOMENTUM = 0.1  # high enough for short runs (torchvision's 0.01 leaves running stats far from the data)
BN_EPS = 1e-3
# A batch concatenated across domains (routed execution): ((domain index, rows), ...) in batch order.
Segments = tuple[tuple[int, int], ...]
# Activations (supernet and merged model) run in channels-last (NHWC) memory: oneDNN's depthwise and 1x1 convolutions
# and CPU batch-norm are much faster on it than on NCHW (benchmarks/bench_search.py and bench_train.py measure it,
# setting this to torch.contiguous_format to compare). Parameters keep the default layout, so saved weights and
# exported programs are unaffected.
MEMORY_FORMAT = torch.channels_last


def make_act(name: str) -> nn.Module:
    return nn.ReLU(inplace=True) if name == "relu" else nn.Hardswish(inplace=True)


class DomainBatchNorm2d(nn.Module):
    """BatchNorm with per-domain (or one shared set of) running statistics and shared or per-domain affine parameters.

    Affine parameters are `(channels,)` when shared and `(n_domains, channels)` under `per_domain_affine`."""

    def __init__(self, channels: int, n_domains: int, bn_mode: BnMode = "per_domain"):
        super().__init__()
        if bn_mode not in BN_MODES:
            raise ValueError(f"bn_mode {bn_mode!r}: choose from {', '.join(BN_MODES)}")
        self.per_domain = bn_mode != "shared"
        self.per_domain_affine = bn_mode == "per_domain_affine"
        n_stats = n_domains if self.per_domain else 1
        shape = (n_domains, channels) if self.per_domain_affine else (channels,)
        self.weight = nn.Parameter(torch.ones(shape))
        self.bias = nn.Parameter(torch.zeros(shape))
        self.register_buffer("running_mean", torch.zeros(n_stats, channels))
        self.register_buffer("running_var", torch.ones(n_stats, channels))

    def affine(self, d: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(weight, bias) that domain `d` uses."""
        if self.per_domain_affine:
            return self.weight[d], self.bias[d]
        return self.weight, self.bias

    def folded(self, d: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Eval-mode BN of domain `d` as a per-channel (scale, shift): its own statistics and its own affine."""
        i = d if self.per_domain else 0
        weight, bias = self.affine(d)
        with torch.no_grad():
            scale = weight.float() * torch.rsqrt(self.running_var[i].float() + BN_EPS)
            shift = bias.float() - self.running_mean[i].float() * scale
        return scale, shift

    def forward(self, x: torch.Tensor, d: int | Segments) -> torch.Tensor:
        if not isinstance(d, int):  # routed batch: normalise each domain's rows exactly as a separate call would
            parts = x.split([n for _, n in d])
            return torch.cat([self.forward(part, i) for part, (i, _) in zip(parts, d)])
        i = d if self.per_domain else 0
        weight, bias = self.affine(d)
        return F.batch_norm(x, self.running_mean[i], self.running_var[i], weight, bias,
                            self.training, BN_MOMENTUM, BN_EPS)


class ConvBnAct(nn.Module):
    def __init__(self, cin: int, cout: int, k: int, stride: int, act: str | None, n_domains: int, bn_mode: BnMode,
                 groups: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False)
        self.bn = DomainBatchNorm2d(cout, n_domains, bn_mode)
        self.act = make_act(act) if act else nn.Identity()

    def forward(self, x: torch.Tensor, d: int) -> torch.Tensor:
        return self.act(self.bn(self.conv(x), d))


class SqueezeExcite(nn.Module):
    """GAP -> 1x1 (bias) -> ReLU -> 1x1 (bias) -> sigmoid gate, as in TuNAS's MobileNetV3-like space."""

    def __init__(self, channels: int, hidden: int):
        super().__init__()
        self.reduce = nn.Conv2d(channels, hidden, 1)
        self.expand = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = F.adaptive_avg_pool2d(x, 1)
        return x * torch.sigmoid(self.expand(F.relu(self.reduce(s))))


class InvertedBottleneck(nn.Module):
    """1x1 expand (omitted at expansion 1) -> kxk depthwise -> optional SE -> 1x1 project; residual when shapes allow."""

    def __init__(self, layer: LayerSpec, choice: Choice, n_domains: int, bn_mode: BnMode = "per_domain"):
        super().__init__()
        hid = layer.hidden_ch(choice)
        self.expand = (ConvBnAct(layer.in_ch, hid, 1, 1, layer.act, n_domains, bn_mode)
                       if hid != layer.in_ch else None)
        self.depthwise = ConvBnAct(hid, hid, choice.kernel, layer.stride, layer.act, n_domains, bn_mode, groups=hid)
        self.se = SqueezeExcite(hid, layer.se_ch(choice)) if choice.se else None
        self.project = ConvBnAct(hid, layer.out_ch, 1, 1, None, n_domains, bn_mode)
        self.residual = layer.stride == 1 and layer.in_ch == layer.out_ch

    def forward(self, x: torch.Tensor, d: int) -> torch.Tensor:
        y = self.expand(x, d) if self.expand is not None else x
        y = self.depthwise(y, d)
        if self.se is not None:
            y = self.se(y)
        y = self.project(y, d)
        return x + y if self.residual else y


def build_block(layer: LayerSpec, choice: Choice, n_domains: int, bn_mode: BnMode = "per_domain") -> nn.Module:
    """The fixed module of one non-zero node."""
    layer.validate_choice(choice)
    if choice.is_zero:
        raise ValueError(f"layer {layer.name}: a 'zero' choice has no module (it is an identity)")
    if choice.kind == "conv":
        return ConvBnAct(layer.in_ch, layer.out_ch, choice.kernel, layer.stride, layer.act, n_domains, bn_mode)
    return InvertedBottleneck(layer, choice, n_domains, bn_mode)


class Head(nn.Module):
    """Head convs shared by all domains: 1x1 conv + BN + h-swish, global pool, then 1x1 convs (bias) + h-swish."""

    def __init__(self, space: SearchSpace, n_domains: int, bn_mode: BnMode = "per_domain"):
        super().__init__()
        widths = list(space.head_widths)
        self.first = ConvBnAct(space.final_width, widths[0], 1, 1, "hswish", n_domains, bn_mode)
        self.rest = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:]))
        self.out_features = widths[-1]

    def forward(self, x: torch.Tensor, d: int) -> torch.Tensor:
        x = self.first(x, d).mean((2, 3))
        for lin in self.rest:
            x = F.hardswish(lin(x))
        return x


def init_classifier(linear: nn.Linear) -> None:
    """N(0, 0.01) weights and zero bias for linear layers (head and classifiers), as TuNAS/torchvision MobileNetV3."""
    nn.init.normal_(linear.weight, 0, 0.01)
    nn.init.zeros_(linear.bias)


def init_weights(module: nn.Module) -> None:
    """He-normal convs (fan-out), `init_classifier` linears."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            init_classifier(m)
