"""Evaluation step: a thin wrapper over mpnas.evaluation.evaluate.evaluate_model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Tuple

from zenml import step

from steps import tracking
from steps._support import TRACKER
from steps.artifacts import EvalDir, ModelDir
from steps.contracts import DatasetRef, EvalSections
from steps.workdirs import keyed_dir


@step(experiment_tracker=TRACKER)
def evaluate(config: EvalSections, dataset: DatasetRef, model: ModelDir, workspace: str, method: str = "mpnas"
             ) -> Tuple[Annotated[EvalDir, "evaluation"], Annotated[dict, "metrics"]]:
    """Accuracy per domain and split, decathlon-style score, cost and latency; figures and report.md."""
    from mpnas.evaluation.evaluate import evaluate_model

    out = keyed_dir(workspace, "evaluate", config.evaluate.model_dump(mode="json"), model.architecture(),
                    Path(model.path).name, method, dataset.content_hash)
    metrics = evaluate_model(model.path, dataset.path, out, config.evaluate, method=method, dataset_name=dataset.name)
    tracking.log_metrics(metrics, prefix=f"eval/{method}/")
    return EvalDir(str(out)), metrics
