"""MPNAS against its baselines on the same prepared data, over one or more seeds, into one table
(reports/<run>/comparison.{md,json}).

Methods (every one trained with the same budget, loss weighting and recipe, `train` section):
- mpnas: multi-path search, merged, trained with the configured loss weighting (ABDP by default);
- mpnas_uniform: the same search result, uniform loss weights;
- mpnas_null: a multi-path search with `search.null_control` (rewards carry no architecture signal), merged and
  trained exactly like mpnas: what the search's mechanics alone produce;
- independent_nas: search mode independent, trained without node sharing (the bundle);
- multi_head_nas: search mode multi_head (one shared path, per-domain heads);
- single_path_multi_head: the reference MobileNetV3-like path (search mode fixed) shared by all domains;
- shared_domain_bn: the same reference path with every batch-norm per domain (statistics and affine,
  `train.bn_mode: per_domain_affine`) and per-domain classifiers (Bilen and Vedaldi 2017).
mpnas and mpnas_uniform share one search; single_path_multi_head and shared_domain_bn share the fixed one.

Seeds: the pipeline parameter `seeds`, else `extra.comparison.seeds` of the run config, else the config's own seed.
Each seed runs every method with `seed` set to it; steps are named `<step>_seed<N>` when there is more than one seed
(one seed keeps the plain names), and a seed whose inputs did not change comes from the ZenML cache.

    zenml pipeline run pipelines.comparison_pipeline.comparison_pipeline -c configs/smoke.yaml
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from zenml import get_pipeline_context, pipeline

from mpnas.config import ConfigError, MpnasConfig
from pipelines.config import resolve_config, run_config_path
from pipelines.stack import active_tracking_uri, ensure_experiment
from steps.compare import compare
from steps.contracts import DataSections, EvalSections, SearchSections, TrainSections
from steps.evaluate import evaluate
from steps.ingest import balance, ingest
from steps.search import search
from steps.train import train

# search variant -> (search mode, search.null_control)
SEARCHES = {"multi_path": ("multi_path", False), "multi_path_null": ("multi_path", True),
            "independent": ("independent", False), "multi_head": ("multi_head", False), "fixed": ("fixed", False)}
# method -> (search variant, training variant, share nodes)
METHODS = {"mpnas": ("multi_path", "configured", True),
           "mpnas_uniform": ("multi_path", "uniform", True),
           "mpnas_null": ("multi_path_null", "configured", True),
           "independent_nas": ("independent", "configured", False),
           "multi_head_nas": ("multi_head", "configured", True),
           "single_path_multi_head": ("fixed", "configured", True),
           "shared_domain_bn": ("fixed", "per_domain_affine", True)}


class ComparisonOptions(BaseModel):
    """`extra.comparison` of a run config (other pipelines ignore `extra`)."""

    model_config = ConfigDict(extra="forbid")
    seeds: list[int] = Field(..., min_length=1, description="seeds every method runs with (mean ± std over them)")

    @field_validator("seeds")
    @classmethod
    def _distinct(cls, v: list[int]) -> list[int]:
        if len(set(v)) != len(v):
            raise ValueError(f"seeds {v} repeat a seed; list each once")
        return v


def resolve_seeds(seeds: Optional[list[int]], extra: Optional[dict[str, Any]], default: int,
                  source: str = "<run config>") -> list[int]:
    """The seeds of this comparison run; a bad value raises ConfigError naming the file and field."""
    if seeds is not None:
        raw, field = {"seeds": seeds}, "parameters.seeds"
    elif extra and "comparison" in extra:
        raw, field = extra["comparison"], "extra.comparison"
    else:
        return [default]
    try:
        return ComparisonOptions.model_validate(raw).seeds
    except ValidationError as exc:
        lines = [f"{source}: invalid {field}"]
        for e in exc.errors():
            loc = ".".join(str(p) for p in e["loc"])
            where = field if field.endswith("seeds") else f"{field}.{loc}" if loc else field
            lines.append(f"  {where}: {e['msg']}")
        raise ConfigError("\n".join(lines)) from None


def method_configs(cfg: MpnasConfig) -> tuple[dict[str, SearchSections], dict[str, TrainSections]]:
    """(search variant -> search sections, training variant -> train sections) for one seed's config."""
    searches = {}
    for variant, (mode, null) in SEARCHES.items():
        c = cfg.model_copy(deep=True)
        update = {"mode": mode, "null_control": null}
        if mode != "multi_path":  # the baselines search as the paper does: tying and marginal cost are multi_path's
            update |= {"tying": c.search.tying.model_copy(update={"prior": "none"}), "cost_scope": "path"}
        c.search = c.search.model_copy(update=update)  # validated again where the step receives it
        searches[variant] = SearchSections.of(c)
    uniform = cfg.model_copy(deep=True)
    uniform.train.loss_weighting = uniform.train.loss_weighting.model_copy(update={"name": "uniform"})
    affine = cfg.model_copy(deep=True)
    affine.train = affine.train.model_copy(update={"bn_mode": "per_domain_affine"})
    trains = {"configured": TrainSections.of(cfg), "uniform": TrainSections.of(uniform),
              "per_domain_affine": TrainSections.of(affine)}
    return searches, trains


@pipeline(enable_cache=True)
def comparison_pipeline(config: Optional[dict] = None, config_path: Optional[str] = None,
                        overrides: Optional[list[str]] = None, workspace: str = ".",
                        reports_root: str = "reports", seeds: Optional[list[int]] = None) -> None:
    cfg = resolve_config(config, config_path, overrides)
    seed_list = resolve_seeds(seeds, get_pipeline_context().extra, cfg.seed, run_config_path() or "<run config>")
    ensure_experiment("comparison_pipeline", active_tracking_uri())
    ws = str(Path(workspace).resolve())
    data_cfg = DataSections.of(cfg)
    dataset = ingest(config=data_cfg, workspace=ws)
    plan = balance(config=data_cfg, dataset=dataset)
    eval_cfg = EvalSections.of(cfg)

    metrics, labels, run_seeds = [], [], []
    for seed in seed_list:
        suffix = f"_seed{seed}" if len(seed_list) > 1 else ""
        search_cfgs, train_cfgs = method_configs(cfg.model_copy(update={"seed": seed}))
        genotypes = {}
        for variant in dict.fromkeys(s for s, _, _ in METHODS.values()):
            mode = SEARCHES[variant][0]
            _, genotypes[variant] = search(config=search_cfgs[variant], dataset=dataset, workspace=ws, mode=mode,
                                           id=f"search_{variant}{suffix}", after=[plan])
        for name, (variant, recipe, share) in METHODS.items():
            model = train(config=train_cfgs[recipe], dataset=dataset, genotypes=genotypes[variant], workspace=ws,
                          share_nodes=share, method=name, id=f"train_{name}{suffix}")
            _, m = evaluate(config=eval_cfg, dataset=dataset, model=model, workspace=ws, method=name,
                            id=f"evaluate_{name}{suffix}")
            metrics.append(m)
            labels.append(name)
            run_seeds.append(seed)
    compare(dataset=dataset, reports_root=str(Path(reports_root).resolve()), metrics=metrics, methods=labels,
            seeds=run_seeds)
