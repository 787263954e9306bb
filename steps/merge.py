"""Merge step: the per-domain paths built into one multi-path model (shared nodes stored once), reported as which
nodes the domains share and the merged model's parameter count."""

from __future__ import annotations

from typing import Annotated

from zenml import step

from mpnas.models.sharing import sharing_markdown, sharing_report
from steps.contracts import DatasetRef, Genotypes, TrainSections


@step
def merge(config: TrainSections, dataset: DatasetRef, genotypes: Genotypes, share_nodes: bool = True
          ) -> Annotated[dict, "sharing"]:
    """Merge the per-domain paths into one multi-path model and report which nodes the domains share."""
    from mpnas.training.trainer import build_model, resolve_domains

    cfg = config.full()
    ds = dataset.open()
    g = genotypes.decoded()
    model = build_model(cfg, ds, g, resolve_domains(cfg, ds, g), share_nodes)
    report = sharing_report(model)
    report["markdown"] = sharing_markdown(report)
    report["params_total"] = model.num_parameters()
    return report
