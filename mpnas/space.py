"""The search space as data: a spec of searchable layers, the per-domain genotype, and analytic costs.

Split as in TuNAS: this module knows *what* can be chosen (the spec) and *what was* chosen (a genotype); the
supernet (`mpnas.nas.supernet`) and the merged network (`mpnas.models.multipath`) build modules from it.

A layer choice has a readable block string in the spirit of timm's arch strings:

    ir_k5_e6_se   inverted bottleneck, depthwise kernel 5, expansion 6, squeeze-excite on
    ir_k3_e1      kernel 3, expansion 1, no SE
    conv_k3       the stem convolution with kernel 3
    zero          the layer is skipped (identity through its residual)
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Iterable, Literal, Optional

from mpnas.config import SpaceConfig, StageConfig

Kind = Literal["conv", "ir"]
Act = Literal["relu", "hswish"]


def make_divisible(v: float, divisor: int = 8) -> int:
    """Round a channel count to a multiple of `divisor`, never dropping more than 10% (MobileNet convention)."""
    new = max(divisor, int(v + divisor / 2) // divisor * divisor)
    if new < 0.9 * v:
        new += divisor
    return new


# ---------------------------------------------------------------------------------------------------- choices
@dataclass(frozen=True, order=True)
class Choice:
    """One candidate block of one layer. `kind='zero'` skips the layer."""

    kind: Literal["conv", "ir", "zero"]
    kernel: int = 0
    expansion: float = 0.0
    se: bool = False

    @property
    def is_zero(self) -> bool:
        return self.kind == "zero"

    def __str__(self) -> str:
        if self.kind == "zero":
            return "zero"
        if self.kind == "conv":
            return f"conv_k{self.kernel}"
        e = int(self.expansion) if float(self.expansion).is_integer() else self.expansion
        return f"ir_k{self.kernel}_e{e}" + ("_se" if self.se else "")

    @classmethod
    def parse(cls, text: str) -> "Choice":
        text = text.strip()
        if text == "zero":
            return cls("zero")
        m = re.fullmatch(r"conv_k(\d+)", text)
        if m:
            return cls("conv", int(m.group(1)))
        m = re.fullmatch(r"ir_k(\d+)_e(\d+(?:\.\d+)?)(_se)?", text)
        if m:
            return cls("ir", int(m.group(1)), float(m.group(2)), bool(m.group(3)))
        raise ValueError(f"unknown block string {text!r}: expected 'zero', 'conv_k<k>' or 'ir_k<k>_e<e>[_se]'")


# ---------------------------------------------------------------------------------------------------- layers
@dataclass(frozen=True)
class LayerSpec:
    """One searchable layer. Decisions are hierarchical: `op` (block vs zero) first, then kernel/expansion/SE."""

    index: int
    name: str
    kind: Kind
    in_ch: int
    out_ch: int
    stride: int
    act: Act
    in_res: int
    kernels: tuple[int, ...]
    expansions: tuple[float, ...] = ()
    se_options: tuple[bool, ...] = (False,)
    allow_zero: bool = False
    se_ratio: float = 0.25

    @property
    def out_res(self) -> int:
        return -(-self.in_res // self.stride)

    def choices(self) -> list[Choice]:
        """Every distinct choice, zero first (if allowed); the order is stable and used for indices."""
        out = [Choice("zero")] if self.allow_zero else []
        if self.kind == "conv":
            out += [Choice("conv", k) for k in self.kernels]
        else:
            out += [Choice("ir", k, float(e), s) for k in self.kernels for e in self.expansions
                    for s in self.se_options]
        return out

    def decisions(self) -> dict[str, tuple]:
        """The categorical decisions a controller holds for this layer, in a fixed order."""
        d: dict[str, tuple] = {}
        if self.allow_zero:
            d["op"] = ("zero", "block")
        d["kernel"] = tuple(self.kernels)
        if self.kind == "ir":
            d["expansion"] = tuple(float(e) for e in self.expansions)
            d["se"] = tuple(self.se_options)
        return d

    def choice_from_decisions(self, values: dict[str, object]) -> Choice:
        if self.allow_zero and values.get("op") == "zero":
            return Choice("zero")
        if self.kind == "conv":
            return Choice("conv", int(values["kernel"]))
        return Choice("ir", int(values["kernel"]), float(values["expansion"]), bool(values["se"]))

    def validate_choice(self, c: Choice) -> None:
        if c.is_zero:
            if not self.allow_zero:
                raise ValueError(f"layer {self.name}: 'zero' is not allowed here (stride or width changes, "
                                 f"or the spec disallows skipping)")
            return
        if c.kind != self.kind:
            raise ValueError(f"layer {self.name}: expected a '{self.kind}' block, got {c}")
        if c.kernel not in self.kernels:
            raise ValueError(f"layer {self.name}: kernel {c.kernel} not in {list(self.kernels)}")
        if self.kind == "ir":
            if float(c.expansion) not in [float(e) for e in self.expansions]:
                raise ValueError(f"layer {self.name}: expansion {c.expansion} not in {list(self.expansions)}")
            if c.se not in self.se_options:
                raise ValueError(f"layer {self.name}: se={c.se} not offered")

    def hidden_ch(self, c: Choice) -> int:
        """Expanded width of an inverted bottleneck (relative to the input, as TuNAS)."""
        return make_divisible(self.in_ch * c.expansion) if c.expansion != 1 else self.in_ch

    def se_ch(self, c: Choice) -> int:
        return make_divisible(self.hidden_ch(c) * self.se_ratio)

    # ---- analytic cost (multiply-adds and parameters of convolutions/linear layers; BN counted in params)
    def cost(self, c: Choice) -> tuple[int, int]:
        """(MAdds, params) of this layer with choice `c`. BN, activations and pooling cost no MAdds here."""
        if c.is_zero:
            return 0, 0
        hw_out = self.out_res * self.out_res
        if c.kind == "conv":
            madds = hw_out * c.kernel * c.kernel * self.in_ch * self.out_ch
            params = c.kernel * c.kernel * self.in_ch * self.out_ch + 2 * self.out_ch
            return madds, params
        hid = self.hidden_ch(c)
        hw_in = self.in_res * self.in_res
        madds = params = 0
        if hid != self.in_ch:  # expand 1x1 (skipped when expansion is 1, as in MobileNetV3)
            madds += hw_in * self.in_ch * hid
            params += self.in_ch * hid + 2 * hid
        madds += hw_out * c.kernel * c.kernel * hid
        params += c.kernel * c.kernel * hid + 2 * hid
        if c.se:
            s = self.se_ch(c)
            madds += 2 * hid * s
            params += hid * s + s + s * hid + hid
        madds += hw_out * hid * self.out_ch
        params += hid * self.out_ch + 2 * self.out_ch
        return madds, params


# ---------------------------------------------------------------------------------------------------- space
def _stages(*rows: tuple[int, int, int, str]) -> list[StageConfig]:
    """A preset's stages from (width, layers, stride, act) rows: one line per stage keeps the table readable."""
    return [StageConfig(width=w, layers=n, stride=s, act=a) for w, n, s, a in rows]


