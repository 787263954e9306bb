"""MPNAS against its baselines on the same prepared data, over one or more seeds, into one table
(reports/<run>/comparison.{md,json}).

Methods (every one trained with the same budget, loss weighting and recipe, `train` section):
- mpnas: multi-path search, merged, trained with the configured loss weighting (ABDP by default, steered by
  mpnas_uniform's accuracy: below);
- mpnas_uniform: the same search result, uniform loss weights;
- mpnas_null: a multi-path search with `search.null_control` (rewards carry no architecture signal), merged and
  trained exactly like mpnas: what the search's mechanics alone produce;
- independent_nas: search mode independent, trained without node sharing (the bundle);
- multi_head_nas: search mode multi_head (one shared path, per-domain heads);
- single_path_multi_head: the reference MobileNetV3-like path (search mode fixed) shared by all domains;
- shared_domain_bn: the same reference path with every batch-norm per domain (statistics and affine,
  `train.bn_mode: per_domain_affine`) and per-domain classifiers (Bilen and Vedaldi 2017).
mpnas and mpnas_uniform share one search; single_path_multi_head and shared_domain_bn share the fixed one.

ABDP's reference (docs/weighting.md): when the configured weighting is `abdp` and the config names no
`train.loss_weighting.abdp.reference_metrics`, each seed's mpnas training takes that seed's mpnas_uniform evaluation
(its per-domain val top-1 and final training-batch top-1) as its attainable reference: the `train_mpnas` step gets
the `metrics` artifact of `evaluate_mpnas_uniform` as its `reference` input, so it runs after it. The other ABDP
methods have no uniform twin and train without a reference. `extra.comparison.abdp_reference: none` (or the pipeline
parameter `abdp_reference`) turns the wiring off; a configured reference_metrics always wins. comparison.json/md
say which reference every ABDP run used.

Seeds: the pipeline parameter `seeds`, else `extra.comparison.seeds` of the run config, else the config's own seed.
Each seed runs every method with `seed` set to it; steps are named `<step>_seed<N>` when there is more than one seed
(one seed keeps the plain names), and a seed whose inputs did not change comes from the ZenML cache.

    zenml pipeline run pipelines.comparison_pipeline.comparison_pipeline -c configs/smoke.yaml
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Optional

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
TRAIN_ORDER = ("mpnas_uniform", *(m for m in METHODS if m != "mpnas_uniform"))


class ComparisonOptions(BaseModel):
    """`extra.comparison` of a run config (other pipelines ignore `extra`)."""

    model_config = ConfigDict(extra="forbid")
    seeds: Optional[list[int]] = Field(None, min_length=1,
                                       description="seeds every method runs with (mean ± std over them); default: "
                                                   "the config's seed")
    abdp_reference: Literal["uniform", "none"] = Field(
        "uniform", description="uniform: mpnas (abdp, no reference_metrics configured) takes the same seed's "
                               "mpnas_uniform evaluation as its attainable reference; none: it trains without one")

    @field_validator("seeds")
    @classmethod
    def _distinct(cls, v: Optional[list[int]]) -> Optional[list[int]]:
        if v is not None and len(set(v)) != len(v):
            raise ValueError(f"seeds {v} repeat a seed; list each once")
        return v


def resolve_options(extra: Optional[dict[str, Any]], default_seed: int, source: str = "<run config>",
                    **parameters: Any) -> ComparisonOptions:
    """`extra.comparison` with the pipeline parameters given (not None) on top, seeds defaulting to the config's;
    a bad value raises ConfigError naming the file and the field (`parameters.<name>` or `extra.comparison.<name>`)."""
    given = {k: v for k, v in parameters.items() if v is not None}
    raw = (extra or {}).get("comparison", {})
    raw = {**raw, **given} if isinstance(raw, dict) else raw
    try:
        options = ComparisonOptions.model_validate(raw)
    except ValidationError as exc:
        lines = [f"{source}: invalid extra.comparison" + (f" or parameters {', '.join(sorted(given))}" if given
                                                          else "")]
        for e in exc.errors():
            loc = ".".join(str(p) for p in e["loc"])
            top = str(e["loc"][0]) if e["loc"] else ""
            where = f"parameters.{loc}" if top in given else f"extra.comparison.{loc}" if loc else "extra.comparison"
            lines.append(f"  {where}: {e['msg']}")
        raise ConfigError("\n".join(lines)) from None
    return options if options.seeds else options.model_copy(update={"seeds": [default_seed]})


def resolve_seeds(seeds: Optional[list[int]], extra: Optional[dict[str, Any]], default: int,
                  source: str = "<run config>") -> list[int]:
    """The seeds of this comparison run; a bad value raises ConfigError naming the file and field."""
    return resolve_options(extra, default, source, seeds=seeds).seeds


def uniform_reference(cfg: MpnasConfig, options: ComparisonOptions) -> bool:
    """Whether mpnas trains with its seed's mpnas_uniform evaluation as ABDP reference: abdp weighting, the option on,
    and no reference_metrics in the config (a configured one wins)."""
    lw = cfg.train.loss_weighting
    return options.abdp_reference == "uniform" and lw.name == "abdp" and lw.abdp.reference_metrics is None


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
                        reports_root: str = "reports", seeds: Optional[list[int]] = None,
                        abdp_reference: Optional[str] = None) -> None:
    cfg = resolve_config(config, config_path, overrides)
    options = resolve_options(get_pipeline_context().extra, cfg.seed, run_config_path() or "<run config>",
                              seeds=seeds, abdp_reference=abdp_reference)
    ensure_experiment("comparison_pipeline", active_tracking_uri())
    ws = str(Path(workspace).resolve())
    data_cfg = DataSections.of(cfg)
    dataset = ingest(config=data_cfg, workspace=ws)
    plan = balance(config=data_cfg, dataset=dataset)
    eval_cfg = EvalSections.of(cfg)
    auto_reference = uniform_reference(cfg, options)

    runs: dict[str, list] = {"metrics": [], "methods": [], "seeds": [], "models": []}
    for seed in options.seeds:
        suffix = f"_seed{seed}" if len(options.seeds) > 1 else ""
        search_cfgs, train_cfgs = method_configs(cfg.model_copy(update={"seed": seed}))
        genotypes = {}
        for variant in dict.fromkeys(s for s, _, _ in METHODS.values()):
            mode = SEARCHES[variant][0]
            _, genotypes[variant] = search(config=search_cfgs[variant], dataset=dataset, workspace=ws, mode=mode,
                                           id=f"search_{variant}{suffix}", after=[plan])
        out: dict[str, tuple] = {}
        for name in TRAIN_ORDER:  # mpnas_uniform before mpnas: its metrics are mpnas's reference
            variant, recipe, share = METHODS[name]
            reference = out["mpnas_uniform"][1] if name == "mpnas" and auto_reference else None
            model = train(config=train_cfgs[recipe], dataset=dataset, genotypes=genotypes[variant], workspace=ws,
                          share_nodes=share, method=name, reference=reference, id=f"train_{name}{suffix}")
            _, m = evaluate(config=eval_cfg, dataset=dataset, model=model, workspace=ws, method=name,
                            id=f"evaluate_{name}{suffix}")
            out[name] = (model, m)
        for name in METHODS:  # the table keeps METHODS' order
            model, m = out[name]
            runs["models"].append(model)
            runs["metrics"].append(m)
            runs["methods"].append(name)
            runs["seeds"].append(seed)
    compare(dataset=dataset, reports_root=str(Path(reports_root).resolve()), **runs)
