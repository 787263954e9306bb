"""MPNAS against its baselines on the same prepared data, into one table (reports/<run>/comparison.{md,json}).

Methods: mpnas (multi-path search, configured loss weighting, ABDP by default), mpnas_uniform (the same search
result, uniform loss weights), independent_nas (search mode independent, trained without node sharing),
multi_head_nas (search mode multi_head: one shared path, per-domain heads), single_path_multi_head (search mode
fixed: the reference MobileNetV3-like path shared by all domains). mpnas and mpnas_uniform share one search.

    zenml pipeline run pipelines.comparison_pipeline.comparison_pipeline -c configs/smoke.yaml
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from zenml import pipeline

from pipelines.config import resolve_config, sections
from pipelines.stack import active_tracking_uri, ensure_experiment
from steps.compare import compare
from steps.evaluate import evaluate
from steps.ingest import balance, ingest
from steps.search import search
from steps.train import train


@pipeline(enable_cache=True)
def comparison_pipeline(config: Optional[dict] = None, config_path: Optional[str] = None,
                        overrides: Optional[list[str]] = None, workspace: str = ".",
                        reports_root: str = "reports") -> None:
    cfg = resolve_config(config, config_path, overrides)
    ensure_experiment("comparison_pipeline", active_tracking_uri())
    ws = str(Path(workspace).resolve())
    dataset = ingest(config=sections(cfg, "data"), workspace=ws)
    plan = balance(config=sections(cfg, "data"), dataset=dataset)
    search_cfg = sections(cfg, "data", "space", "search")
    train_cfg = sections(cfg, "data", "space", "train", "evaluate")
    uniform = cfg.model_copy(deep=True)
    uniform.train.loss_weighting.name = "uniform"
    eval_cfg = sections(cfg, "data", "evaluate")

    # method -> (search mode, training config, share nodes); mpnas and mpnas_uniform share the multi_path search
    plans = {"mpnas": ("multi_path", train_cfg, True),
             "mpnas_uniform": ("multi_path", sections(uniform, "data", "space", "train", "evaluate"), True),
             "independent_nas": ("independent", train_cfg, False),
             "multi_head_nas": ("multi_head", train_cfg, True),
             "single_path_multi_head": ("fixed", train_cfg, True)}
    searches = {}
    for mode in dict.fromkeys(m for m, _, _ in plans.values()):
        _, searches[mode] = search(config=search_cfg, dataset=dataset, workspace=ws, mode=mode,
                                   id=f"search_{mode}", after=[plan])
    metrics = {}
    for name, (mode, tcfg, share) in plans.items():
        model = train(config=tcfg, dataset=dataset, genotypes=searches[mode], workspace=ws, share_nodes=share,
                      method=name, id=f"train_{name}")
        _, metrics[name] = evaluate(config=eval_cfg, dataset=dataset, model=model, workspace=ws, method=name,
                                    id=f"evaluate_{name}")
    compare(dataset=dataset, reports_root=str(Path(reports_root).resolve()), **metrics)