_PRESETS: dict[str, dict] = {
    # Scaled for 32-72 px inputs: total stride 16 (32 px -> 2x2 before the head), narrow widths for CPUs.
    "mpnas_small": dict(
        input_size=32, stem_width=16, stem_stride=2, stem_kernels=[3],
        stages=_stages((16, 2, 1, "relu"), (24, 3, 2, "relu"), (40, 3, 2, "hswish"), (80, 3, 2, "hswish"),
                       (96, 2, 1, "hswish")),
        head_widths=[384, 768]),
    # TuNAS mobilenet_v3_like_search at 224 px with base widths (docs/method.md section 2.2), widths not searched.
    "tunas_mnv3_like_224": dict(
        input_size=224, stem_width=16, stem_stride=2, stem_kernels=[3, 5],
        stages=_stages((16, 4, 2, "relu"), (32, 4, 2, "relu"), (64, 4, 2, "hswish"), (128, 4, 1, "hswish"),
                       (256, 4, 2, "hswish")),
        head_widths=[512, 1024]),
}


@dataclass(frozen=True)
class SearchSpace:
    """A resolved search space: stem conv layer, inverted-bottleneck layers, fixed head widths."""

    layers: tuple[LayerSpec, ...]
    head_widths: tuple[int, ...]
    input_size: int
    dropout: float = 0.0

    @classmethod
    def from_config(cls, cfg: SpaceConfig, input_size: Optional[int] = None) -> "SearchSpace":
        """Resolve a SpaceConfig (preset + explicit fields). Errors name the offending `space.` field."""
        base = dict(_PRESETS[cfg.preset]) if cfg.preset else {}
        for key in ("input_size", "stem_width", "stem_stride", "stem_kernels", "stages", "head_widths"):
            v = getattr(cfg, key)
            if v is not None:
                base[key] = v
        missing = [k for k in ("stem_width", "stem_stride", "stem_kernels", "stages", "head_widths") if k not in base]
        if missing:
            raise ValueError(f"space: without a preset these fields are required: {', '.join('space.' + m for m in missing)}")
        res = input_size or cfg.input_size or base.get("input_size")
        if res is None:
            raise ValueError("space.input_size: not set and no data.crop given")
        layers: list[LayerSpec] = []
        stem_w = base["stem_width"]
        layers.append(LayerSpec(0, "stem", "conv", 3, stem_w, base["stem_stride"], "hswish", res,
                                tuple(base["stem_kernels"])))
        cur_ch, cur_res = stem_w, layers[0].out_res
        for si, st in enumerate(base["stages"]):
            st = st if isinstance(st, StageConfig) else StageConfig.model_validate(st)
            for li in range(st.layers):
                stride = st.stride if li == 0 else 1
                changes = stride != 1 or cur_ch != st.width
                layer = LayerSpec(len(layers), f"s{si + 1}.l{li}", "ir", cur_ch, st.width, stride, st.act, cur_res,
                                  tuple(cfg.kernels), tuple(float(e) for e in cfg.expansions), tuple(cfg.se),
                                  allow_zero=st.allow_skip and not changes, se_ratio=cfg.se_ratio)
                layers.append(layer)
                cur_ch, cur_res = st.width, layer.out_res
        if not base["head_widths"]:
            raise ValueError("space.head_widths: needs at least one head width")
        return cls(tuple(layers), tuple(base["head_widths"]), res, cfg.dropout)

    # ---- structure
    @property
    def final_width(self) -> int:
        return self.layers[-1].out_ch

    @property
    def final_res(self) -> int:
        return self.layers[-1].out_res

    def __len__(self) -> int:
        return len(self.layers)

    def head_cost(self, num_classes: Optional[int] = None) -> tuple[int, int]:
        """(MAdds, params) of the head convs (first with BN at the final resolution, then after pooling) and,
        if `num_classes` is given, of one classifier."""
        h1, rest = self.head_widths[0], self.head_widths[1:]
        hw = self.final_res ** 2
        madds = hw * self.final_width * h1
        params = self.final_width * h1 + 2 * h1
        prev = h1
        for w in rest:
            madds += prev * w
            params += prev * w + w
            prev = w
        if num_classes is not None:
            madds += prev * num_classes
            params += prev * num_classes + num_classes
        return madds, params

    def path_cost(self, genotype: "Genotype", num_classes: Optional[int] = None) -> tuple[int, int]:
        """(MAdds, params) of one end-to-end path including the head (and its classifier if classes are given)."""
        genotype.validate(self)
        m, p = self.head_cost(num_classes)
        for layer, c in zip(self.layers, genotype.choices):
            lm, lp = layer.cost(c)
            m, p = m + lm, p + lp
        return m, p

    def path_flops(self, genotype: "Genotype", num_classes: Optional[int] = None) -> int:
        """FLOPs of a path: 2 per multiply-add (the convention of torch's FlopCounterMode)."""
        return 2 * self.path_cost(genotype, num_classes)[0]

    def describe(self) -> str:
        rows = [f"input {self.input_size}px, {len(self.layers)} searchable layers, head {list(self.head_widths)}"]
        for layer in self.layers:
            n = len(layer.choices())
            rows.append(f"  {layer.name:8s} {layer.kind:4s} {layer.in_ch:4d}->{layer.out_ch:<4d} s{layer.stride} "
                        f"{layer.in_res:3d}px {layer.act:6s} {n:3d} choices{' (zero ok)' if layer.allow_zero else ''}")
        return "\n".join(rows)

    # ---- named genotypes
    def reference_genotype(self) -> "Genotype":
        """A MobileNetV3-like fixed path: k3 early, k5 later, expansion 4 (6 in the wider stages), SE in hswish stages.

        Used as the single-path multi-head baseline and, by default, as the cost target C0 of the search reward.
        Choices are snapped to what the space offers.
        """
        out = []
        for layer in self.layers:
            if layer.kind == "conv":
                out.append(Choice("conv", layer.kernels[0]))
                continue
            k = 5 if layer.act == "hswish" else 3
            k = min(layer.kernels, key=lambda v: (abs(v - k), v))
            e_target = 6.0 if layer.out_ch >= 64 else 4.0
            e = min(layer.expansions, key=lambda v: (abs(v - e_target), v))
            se = (layer.act == "hswish") and (True in layer.se_options) or (False not in layer.se_options)
            out.append(Choice("ir", k, float(e), se))
        return Genotype(tuple(out))

    def genotype_by_name(self, name: str) -> "Genotype":
        if name in ("mobilenet_v3_like", "reference"):
            return self.reference_genotype()
        raise ValueError(f"unknown genotype name {name!r}: use 'mobilenet_v3_like' or a path to a genotype JSON file")


