"""The weight-sharing supernet of the search (TuNAS-style), executable for many (domain, path) units at once.

What is shared, per searchable layer (and why):

* **1x1 expand and 1x1 project convs** are built once at the layer's *maximum* expanded width and shared by every
  kernel size, SE option and expansion: an expansion `e` uses the first `hidden_ch(e)` channels (prefix slicing, as
  TuNAS's channel masks). Sharing across expansions keeps the supernet small and lets every sampled path train the
  channels it has in common with the others; expansion 1 has no expand conv (as the fixed block) and feeds the input
  straight into the first `in_ch` depthwise channels.
* **One depthwise kernel per kernel size** (sliced to the expanded width): different spatial extents do not share
  weights (TuNAS builds one branch per kernel).
* **BN affine parameters** (expand, depthwise, project) one set per layer, sliced like the conv they follow; the
  depthwise BN is shared by the kernel sizes. BN is *stateless* during search (batch statistics, no running stats)
  because sampled widths change every step.
* **Squeeze-excite**: one reduce/expand pair per layer at the maximum widths, sliced to `(se_ch, hidden_ch)`, shared by
  the kernel sizes. `se=False` is an identity.
* **zero** is an identity (it is only offered where stride and width do not change).
* The **stem conv** keeps one weight per kernel size and one BN; the **head convs** are shared by all paths.

For a given choice a layer computes exactly what `mpnas.models.blocks.build_block` computes in training mode (batch
statistics) with the sliced weights copied in (tests/nas/test_supernet.py checks this).

Grouped execution: `forward_units` runs a list of units (each a batch segment plus a path). At every layer the units
that chose the same op run as one call on their concatenated batch; BN still normalises each unit's segment with its
own statistics (`grouped_batch_norm`), so statistics of different domains never mix. Fewer, larger kernels are much
faster on CPUs and GPUs than one small call per domain.

Bucketed shapes (`bucket=True`, search.bucket_shapes): the number of units that pick an op changes every step, so
grouped calls would see ever new batch sizes, and cuDNN (and any shape-keyed cache) plans each new one. With buckets a
call on g segments is padded with zero segments up to the next size of `bucket_ladder` (powers of two, and the unit
count), so each op runs on a few fixed shapes. Pads are whole segments: BN normalises them apart, their outputs are
sliced off and get no gradient, so the real rows compute what they compute unpadded (tests/nas/test_bucketing.py).

Op warm-up (TuNAS): a layer may run `MIX` instead of a sampled op, the mean-field average of its candidates: the
largest expansion (TuNAS's filter warm-up), the mean over depthwise kernel sizes, the mean of SE on/off and, where
`zero` is allowed, the mean of the block and the identity (x + f(x)/2). This costs about one large block, not the
37 blocks of an exact average over all ops, and trains every weight of the layer.
"""

from __future__ import annotations

from typing import Sequence, Union

import torch
import torch.nn.functional as F
from torch import nn

from mpnas.models import blocks as model_blocks
from mpnas.models.blocks import BN_EPS
from mpnas.space import Choice, LayerSpec, SearchSpace

MIX = "mix"  # op warm-up marker: the layer outputs the average of its candidate ops
Op = Union[Choice, str]
ZERO = Choice("zero")


def grouped_batch_norm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, groups: int) -> torch.Tensor:
    """Stateless BN of `groups` equal batch segments of x, each with its own batch statistics.

    Channels-last input: every batch segment is itself a contiguous NHWC tensor, so each is normalised by its own
    native call and the results concatenated (one copy). NCHW input: the segments are folded into channels
    ((G*B, C) -> (B, G*C)) so one native call normalises them all.
    """
    if groups == 1:
        return F.batch_norm(x, None, None, weight, bias, True, 0.0, BN_EPS)
    n, c, h, w = x.shape
    if n % groups:
        raise ValueError(f"batch of {n} cannot be split into {groups} equal segments")
    if not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
        return torch.cat([F.batch_norm(part, None, None, weight, bias, True, 0.0, BN_EPS)
                          for part in x.chunk(groups)])
    s = n // groups
    xt = x.view(groups, s, c, h, w).transpose(0, 1).reshape(s, groups * c, h, w)
    y = F.batch_norm(xt, None, None, weight.repeat(groups), bias.repeat(groups), True, 0.0, BN_EPS)
    return y.view(s, groups, c, h, w).transpose(0, 1).reshape(n, c, h, w)


def bucket_ladder(n_units: int) -> list[int]:
    """Segment counts a grouped call is padded to: the powers of two below n_units, and n_units itself."""
    ladder, b = [], 1
    while b < n_units:
        ladder.append(b)
        b *= 2
    return ladder + [n_units]


def bucket_of(groups: int, n_units: int) -> int:
    """The smallest ladder size holding `groups` segments (at most twice the work, log2(n_units)+1 shapes per op)."""
    return next(b for b in bucket_ladder(n_units) if b >= groups)


