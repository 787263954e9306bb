"""Typed settings for every mpnas stage, loaded from YAML and validated before any work starts.

One file holds one `MpnasConfig` (sections: data, space, search, train, evaluate, export). Unknown keys and wrong
types are refused with the file and the dotted field named, so a typo never silently falls back to a default.
Command-line overrides use the same dotted names: ``--set train.steps=3``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, Optional

import yaml
from pydantic import (BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator,
                      model_validator)


class ConfigError(ValueError):
    """A configuration file or override is invalid; the message names the file and the field."""


# Upper bounds on sizes that cannot fit: refused at validation, before anything is allocated, with the reason.
# A step holds batch_size images of every domain (and the reward batch) plus their activations in memory.
MAX_BATCH = 4096
_UPPER_BOUNDS = {
    "batch_size": (MAX_BATCH, f"a step holds batch_size images per domain and their activations in memory; above "
                              f"{MAX_BATCH} it cannot fit in the memory of a typical machine"),
    "size": (512, "prepared images are stored uncompressed (N x size x size x 3 bytes per split) and decoded in "
                  "memory, so above 512 px a split of a few thousand images no longer fits"),
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_ints_and_bounded(cls, v: Any, info: Any) -> Any:
        """`steps: true` must not become 1; batch sizes that cannot fit are refused with the reason."""
        field = cls.model_fields.get(info.field_name)
        if field is not None and field.annotation in (int, Optional[int]):
            if isinstance(v, bool):
                raise ValueError(f"expected an integer, got the boolean {str(v).lower()}")
            bound = _UPPER_BOUNDS.get(info.field_name)
            if bound is not None and isinstance(v, int) and v > bound[0]:
                raise ValueError(f"{v} is above the upper bound {bound[0]}: {bound[1]}")
        return v


def _on_off(v: Any) -> Any:
    """YAML 1.1 reads a bare on/off as a boolean: accept it as the word for the auto|on|off switches."""
    return {True: "on", False: "off"}.get(v, v) if isinstance(v, bool) else v


# An auto|on|off setting (auto: decided by the device); a YAML boolean counts as its word.
Switch = Annotated[Literal["auto", "on", "off"], BeforeValidator(_on_off)]


# --------------------------------------------------------------------------------------------------------- data
class AugmentConfig(_Strict):
    """Training-time augmentation of one domain (evaluation always uses the centre crop)."""

    random_crop: bool = True
    flip: bool = True
    pad: int = Field(0, ge=0, description="reflect-pad before the random crop, in pixels")


# Domains whose labels change under a horizontal flip (digits, glyphs, signs): the flip default is off for them.
NO_FLIP_DOMAINS = ("svhn", "svhn_proc", "gtsrb", "signs", "omniglot", "glyph", "digits8", "mnist")


class SamplingConfig(_Strict):
    """How a training step draws its batches across and inside domains."""

    strategy: Literal["uniform", "proportional", "temperature"] = "uniform"
    temperature: float = Field(2.0, gt=0, description="T in p_d ~ n_d^(1/T) for strategy=temperature")
    class_balanced: bool = False


class DataConfig(_Strict):
    source: Literal["embedded", "decathlon", "imagefolder"] = "embedded"
    root: Optional[Path] = Field(None, description="input root for decathlon/imagefolder sources")
    prepared_dir: Path = Path("data/prepared/embedded")
    domains: Optional[list[str]] = Field(None, description="subset of domains to use (default: all)")
    size: int = Field(36, ge=8, le=512, description="stored image size (shorter side, then centre crop)")
    crop: int = Field(32, ge=8, le=512, description="network input size (random crop in training, centre in eval)")
    searchval_fraction: float = Field(0.1, gt=0, lt=0.5)
    max_train_per_domain: Optional[int] = Field(None, ge=1, description="cap per domain (smoke runs)")
    on_bad_image: Literal["error", "skip"] = "error"
    seed: int = 0
    sampling: SamplingConfig = SamplingConfig()
    augment: AugmentConfig = AugmentConfig()
    augment_overrides: dict[str, AugmentConfig] = Field(default_factory=dict, description="per-domain augmentation")
    device_resident: Switch = Field(
        "auto", description="upload the prepared uint8 arrays to the training device once and sample, crop, flip and "
                            "normalise there (no image copies per step); auto: on CUDA when they fit in half the free "
                            "device memory, off on the CPU (docs/gpu.md)")

    @model_validator(mode="after")
    def _crop_fits(self) -> "DataConfig":
        if self.crop > self.size:
            raise ValueError(f"crop ({self.crop}) must not exceed size ({self.size})")
        return self

    def augment_for(self, domain: str) -> AugmentConfig:
        """Per-domain augmentation: explicit override, else the default with flip off for label-changing domains."""
        if domain in self.augment_overrides:
            return self.augment_overrides[domain]
        if domain in NO_FLIP_DOMAINS:
            return self.augment.model_copy(update={"flip": False})
        return self.augment


# -------------------------------------------------------------------------------------------------- search space
class StageConfig(_Strict):
    """One stage of inverted bottlenecks at a fixed width; only its first layer may change stride/width."""

    width: int = Field(..., ge=8)
    layers: int = Field(..., ge=1, le=8)
    stride: Literal[1, 2] = 1
    act: Literal["relu", "hswish"] = "relu"
    allow_skip: bool = Field(True, description="offer `zero` on layers whose stride and width do not change")


class SpaceConfig(_Strict):
    """A MobileNetV3-like search space; `preset` picks a table, explicit fields override it."""

    preset: Optional[Literal["mpnas_small", "tunas_mnv3_like_224"]] = "mpnas_small"
    input_size: Optional[int] = Field(None, ge=8, description="default: data.crop")
    stem_width: Optional[int] = Field(None, ge=8)
    stem_stride: Optional[Literal[1, 2]] = None
    stem_kernels: Optional[list[int]] = None
    stages: Optional[list[StageConfig]] = None
    head_widths: Optional[list[int]] = None
    kernels: list[int] = [3, 5, 7]
    expansions: list[float] = [1, 2, 3, 4, 5, 6]
    se: list[bool] = [False, True]
    se_ratio: float = Field(0.25, gt=0, le=1)
    search_widths: bool = False
    dropout: float = Field(0.0, ge=0, lt=1)

    @field_validator("kernels", "stem_kernels")
    @classmethod
    def _odd_kernels(cls, v: Optional[list[int]]) -> Optional[list[int]]:
        if v is not None:
            if not v:
                raise ValueError("needs at least one kernel size")
            bad = [k for k in v if k < 1 or k % 2 == 0]
            if bad:
                raise ValueError(f"kernel sizes must be odd and positive, got {bad}")
        return v

    @field_validator("expansions")
    @classmethod
    def _positive_expansions(cls, v: list[float]) -> list[float]:
        if not v or any(e <= 0 for e in v):
            raise ValueError("expansions must be a non-empty list of positive ratios")
        return v

    @field_validator("se")
    @classmethod
    def _se_nonempty(cls, v: list[bool]) -> list[bool]:
        if not v:
            raise ValueError("se must offer at least one option")
        return v

    @field_validator("search_widths")
    @classmethod
    def _no_width_search(cls, v: bool) -> bool:
        if v:
            raise ValueError("width search is not supported: widths are fixed per stage so merged nodes share exactly")
        return v


# ------------------------------------------------------------------------------------------------- loss weighting
class AbdpConfig(_Strict):
    """Knobs of adaptive balanced domain prioritisation (`abdp` and the older `abdp_focal`; docs/weighting.md)."""

    momentum: float = Field(0.9, ge=0, lt=1, description="EMA momentum of the per-domain accuracy KPI")
    gamma: float = Field(2.0, ge=0, description="focal exponent of the priority (abdp_focal only)")
    floor: float = Field(0.3, ge=0, le=1, description="lambda: share of the uniform weight mixed in (the least weight)")
    cap: float = Field(2.0, description="abdp: the largest weight any domain gets (weights keep mean 1)")
    reference_metrics: Optional[Path] = Field(
        None, description="abdp: metrics.json (from `mpnas evaluate`) whose per-domain top1_val is the attainable "
                          "accuracy; default: every domain assumed fully attainable")
    eps: float = Field(1e-3, gt=0, lt=0.5)
    burn_in_fraction: float = Field(0.05, ge=0, lt=1)
    update_every: int = Field(10, ge=1)
    clip_min: float = Field(0.1, gt=0, description="abdp_focal only")
    clip_max: float = Field(10.0, gt=0, description="abdp_focal only")

    @field_validator("cap")
    @classmethod
    def _cap_above_floor(cls, v: float, info: Any) -> float:
        floor = info.data.get("floor")
        if floor is not None and v < floor:
            raise ValueError(f"cap ({v}) is below floor ({floor}): no weight can lie between them; raise cap")
        if v < 1:
            raise ValueError(f"cap ({v}) is below 1: the weights have mean 1, so some domain's weight is at least 1")
        return v

    @field_validator("reference_metrics")
    @classmethod
    def _reference_readable(cls, v: Optional[Path]) -> Optional[Path]:
        if v is not None:
            from mpnas.utils.io import read_json  # local: config is imported everywhere, keep its imports light

            try:
                doc = read_json(v, "give the metrics.json that `mpnas evaluate` wrote for the reference model")
            except FileNotFoundError as exc:  # pydantic reports ValueErrors with the field named, not OSErrors
                raise ValueError(str(exc)) from None
            if not isinstance(doc.get("domains"), dict) or not doc["domains"]:
                raise ValueError(f"{v}: no `domains` mapping; expected a metrics.json from `mpnas evaluate`")
        return v


class WeightingConfig(_Strict):
    name: Literal["uniform", "abdp", "abdp_focal", "dwa", "uncertainty"] = "abdp"
    abdp: AbdpConfig = AbdpConfig()
    dwa_temperature: float = Field(2.0, gt=0)
    apply_to: Literal["shared_parameters", "all_parameters"] = Field(
        "shared_parameters", description="weights scale the gradients of parameters several domains share; a "
                                         "domain's own parameters (classifier, exclusive nodes) get its unweighted "
                                         "gradient (docs/weighting.md)")


# --------------------------------------------------------------------------------------------------------- search
class TyingConfig(_Strict):
    """Sharing by design: each domain's controller logits = a shared prior + a per-domain offset.

    The prior learns from every domain's samples, so domains agree unless their own reward pulls them apart; the
    offsets carry an L2 pull of `strength` (times the number of domains' mean), annealed linearly from `strength` to
    `strength * anneal_to` over the RL steps. `prior: none` is the paper's untied controllers (the ablation).
    """

    prior: Literal["none", "shared"] = "none"
    strength: float = Field(0.1, ge=0, description="L2 pull of each per-domain offset towards the shared prior")
    anneal_to: float = Field(1.0, ge=0, description="strength multiplier reached at the end of the search")


class OptimizerConfig(_Strict):
    """The weight optimiser settings the search and the final training share (mpnas.loop.build_optimizer; weight
    decay skips norms, biases and classifiers: mpnas.loop.decay_groups)."""

    optimizer: Literal["sgd", "rmsprop", "adamw"] = Field(
        "adamw", description="adamw learns fastest in short CPU runs (measured: BENCHMARKS.md / issue notes)")
    lr: float = Field(3e-3, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1, description="sgd/rmsprop only")
    weight_decay: float = Field(0.01, ge=0, description="decoupled for adamw; L2 for sgd/rmsprop")
    label_smoothing: float = Field(0.1, ge=0, lt=1)


class SearchConfig(OptimizerConfig):
    mode: Literal["multi_path", "multi_head", "independent", "fixed"] = "multi_path"
    steps: int = Field(300, ge=1)
    batch_size: int = Field(32, ge=2, description="training images per domain per step")
    val_batch_multiplier: float = Field(2.0, gt=0, description="reward batch = multiplier x batch_size")
    paths_per_domain: int = Field(1, ge=1, description="K paths sampled per domain per step")
    lr_warmup_fraction: float = Field(0.025, ge=0, lt=1)
    rl_lr: float = Field(3e-3, gt=0)
    rl_delay_fraction: float = Field(0.25, ge=0, lt=1)
    rl_lr_growth: float = Field(10.0, ge=1, description="RL lr grows exponentially to this factor by the end")
    op_warmup_fraction: float = Field(0.25, ge=0, lt=1)
    baseline_momentum: float = Field(0.95, ge=0, lt=1)
    cost_metric: Literal["flops", "params", "both"] = "flops"
    cost_beta: float = Field(-0.1, le=0, description="beta of the abs reward (negative)")
    cost_target: Optional[float] = Field(None, description="C0 in FLOPs; default: the reference genotype's FLOPs")
    params_beta: float = Field(-0.1, le=0)
    params_target: Optional[float] = Field(None, description="P0 in parameters; default: the reference genotype's")
    fixed_genotype: str = Field("mobilenet_v3_like", description="genotype name or JSON path for mode=fixed")
    grouped: bool = Field(True, description="run a block once for all domains that picked it")
    reward_metric: Literal["top1", "true_prob", "log_prob"] = Field(
        "top1", description="path quality on the reward batch: top-1, or the smoother mean probability / "
                            "log-probability of the true class")
    paired_rewards: bool = Field(False, description="score all K paths of a domain on the same reward images "
                                                    "(each path sees the whole reward batch)")
    baseline: Literal["ema", "leave_one_out"] = Field(
        "ema", description="ema: TuNAS's EMA of mean rewards; leave_one_out: each path against the mean of the "
                           "domain's other K-1 paths of the same step (needs paths_per_domain >= 2)")
    null_control: bool = Field(False, description="no-signal control: replace each path's reward-batch quality by a "
                                                  "draw independent of the architecture (same per-domain mean and "
                                                  "noise); everything else unchanged")
    cost_scope: Literal["path", "marginal"] = Field(
        "path", description="path: the paper's per-path cost only; marginal: also charge share_beta x the parameters "
                            "a path adds to the union of the other domains' current argmax paths (/ P0)")
    share_beta: float = Field(-0.1, le=0, description="weight of the marginal-parameters term (cost_scope=marginal)")
    tying: TyingConfig = TyingConfig()
    cudnn: bool = Field(False, description="use cuDNN on CUDA during the search (off: every step has new shapes and "
                                           "cuDNN re-plans each one; measured 18x slower on an H200)")
    bucket_shapes: Switch = Field(
        "auto", description="pad each grouped op call to a power-of-two number of batch segments (pads are discarded "
                            "and normalised apart), so the search runs a small fixed set of shapes; auto: on CUDA "
                            "only (docs/gpu.md)")
    loss_weighting: WeightingConfig = WeightingConfig(name="uniform")
    checkpoint_every: int = Field(50, ge=1)
    log_every: int = Field(10, ge=1)
    device: str = "auto"

    @field_validator("cost_target", "params_target")
    @classmethod
    def _positive_target(cls, v: Optional[float]) -> Optional[float]:
        if v is not None and v <= 0:
            raise ValueError("a cost target must be positive (C/C0 is undefined for C0 <= 0)")
        return v

    @model_validator(mode="after")
    def _warmup_before_rl(self) -> "SearchConfig":
        if self.op_warmup_fraction > self.rl_delay_fraction:
            raise ValueError("op_warmup_fraction must not exceed rl_delay_fraction (controllers must not learn "
                             "from warm-up samples)")
        return self

    @model_validator(mode="after")
    def _compatible_signal_options(self) -> "SearchConfig":
        if self.null_control and self.mode == "fixed":
            raise ValueError("null_control: a fixed search has no controller to control; use mode multi_path, "
                             "multi_head or independent")
        if self.baseline == "leave_one_out" and self.paths_per_domain < 2:
            raise ValueError("baseline: leave_one_out needs paths_per_domain >= 2")
        if self.tying.prior != "none" and self.mode != "multi_path":
            raise ValueError(f"tying.prior: {self.tying.prior} ties per-domain controllers; mode {self.mode} has "
                             f"{'one shared controller' if self.mode == 'multi_head' else 'no shared weights'}; "
                             f"use mode multi_path or tying.prior none")
        if self.cost_scope == "marginal" and self.mode != "multi_path":
            raise ValueError(f"cost_scope: marginal charges what a path adds to the merged model, which only "
                             f"multi_path builds (mode is {self.mode})")
        return self


# ---------------------------------------------------------------------------------------------------------- train
class TrainConfig(OptimizerConfig):
    steps: int = Field(600, ge=1)
    batch_size: int = Field(32, ge=2, description="images per domain per step")
    warmup_fraction: float = Field(0.025, ge=0, lt=1)
    dropout: float = Field(0.2, ge=0, lt=1)
    bn_mode: Literal["per_domain", "per_domain_affine", "shared"] = Field(
        "per_domain", description="per_domain: BN statistics per domain, affine shared; per_domain_affine: statistics "
                                  "and affine per domain; shared: one BN for all (ablation)")
    loss_weighting: WeightingConfig = WeightingConfig()
    warm_start: Optional[Path] = Field(None, description="a search --out directory (or its checkpoint.pt): start every "
                                                         "node, head and classifier from the supernet's weights for "
                                                         "its choice (mpnas/training/warm_start.py) instead of random")
    eval_every: int = Field(100, ge=1)
    early_stopping_patience: Optional[int] = Field(None, ge=1, description="evaluations without val improvement")
    checkpoint_every: int = Field(100, ge=1)
    log_every: int = Field(10, ge=1)
    device: str = "auto"


# ------------------------------------------------------------------------------------------------------- evaluate
class EvaluateConfig(_Strict):
    batch_size: int = Field(256, ge=1)
    latency_repeats: int = Field(30, ge=1)
    latency_warmup: int = Field(5, ge=0)
    reference_metrics: Optional[Path] = Field(None, description="metrics.json whose test errors define E_max")
    params_reference: Optional[float] = Field(None, gt=0, description="parameter count to report a ratio against")
    device: str = "auto"


# --------------------------------------------------------------------------------------------------------- export
class ExportConfig(_Strict):
    formats: list[Literal["executorch", "onnx"]] = ["executorch", "onnx"]
    int8: bool = True
    calibration_images: int = Field(64, ge=1, description="per domain, from the train split")
    parity_atol: float = Field(1e-3, gt=0, description="max |logit difference| accepted for fp32 exports")
    parity_min_agreement: float = Field(0.999, gt=0, le=1)
    latency_repeats: int = Field(30, ge=1)
    opset: int = Field(18, ge=11)
    measure_sharing: bool = Field(False, description="also lower one single-method .pte per domain (in memory) to "
                                                     "measure the combined file's saving exactly; slow (one XNNPACK "
                                                     "lowering per domain). Off: the saving comes from the combined "
                                                     "program's per-method constant tables")
    lower_workers: Optional[int] = Field(None, ge=1, description="processes that lower the .pte programs to XNNPACK "
                                                               "(the .pte bytes do not depend on it); default: the "
                                                               "CPUs this process may use, at most one per two methods")


# ---------------------------------------------------------------------------------------------------------- root
class MpnasConfig(_Strict):
    name: str = "mpnas"
    seed: int = 0
    data: DataConfig = DataConfig()
    space: SpaceConfig = SpaceConfig()
    search: SearchConfig = SearchConfig()
    train: TrainConfig = TrainConfig()
    evaluate: EvaluateConfig = EvaluateConfig()
    export: ExportConfig = ExportConfig()


# ------------------------------------------------------------------------------------------------------- loading
def _dotted(loc: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in loc) or "<root>"


def format_errors(err: ValidationError, source: str) -> str:
    lines = [f"{source}: invalid configuration"]
    for e in err.errors():
        msg = "unknown key (check the spelling; see `mpnas config show` for the valid keys)" \
            if e["type"] == "extra_forbidden" else e["msg"]
        lines.append(f"  {_dotted(e['loc'])}: {msg}")
    return "\n".join(lines)


def parse_override(item: str) -> tuple[list[str], Any]:
    """`a.b.c=value` -> (['a','b','c'], yaml-parsed value)."""
    if "=" not in item:
        raise ConfigError(f"override {item!r}: expected KEY=VALUE, e.g. train.steps=3")
    key, raw = item.split("=", 1)
    keys = [k for k in key.strip().split(".") if k]
    if not keys:
        raise ConfigError(f"override {item!r}: empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {item!r}: value is not valid YAML ({exc})") from exc
    return keys, value


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply dotted overrides to a raw config dict (validation happens afterwards, on the whole)."""
    for item in overrides:
        keys, value = parse_override(item)
        node = raw
        for k in keys[:-1]:
            child = node.get(k)
            if child is None:
                child = node[k] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"override {item!r}: {k} is not a section")
            node = child
        node[keys[-1]] = value
    return raw