# ---------------------------------------------------------------------------------------------------- genotype
@dataclass(frozen=True)
class Genotype:
    """One domain's path: a choice per searchable layer, in layer order."""

    choices: tuple[Choice, ...]

    def __iter__(self) -> Iterable[Choice]:
        return iter(self.choices)

    def __len__(self) -> int:
        return len(self.choices)

    def to_strings(self) -> list[str]:
        return [str(c) for c in self.choices]

    def __str__(self) -> str:
        return " ".join(self.to_strings())

    @classmethod
    def from_strings(cls, items: Iterable[str]) -> "Genotype":
        return cls(tuple(Choice.parse(s) for s in items))

    def validate(self, space: SearchSpace) -> "Genotype":
        if len(self.choices) != len(space.layers):
            raise ValueError(f"genotype has {len(self.choices)} choices but the space has {len(space.layers)} layers")
        for layer, c in zip(space.layers, self.choices):
            layer.validate_choice(c)
        return self

    def nodes(self, include_zero: bool = False) -> set[tuple[int, str]]:
        """Node identities (layer index, block string); widths are fixed so these identify tensors exactly."""
        return {(i, str(c)) for i, c in enumerate(self.choices) if include_zero or not c.is_zero}

    def depth(self) -> int:
        return sum(not c.is_zero for c in self.choices)


