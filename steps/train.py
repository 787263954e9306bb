"""ABDP training step: a thin wrapper over mpnas.training.trainer.train_model."""

from __future__ import annotations

from typing import Annotated

from zenml import log_metadata, step

from steps import tracking
from steps._support import TRACKER
from steps.artifacts import ModelDir
from steps.contracts import DatasetRef, Genotypes, TrainSections
from steps.workdirs import keyed_dir


@step(experiment_tracker=TRACKER)
def train(config: TrainSections, dataset: DatasetRef, genotypes: Genotypes, workspace: str, share_nodes: bool = True,
          method: str = "mpnas") -> Annotated[ModelDir, "model"]:
    """Train the merged model from scratch; resumable through its keyed work dir. Per-step loss, per-domain loss and
    accuracy, loss weights (ABDP) and val top-1 go to MLflow under train/<method>/."""
    from mpnas.training.trainer import train_model

    cfg = config.full()
    out = keyed_dir(workspace, "train", cfg.model_dump(mode="json"), genotypes.root, share_nodes,
                    dataset.content_hash)
    tracking.log_config(cfg, f"train_{method}")
    tracking.set_tags({"method": method})
    result = train_model(cfg, dataset.path, genotypes.decoded(), out, resume=True, progress=True,
                         on_log=tracking.on_log(f"train/{method}/"), share_nodes=share_nodes)
    summary = {k: v for k, v in result.summary.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    tracking.log_metrics(summary, prefix=f"train/{method}/summary/")
    log_metadata(metadata={"train": summary, "method": method}, infer_artifact=True, artifact_name="model")
    return ModelDir(str(out))
