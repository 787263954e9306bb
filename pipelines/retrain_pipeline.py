"""Retrain the production architecture on a new data version (no search), evaluate, and promote only if the mean
val top-1 is not worse than production's on the new data (rule: steps/registry.py).

    zenml pipeline run pipelines.retrain_pipeline.retrain_pipeline -c configs/retrain.yaml
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from zenml import pipeline

from pipelines.config import resolve_config
from pipelines.mpnas_pipeline import MODEL
from pipelines.stack import active_tracking_uri, ensure_experiment
from steps.contracts import DataSections, EvalSections, TrainSections
from steps.evaluate import evaluate
from steps.ingest import balance, ingest
from steps.registry import production_architecture, promote
from steps.train import train


@pipeline(model=MODEL, enable_cache=True)
def retrain_pipeline(config: Optional[dict] = None, config_path: Optional[str] = None,
                     overrides: Optional[list[str]] = None, workspace: str = ".", tolerance: float = 0.0) -> None:
    cfg = resolve_config(config, config_path, overrides)
    ensure_experiment("retrain_pipeline", active_tracking_uri())
    ws = str(Path(workspace).resolve())
    data_cfg = DataSections.of(cfg)
    dataset = ingest(config=data_cfg, workspace=ws)
    plan = balance(config=data_cfg, dataset=dataset)
    genotypes, production = production_architecture(after=[plan])
    model = train(config=TrainSections.of(cfg), dataset=dataset, genotypes=genotypes, workspace=ws, method="retrain")
    eval_cfg = EvalSections.of(cfg)
    evaluate(config=eval_cfg, dataset=dataset, model=model, workspace=ws, method="retrain")
    promote(config=eval_cfg, dataset=dataset, model=model, production=production, tolerance=tolerance)
