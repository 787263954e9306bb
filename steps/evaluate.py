"""Evaluation and mobile-export steps: thin wrappers over evaluate_model and export_model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Tuple

from zenml import step

from steps import tracking
from steps._support import TRACKER, rebuild
from steps.artifacts import EvalDir, ExportDir, ModelDir
from steps.workdirs import keyed_dir


@step(experiment_tracker=TRACKER)
def evaluate(config: dict, dataset: dict, model: ModelDir, workspace: str, method: str = "mpnas"
             ) -> Tuple[Annotated[EvalDir, "evaluation"], Annotated[dict, "metrics"]]:
    """Accuracy per domain and split, decathlon-style score, cost and latency; figures and report.md."""
    from mpnas.evaluation.evaluate import evaluate_model

    cfg = rebuild(config)
    out = keyed_dir(workspace, "evaluate", cfg.evaluate.model_dump(mode="json"), model.architecture(),
                    Path(model.path).name, method, dataset["content_hash"])
    metrics = evaluate_model(model.path, dataset["path"], out, cfg.evaluate, method=method,
                             dataset_name=Path(dataset["path"]).name)
    tracking.log_metrics(metrics, prefix=f"eval/{method}/")
    return EvalDir(str(out)), metrics


@step(experiment_tracker=TRACKER)
def export(config: dict, dataset: dict, model: ModelDir, workspace: str) -> Annotated[ExportDir, "mobile_export"]:
    """Per-domain mobile programs (ExecuTorch .pte / ONNX) with parity checks and a manifest."""
    from mpnas.export.exporter import export_model

    cfg = rebuild(config)
    out = keyed_dir(workspace, "export", cfg.export.model_dump(mode="json"), model.architecture(),
                    Path(model.path).name)
    export_report = export_model(model.path, out, cfg.export, dataset["path"], progress=True, overwrite=True)
    tracking.log_metrics(export_report, prefix="export/")
    if not export_report.get("parity_ok", False):
        raise RuntimeError(f"{out}: exported programs disagree with the PyTorch model (see export_report.md)")
    return ExportDir(str(out))
