"""The comparison pipeline: five methods on the same data into one table; mpnas reuses the main run's search."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
METHODS = {"mpnas", "mpnas_uniform", "independent_nas", "multi_head_nas", "single_path_multi_head"}


@pytest.mark.slow
def test_comparison_table(smoke_runs, workspace):
    from zenml.client import Client

    from pipelines.comparison_pipeline import comparison_pipeline

    comparison_pipeline.with_options(config_path=str(ROOT / "configs" / "smoke.yaml"))(
        workspace=str(workspace), reports_root=str(workspace / "reports"))
    run = Client().get_pipeline_run(Client().list_pipeline_runs(sort_by="desc:created", size=1).items[0].id)
    assert run.status.value == "completed"
    assert run.steps["search_multi_path"].status.value == "cached"  # same search as the smoke mpnas run
    assert run.steps["train_mpnas"].status.value == "cached"
    assert not any(n == "search_uniform" for n in run.steps)  # mpnas_uniform shares the multi_path search
    result = json.loads((workspace / "reports" / run.name / "comparison.json").read_text())
    assert set(result["methods"]) == METHODS
    table = (workspace / "reports" / run.name / "comparison.md").read_text()
    assert all(f"| {m} |" in table for m in METHODS)
    m = result["methods"]
    assert m["independent_nas"]["sharing"]["share_nodes"] is False
    assert m["mpnas"]["train"]["share_nodes"] is True
    for shared in ("multi_head_nas", "single_path_multi_head"):
        g = run.steps[f"search_{'multi_head' if shared == 'multi_head_nas' else 'fixed'}"].outputs["genotypes"][0].load()
        assert len({tuple(v) for v in g.values()}) == 1, shared  # one path for every domain
