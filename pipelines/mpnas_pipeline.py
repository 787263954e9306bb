"""The main pipeline: ingest (DVC) -> balance/split check -> multi-path search -> merge -> ABDP training ->
evaluation -> mobile export -> report (reports/<run>/, reports/latest) -> Model Control Plane registration.

    zenml pipeline run pipelines.mpnas_pipeline.mpnas_pipeline -c configs/default.yaml
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from zenml import Model, pipeline

from pipelines.config import resolve_config
from pipelines.stack import active_tracking_uri, ensure_experiment
from steps.contracts import DataSections, EvalSections, ExportSections, SearchSections, TrainSections
from steps.evaluate import evaluate
from steps.export import export
from steps.ingest import balance, ingest
from steps.merge import merge
from steps.registry import MODEL_NAME, register
from steps.report import report
from steps.search import search
from steps.train import train

MODEL = Model(name=MODEL_NAME, description="MPNAS multi-domain on-device classifier (one path per domain, merged)",
              tags=["mpnas"])


@pipeline(model=MODEL, enable_cache=True)
def mpnas_pipeline(config: Optional[dict] = None, config_path: Optional[str] = None,
                   overrides: Optional[list[str]] = None, workspace: str = ".", reports_root: str = "reports") -> None:
    """`config` (or `config_path`, plus dotted `overrides`) is validated here, before any step runs.

    `workspace` is the DVC repository holding data/ and runs/; `reports_root` where reports/<run> is written."""
    cfg = resolve_config(config, config_path, overrides)
    ensure_experiment("mpnas_pipeline", active_tracking_uri())
    ws = str(Path(workspace).resolve())
    data_cfg = DataSections.of(cfg)
    dataset = ingest(config=data_cfg, workspace=ws)
    plan = balance(config=data_cfg, dataset=dataset)
    _, genotypes = search(config=SearchSections.of(cfg), dataset=dataset, workspace=ws, mode=cfg.search.mode,
                          after=[plan])
    train_cfg = TrainSections.of(cfg)
    sharing = merge(config=train_cfg, dataset=dataset, genotypes=genotypes)
    model = train(config=train_cfg, dataset=dataset, genotypes=genotypes, workspace=ws, share_nodes=True,
                  method="mpnas", after=[sharing])
    eval_cfg = EvalSections.of(cfg)
    evaluation, metrics = evaluate(config=eval_cfg, dataset=dataset, model=model, workspace=ws, method="mpnas")
    mobile = export(config=ExportSections.of(cfg), dataset=dataset, model=model, workspace=ws)
    report(config=cfg, dataset=dataset, sharing=sharing, model=model, evaluation=evaluation, mobile_export=mobile,
           reports_root=str(Path(reports_root).resolve()))
    register(config=eval_cfg, dataset=dataset, model=model, metrics=metrics, mobile_export=mobile)
