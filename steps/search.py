"""Search and merge steps: thin wrappers over mpnas.nas.search.run_search and the merged-model builder."""

from __future__ import annotations

from typing import Annotated, Optional, Tuple

from zenml import step

from mpnas.models.sharing import sharing_markdown, sharing_report
from mpnas.space import Genotype
from steps import tracking
from steps._support import TRACKER, rebuild
from steps.artifacts import SearchRun
from steps.workdirs import keyed_dir


@step(experiment_tracker=TRACKER)
def search(config: dict, dataset: dict, workspace: str, mode: Optional[str] = None
           ) -> Tuple[Annotated[SearchRun, "search_run"], Annotated[dict, "genotypes"]]:
    """Run the architecture search (`mode`, when given, overrides search.mode: the comparison pipeline's baselines).

    Resumable: the work dir is keyed by the inputs, so a rerun after a crash continues from the checkpoint."""
    from mpnas.nas.search import run_search

    cfg = rebuild(config)
    if mode is not None and mode != cfg.search.mode:
        # The baselines search as the paper does: tying and the marginal cost only exist for multi_path.
        update = {"mode": mode} | ({} if mode == "multi_path" else
                                   {"tying": cfg.search.tying.model_copy(update={"prior": "none"}),
                                    "cost_scope": "path"})
        cfg = cfg.model_copy(update={"search": cfg.search.model_validate(cfg.search.model_dump() | update)})
    mode = cfg.search.mode
    out = keyed_dir(workspace, "search", cfg.model_dump(mode="json"), dataset["content_hash"])
    tracking.log_config(cfg, f"search_{mode}")
    result = run_search(cfg, dataset["path"], out, resume=True, progress=True,
                        on_log=tracking.on_log(f"search/{mode}/"))
    tracking.log_metrics(result.summary, prefix=f"search/{mode}/summary/")
    return SearchRun(str(out)), {d: g.to_strings() for d, g in result.genotypes.items()}


def to_genotypes(genotypes: dict) -> dict[str, Genotype]:
    return {d: Genotype.from_strings(list(g)) for d, g in genotypes.items()}


@step
def merge(config: dict, dataset: dict, genotypes: dict, share_nodes: bool = True) -> Annotated[dict, "sharing"]:
    """Merge the per-domain paths into one multi-path model and report which nodes the domains share."""
    from mpnas.data.prepared import PreparedDataset
    from mpnas.training.trainer import build_model, resolve_domains

    cfg = rebuild(config)
    ds = PreparedDataset(dataset["path"])
    g = to_genotypes(genotypes)
    model = build_model(cfg, ds, g, resolve_domains(cfg, ds, g), share_nodes)
    report = sharing_report(model)
    report["markdown"] = sharing_markdown(report)
    report["params_total"] = model.num_parameters()
    return report