def read_yaml(path: Path) -> Any:
    """Parse a YAML file; non-UTF-8 text, bad YAML and an empty file are errors naming the file."""
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start}); save the config as UTF-8") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if loaded is None:
        raise ConfigError(f"{path}: the file is empty; write at least one section (see `mpnas config show`), or "
                          f"omit -c to use the defaults")
    return loaded


def load_config(path: Optional[str | Path] = None, overrides: Optional[list[str]] = None) -> MpnasConfig:
    """Load and validate a config file (or the defaults) with dotted overrides; raise ConfigError on any problem."""
    raw: dict[str, Any] = {}
    source = "<defaults>"
    if path is not None:
        path = Path(path)
        source = str(path)
        if not path.is_file():
            raise ConfigError(f"{path}: config file not found")
        loaded = read_yaml(path)
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of sections (data, search, train, ...)")
        raw = loaded
    if overrides:
        source += " with --set " + " ".join(overrides)
        raw = apply_overrides(raw, list(overrides))
    try:
        return MpnasConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(format_errors(exc, source)) from None


def config_to_yaml(cfg: BaseModel) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)


def flatten(cfg: BaseModel | dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten a config to dotted keys (for MLflow params and lineage)."""
    data = cfg.model_dump(mode="json") if isinstance(cfg, BaseModel) else cfg
    out: dict[str, Any] = {}
    for k, v in data.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def resolve_device(name: str) -> "torch.device":  # noqa: F821
    """`auto` picks CUDA when present, else CPU."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)