def jaccard(a: Genotype, b: Genotype, include_zero: bool = False) -> float:
    na, nb = a.nodes(include_zero), b.nodes(include_zero)
    union = na | nb
    return len(na & nb) / len(union) if union else 1.0


# ---------------------------------------------------------------------------------------------------- files
def genotypes_to_json(genotypes: dict[str, Genotype], space: Optional[SearchSpace] = None, **meta) -> str:
    """Serialise domain -> genotype as readable JSON (block strings), with optional metadata."""
    doc: dict = {"format": "mpnas.genotypes/1", "genotypes": {d: g.to_strings() for d, g in genotypes.items()}}
    if space is not None:
        doc["layers"] = [layer.name for layer in space.layers]
    if meta:
        doc["meta"] = meta
    return json.dumps(doc, indent=2)


def genotypes_from_json(text: str, source: str = "<genotypes>") -> dict[str, Genotype]:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{source}: not valid JSON ({exc})") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("genotypes"), dict):
        raise ValueError(f"{source}: expected an object with a 'genotypes' mapping of domain -> list of block strings")
    try:
        return genotypes_from_strings(doc["genotypes"])
    except ValueError as exc:
        raise ValueError(f"{source}: {exc}") from exc


def genotypes_from_strings(mapping: dict[str, list[str]]) -> dict[str, Genotype]:
    """domain -> block strings to domain -> Genotype; an error names `genotypes.<domain>`."""
    out = {}
    for d, items in mapping.items():
        try:
            out[d] = Genotype.from_strings(items)
        except ValueError as exc:
            raise ValueError(f"genotypes.{d}: {exc}") from exc
    return out