def _mean(xs: list[torch.Tensor]) -> torch.Tensor:
    """Mean of equally shaped tensors; unlike stack().mean(0) it keeps their memory format."""
    total = xs[0]
    for x in xs[1:]:
        total = total + x
    return total / len(xs)


def _act(name: str, x: torch.Tensor) -> torch.Tensor:
    return F.relu(x) if name == "relu" else F.hardswish(x)


def _conv_param(*shape: int) -> nn.Parameter:
    w = torch.empty(*shape)
    nn.init.kaiming_normal_(w, mode="fan_out")
    return nn.Parameter(w)


class _Bn(nn.Module):
    """Affine parameters of one stateless BN (sliced by prefix when a narrower width is used)."""

    def __init__(self, channels: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor, groups: int) -> torch.Tensor:
        c = x.shape[1]
        return grouped_batch_norm(x, self.weight[:c], self.bias[:c], groups)


class SuperConv(nn.Module):
    """Searchable full convolution (the stem): one weight per kernel size, one BN."""

    def __init__(self, layer: LayerSpec):
        super().__init__()
        self.layer = layer
        self.weights = nn.ParameterDict({f"k{k}": _conv_param(layer.out_ch, layer.in_ch, k, k)
                                         for k in layer.kernels})
        self.bn = _Bn(layer.out_ch)

    def _branch(self, x: torch.Tensor, k: int, groups: int) -> torch.Tensor:
        y = F.conv2d(x, self.weights[f"k{k}"], None, self.layer.stride, k // 2)
        return _act(self.layer.act, self.bn(y, groups))

    def forward(self, x: torch.Tensor, op: Op, groups: int = 1) -> torch.Tensor:
        if op == MIX:
            return _mean([self._branch(x, k, groups) for k in self.layer.kernels])
        return self._branch(x, op.kernel, groups)


class SuperBottleneck(nn.Module):
    """Searchable inverted bottleneck: expand (shared, sliced) -> depthwise (per kernel) -> SE (sliced) -> project."""

    def __init__(self, layer: LayerSpec):
        super().__init__()
        self.layer = layer
        blocks = [c for c in layer.choices() if not c.is_zero]
        self.max_hid = max(layer.hidden_ch(c) for c in blocks)
        self.expand = _conv_param(self.max_hid, layer.in_ch, 1, 1) if self.max_hid != layer.in_ch else None
        self.expand_bn = _Bn(self.max_hid) if self.expand is not None else None
        self.dw = nn.ParameterDict({f"k{k}": _conv_param(self.max_hid, 1, k, k) for k in layer.kernels})
        self.dw_bn = _Bn(self.max_hid)
        if True in layer.se_options:
            self.max_se = max(layer.se_ch(c) for c in blocks)
            self.se_reduce = _conv_param(self.max_se, self.max_hid, 1, 1)
            self.se_reduce_b = nn.Parameter(torch.zeros(self.max_se))
            self.se_expand = _conv_param(self.max_hid, self.max_se, 1, 1)
            self.se_expand_b = nn.Parameter(torch.zeros(self.max_hid))
        self.project = _conv_param(layer.out_ch, self.max_hid, 1, 1)
        self.project_bn = _Bn(layer.out_ch)
        self.residual = layer.stride == 1 and layer.in_ch == layer.out_ch

    def _expand(self, x: torch.Tensor, hid: int, groups: int) -> torch.Tensor:
        if hid == self.layer.in_ch:
            return x
        return _act(self.layer.act, self.expand_bn(F.conv2d(x, self.expand[:hid]), groups))

    def _depthwise(self, y: torch.Tensor, k: int, groups: int) -> torch.Tensor:
        hid = y.shape[1]
        z = F.conv2d(y, self.dw[f"k{k}"][:hid], None, self.layer.stride, k // 2, 1, hid)
        return _act(self.layer.act, self.dw_bn(z, groups))

    def _se(self, y: torch.Tensor, s: int) -> torch.Tensor:
        hid = y.shape[1]
        g = F.relu(F.conv2d(y.mean((2, 3), keepdim=True), self.se_reduce[:s, :hid], self.se_reduce_b[:s]))
        return y * torch.sigmoid(F.conv2d(g, self.se_expand[:hid, :s], self.se_expand_b[:hid]))

    def _project(self, y: torch.Tensor, groups: int) -> torch.Tensor:
        return self.project_bn(F.conv2d(y, self.project[:, :y.shape[1]]), groups)

    def forward(self, x: torch.Tensor, op: Op, groups: int = 1) -> torch.Tensor:
        if op == MIX:
            return self._mix(x, groups)
        if op.is_zero:
            return x
        y = self._expand(x, self.layer.hidden_ch(op), groups)
        y = self._depthwise(y, op.kernel, groups)
        if op.se:
            y = self._se(y, self.layer.se_ch(op))
        y = self._project(y, groups)
        return x + y if self.residual else y

    def _mix(self, x: torch.Tensor, groups: int) -> torch.Tensor:
        y = self._expand(x, self.max_hid, groups)
        y = _mean([self._depthwise(y, k, groups) for k in self.layer.kernels])
        opts = self.layer.se_options
        if True in opts:
            s = self.max_se
            y = self._se(y, s) if False not in opts else 0.5 * (y + self._se(y, s))
        y = self._project(y, groups)
        if self.layer.allow_zero:
            return x + 0.5 * y
        return x + y if self.residual else y


class SuperHead(nn.Module):
    """Head convs shared by all paths (and domains): 1x1 conv + stateless BN + h-swish, pool, linear + h-swish."""

    def __init__(self, space: SearchSpace):
        super().__init__()
        widths = list(space.head_widths)
        self.first = _conv_param(widths[0], space.final_width, 1, 1)
        self.first_bn = _Bn(widths[0])
        self.rest = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:]))
        for lin in self.rest:
            model_blocks.init_classifier(lin)
        self.out_features = widths[-1]

    def forward(self, x: torch.Tensor, groups: int = 1) -> torch.Tensor:
        x = F.hardswish(self.first_bn(F.conv2d(x, self.first), groups)).mean((2, 3))
        for lin in self.rest:
            x = F.hardswish(lin(x))
        return x


