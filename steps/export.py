"""Mobile-export step: a thin wrapper over mpnas.export.exporter.export_model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from zenml import step

from steps import tracking
from steps._support import TRACKER
from steps.artifacts import ExportDir, ModelDir
from steps.contracts import DatasetRef, ExportSections
from steps.workdirs import keyed_dir


@step(experiment_tracker=TRACKER)
def export(config: ExportSections, dataset: DatasetRef, model: ModelDir, workspace: str
           ) -> Annotated[ExportDir, "mobile_export"]:
    """Per-domain mobile programs (ExecuTorch .pte / ONNX) with parity checks and a manifest."""
    from mpnas.export.exporter import export_model

    out = keyed_dir(workspace, "export", config.export.model_dump(mode="json"), model.architecture(),
                    Path(model.path).name)
    export_report = export_model(model.path, out, config.export, dataset.path, progress=True, overwrite=True)
    tracking.log_metrics(export_report, prefix="export/")
    if not export_report.get("parity_ok", False):
        raise RuntimeError(f"{out}: exported programs disagree with the PyTorch model (see export_report.md)")
    return ExportDir(str(out))
