"""Add one domain to a registered model version without touching its other domains (docs/add_domain.md):
ingest the new data version (DVC) -> add_domain (search over the frozen parent, grow, train only what is new) ->
evaluate -> register a new `mpnas` model version (staging) whose lineage names the parent version and the data.

    zenml pipeline run pipelines.add_domain_pipeline.add_domain_pipeline -c configs/add_domain_smoke.yaml
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from zenml import pipeline

from pipelines.config import resolve_config
from pipelines.mpnas_pipeline import MODEL
from pipelines.stack import active_tracking_uri, ensure_experiment
from steps.add_domain import add_domain, describe_parent, parent_artifact, register_added
from steps.contracts import AddDomainSections, DataSections, EvalSections
from steps.evaluate import evaluate
from steps.ingest import ingest


@pipeline(model=MODEL, enable_cache=False)
def add_domain_pipeline(domain: str = "", parent: str = "production", config: Optional[dict] = None,
                        config_path: Optional[str] = None, overrides: Optional[list[str]] = None,
                        workspace: str = ".") -> None:
    """`domain`: the new domain (in the data the config prepares); `parent`: the model version to extend (a stage
    or a version number). The data config must also hold the parent's domains (evaluation covers all of them)."""
    cfg = resolve_config(config, config_path, overrides)
    if not domain:
        raise ValueError("add_domain_pipeline: set parameters.domain to the domain to add")
    ensure_experiment("add_domain_pipeline", active_tracking_uri())
    ws = str(Path(workspace).resolve())
    parent_info = describe_parent(version=parent)
    dataset = ingest(config=DataSections.of(cfg), workspace=ws)
    model = add_domain(config=AddDomainSections.of(cfg), dataset=dataset,
                       parent=parent_artifact(parent), parent_info=parent_info, domain=domain, workspace=ws)
    eval_cfg = EvalSections.of(cfg)
    evaluate(config=eval_cfg, dataset=dataset, model=model, workspace=ws, method="add_domain")
    register_added(config=eval_cfg, dataset=dataset, model=model, parent_info=parent_info, domain=domain)