class SuperNet(nn.Module):
    """All searchable layers plus the shared head convs; classifiers live outside (one per domain)."""

    def __init__(self, space: SearchSpace):
        super().__init__()
        self.space = space
        self.layers = nn.ModuleList(SuperConv(l) if l.kind == "conv" else SuperBottleneck(l) for l in space.layers)
        self.head = SuperHead(space)

    def forward(self, x: torch.Tensor, path: Sequence[Op]) -> torch.Tensor:
        """Head features of one batch through one path."""
        return self.forward_units([x], [path], grouped=False)[0]

    def forward_units(self, xs: list[torch.Tensor], paths: list[Sequence[Op]], grouped: bool = True,
                      bucket: bool = False) -> list[torch.Tensor]:
        """Head features of every unit (batch segment xs[i] through paths[i]).

        grouped=True runs each distinct op of a layer once on the concatenated segments of the units that chose it
        (segments of one call must have equal size); grouped=False loops over the units. bucket=True (grouped only)
        pads each call to a bucket_ladder number of segments (module docstring).
        """
        xs = [x.contiguous(memory_format=model_blocks.MEMORY_FORMAT) for x in xs]
        if not grouped:
            out = []
            for x, path in zip(xs, paths):
                for module, op in zip(self.layers, path):
                    x = module(x, op)
                out.append(self.head(x))
            return out
        blocks = _Blocks(xs)
        for li, module in enumerate(self.layers):
            by_op: dict[Op, list[int]] = {}
            for i, path in enumerate(paths):
                by_op.setdefault(path[li], []).append(i)
            new: list[tuple[torch.Tensor, list[int]]] = []
            for op, ids in by_op.items():
                if op == ZERO:
                    new.append((blocks.gather(ids), ids))
                    continue
                g = len(ids)
                pad = bucket_of(g, len(xs)) - g if bucket else 0
                y = module(blocks.gather(ids, pad), op, g + pad)
                new.append((y[:y.shape[0] // (g + pad) * g] if pad else y, ids))
            blocks = _Blocks.from_blocks(new, len(xs))
        all_ids = list(range(len(xs)))
        return list(self.head(blocks.gather(all_ids), len(xs)).chunk(len(xs)))


class _Blocks:
    """Activations of all units, stored as concatenated blocks so unchanged groups are not split and re-joined."""

    def __init__(self, xs: list[torch.Tensor]):
        self.blocks = [(x, [i]) for i, x in enumerate(xs)]
        self.where = {i: (i, 0) for i in range(len(xs))}

    @classmethod
    def from_blocks(cls, blocks: list[tuple[torch.Tensor, list[int]]], n: int) -> "_Blocks":
        self = cls.__new__(cls)
        self.blocks = blocks
        self.where = {u: (b, j) for b, (_, ids) in enumerate(blocks) for j, u in enumerate(ids)}
        return self

    def gather(self, ids: list[int], pad: int = 0) -> torch.Tensor:
        """The segments of `ids` as one batch, followed by `pad` zero segments (in the same memory format)."""
        b0 = self.where[ids[0]][0]
        x, block_ids = self.blocks[b0]
        if block_ids == ids:
            if not pad:
                return x
            pieces = [x]
        else:
            pieces = []
            for u in ids:
                b, j = self.where[u]
                x, block_ids = self.blocks[b]
                s = x.shape[0] // len(block_ids)
                pieces.append(x[j * s:(j + 1) * s])
        if pad:
            first, seg = pieces[0], x.shape[0] // len(block_ids)
            fmt = (torch.channels_last if first.dim() == 4 and not first.is_contiguous()
                   and first.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format)
            pieces.append(torch.empty((pad * seg, *first.shape[1:]), dtype=first.dtype, device=first.device,
                                      memory_format=fmt).zero_())
        return torch.cat(pieces)
