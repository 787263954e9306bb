"""ABDP training step: a thin wrapper over mpnas.training.trainer.train_model."""

from __future__ import annotations

from typing import Annotated, Optional

from zenml import log_metadata, step

from mpnas.config import MpnasConfig
from steps import tracking
from steps._support import TRACKER
from steps.artifacts import ModelDir
from steps.contracts import AbdpReference, DatasetRef, Genotypes, TrainSections
from steps.workdirs import keyed_dir


@step(experiment_tracker=TRACKER)
def train(config: TrainSections, dataset: DatasetRef, genotypes: Genotypes, workspace: str, share_nodes: bool = True,
          method: str = "mpnas", reference: Optional[dict] = None) -> Annotated[ModelDir, "model"]:
    """Train the merged model from scratch; resumable through its keyed work dir. Per-step loss, per-domain loss and
    accuracy, loss weights (ABDP) and val top-1 go to MLflow under train/<method>/. `reference`: another run's
    evaluation metrics (the comparison pipeline passes mpnas_uniform's) to use as ABDP's attainable reference."""
    from mpnas.training.trainer import train_model

    cfg = config.full()
    abdp_ref = AbdpReference.of(reference) if reference is not None else None
    if abdp_ref is not None:
        cfg = with_reference(cfg, abdp_ref, workspace)
    out = keyed_dir(workspace, "train", cfg.model_dump(mode="json"), genotypes.root, share_nodes,
                    dataset.content_hash)
    # one MLflow run holds every seed; a reference path differs per seed, so its params are scoped by seed too
    tracking.log_config(cfg, f"train_{method}" if reference is None else f"train_{method}_seed{cfg.seed}")
    tracking.set_tags({"method": method})
    result = train_model(cfg, dataset.path, genotypes.decoded(), out, resume=True, progress=True,
                         on_log=tracking.on_log(f"train/{method}/"), share_nodes=share_nodes)
    if abdp_ref is not None:  # the model artifact carries its reference: the workspace copy may be gone elsewhere
        from mpnas.evaluation.comparison import REFERENCE_FILE
        from mpnas.utils.io import atomic_write_json

        atomic_write_json(out / REFERENCE_FILE, abdp_ref.model_dump(mode="json"))
    summary = {k: v for k, v in result.summary.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    tracking.log_metrics(summary, prefix=f"train/{method}/summary/")
    ref = cfg.train.loss_weighting.abdp.reference_metrics
    log_metadata(metadata={"train": summary, "method": method, "abdp_reference": str(ref) if ref else "none"},
                 infer_artifact=True, artifact_name="model")
    return ModelDir(str(out))


def with_reference(cfg: MpnasConfig, reference: AbdpReference, workspace: str) -> MpnasConfig:
    """cfg with `train.loss_weighting.abdp.reference_metrics` set to `reference`, written to runs/reference/<key of its
    numbers>/metrics.json: an unchanged reference keeps the training's keyed dir (and its checkpoints). Refused where
    the weighting is not abdp or the config already names a reference (the pipeline never passes both)."""
    from mpnas.utils.io import atomic_write_json

    lw = cfg.train.loss_weighting
    if lw.name != "abdp" or lw.abdp.reference_metrics is not None:
        raise ValueError(f"train: a reference from {reference.method} was passed, but train.loss_weighting is "
                         f"{lw.name!r} with reference_metrics {lw.abdp.reference_metrics}; only abdp without a "
                         f"configured reference takes one")
    doc = reference.model_dump(mode="json")
    path = keyed_dir(workspace, "reference", doc) / "metrics.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, doc)
    abdp = lw.abdp.model_copy(update={"reference_metrics": path})
    train = cfg.train.model_copy(update={"loss_weighting": lw.model_copy(update={"abdp": abdp})})
    return cfg.model_copy(update={"train": train})

