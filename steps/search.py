"""Search step: a thin wrapper over mpnas.nas.search.run_search."""

from __future__ import annotations

from typing import Annotated, Optional, Tuple

from zenml import step

from steps import tracking
from steps._support import TRACKER
from steps.artifacts import SearchRun
from steps.contracts import DatasetRef, Genotypes, SearchSections
from steps.workdirs import keyed_dir


@step(experiment_tracker=TRACKER)
def search(config: SearchSections, dataset: DatasetRef, workspace: str, mode: Optional[str] = None
           ) -> Tuple[Annotated[SearchRun, "search_run"], Annotated[Genotypes, "genotypes"]]:
    """Run the architecture search (`mode`, when given, overrides search.mode: the comparison pipeline's baselines).

    Resumable: the work dir is keyed by the inputs, so a rerun after a crash continues from the checkpoint."""
    from mpnas.nas.search import run_search

    cfg = config.full()
    if mode is not None and mode != cfg.search.mode:
        # The baselines search as the paper does: tying and the marginal cost only exist for multi_path.
        update = {"mode": mode} | ({} if mode == "multi_path" else
                                   {"tying": cfg.search.tying.model_copy(update={"prior": "none"}),
                                    "cost_scope": "path"})
        cfg = cfg.model_copy(update={"search": cfg.search.model_validate(cfg.search.model_dump() | update)})
    mode = cfg.search.mode
    out = keyed_dir(workspace, "search", cfg.model_dump(mode="json"), dataset.content_hash)
    tracking.log_config(cfg, f"search_{mode}")
    result = run_search(cfg, dataset.path, out, resume=True, progress=True,
                        on_log=tracking.on_log(f"search/{mode}/"))
    tracking.log_metrics(result.summary, prefix=f"search/{mode}/summary/")
    return SearchRun(str(out)), Genotypes.of(result.genotypes)
