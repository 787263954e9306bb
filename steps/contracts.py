"""The typed contracts between steps (docs/contracts.md). Each is a pydantic model, so it is validated where it is
made and again where a step receives it, ZenML stores it as JSON (its PydanticMaterializer: never a pickle) and
hashes it by content, which keeps a step cached downstream of the never-cached `ingest` when the data did not change.

- Config sections: each step takes only the sections of the mpnas config it uses (+ name and seed) as a step
  parameter, so its cache key changes only when they do; `.full()` is the MpnasConfig the library functions take.
- DatasetRef: the prepared data a run reads (ingest -> every step).
- Genotypes: domain -> block strings (search or the production model -> merge, train).
- ModelVersionRef: a Model Control Plane version (the parent of add-domain, production for retraining).
- AbdpReference: the attainable accuracy ABDP steers by, cut from another run's evaluation (comparison pipeline:
  mpnas_uniform -> mpnas).
"""

from __future__ import annotations

from typing import Optional, Self

from pydantic import BaseModel, ConfigDict, Field, RootModel, model_validator

from mpnas.config import (DataConfig, EvaluateConfig, ExportConfig, MpnasConfig, SearchConfig, SpaceConfig,
                          TrainConfig)
from mpnas.space import Genotype, genotypes_from_strings


# --------------------------------------------------------------------------------------------------- config sections
class Sections(BaseModel):
    """Some sections of an MpnasConfig; subclasses name which (the fields they declare)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = "mpnas"
    seed: int = 0

    @classmethod
    def of(cls, cfg: MpnasConfig) -> Self:
        """The sections this class declares, copied out of a validated config."""
        cfg = cfg.model_copy(deep=True)
        return cls(**{k: getattr(cfg, k) for k in cls.model_fields})

    def full(self) -> MpnasConfig:
        """These sections in a full MpnasConfig, the other sections at their defaults."""
        return MpnasConfig(**{k: getattr(self, k) for k in type(self).model_fields})


class ExportSections(Sections):
    export: ExportConfig


class DataSections(Sections):
    data: DataConfig


class EvalSections(DataSections):
    evaluate: EvaluateConfig


class SearchSections(DataSections):
    space: SpaceConfig
    search: SearchConfig


class TrainSections(DataSections):
    space: SpaceConfig
    train: TrainConfig
    evaluate: EvaluateConfig


class AddDomainSections(DataSections):
    """add_domain takes the parent's space; it searches and trains the new domain's path only."""

    search: SearchConfig
    train: TrainConfig


# ------------------------------------------------------------------------------------------------------- artifacts
class DatasetRef(BaseModel):
    """The prepared data a run reads: where it is (`path`, format docs/data_format.md) and which version it is
    (`content_hash` over the arrays, and the DVC stage and dvc.lock md5 that produced it)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    path: str
    name: str = Field(..., description="the prepared directory's name (MLflow dataset name, `dataset` tag)")
    content_hash: str = Field(..., min_length=16, description="SHA-256 over the arrays: the data version")
    domains: list[str] = Field(..., min_length=1, description="the domains this run uses (data.domains)")
    source: str = ""
    size: int = Field(0, ge=0, description="stored image size")
    manifest: str = Field("", description="manifest.parquet of the prepared data, if it has one")
    dvc_stage: Optional[str] = None
    dvc_md5: Optional[str] = None
    dvc_files: Optional[int] = None
    dvc_lock: Optional[str] = None

    def open(self):
        """The PreparedDataset at `path`."""
        from mpnas.data.prepared import PreparedDataset

        return PreparedDataset(self.path)

    def version(self) -> dict[str, Optional[str]]:
        """The data version other records carry (comparison.json, model-version lineage)."""
        return {"path": self.path, "content_hash": self.content_hash, "dvc_md5": self.dvc_md5}


class Genotypes(RootModel[dict[str, list[str]]]):
    """domain -> one block string per layer. Every string is parsed when the artifact is made or loaded, so a bad
    one is refused at the step boundary with `genotypes.<domain>` named."""

    @model_validator(mode="after")
    def _parses(self) -> Self:
        if not self.root:
            raise ValueError("genotypes: no domain")
        genotypes_from_strings(self.root)
        return self

    @classmethod
    def of(cls, genotypes: dict[str, Genotype]) -> Self:
        return cls({d: g.to_strings() for d, g in genotypes.items()})

    def decoded(self) -> dict[str, Genotype]:
        """domain -> Genotype (what the library functions take)."""
        return genotypes_from_strings(self.root)


class ModelVersionRef(BaseModel):
    """One version of a Model Control Plane model and its `model` artifact (lineage of add-domain and retraining)."""

    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())
    model: str
    version: str
    version_id: str
    model_artifact_id: str

    @property
    def label(self) -> str:
        return f"{self.model}:{self.version}"


class ReferenceDomain(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    top1_val: float = Field(..., ge=0, le=1)
    num_classes: Optional[int] = Field(None, ge=1)


class AbdpReference(BaseModel):
    """What `mpnas.weighting.attainable_from_reference` reads from a reference metrics.json (`domains.<d>.top1_val`,
    `num_classes`, `train.train_top1_final`) and where it came from. Only these fields, so the file (and the keyed
    training directory that names it) depends on the reference's numbers, not on its artifact paths; never test
    top-1: the weights steer training."""

    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())
    method: str = Field(..., description="the run the numbers come from (mpnas_uniform)")
    seed: Optional[int] = None
    model_hash: str = ""
    domains: dict[str, ReferenceDomain] = Field(..., min_length=1)
    train: dict[str, dict[str, float]] = Field(default_factory=dict, description="{train_top1_final: {domain: top1}}")

    @classmethod
    def of(cls, metrics: dict) -> Self:
        """From an evaluate_model metrics.json; a domain without top1_val is refused here, naming it."""
        train = metrics.get("train") if isinstance(metrics.get("train"), dict) else {}
        final = train.get("train_top1_final")
        return cls(method=str(metrics.get("method", "")), seed=train.get("seed"),
                   model_hash=str(metrics.get("model_hash", "")),
                   domains={d: {"top1_val": v.get("top1_val"), "num_classes": v.get("num_classes")}
                            for d, v in (metrics.get("domains") or {}).items()},
                   train={"train_top1_final": final} if isinstance(final, dict) and final else {})
