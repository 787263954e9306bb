"""add_domain_pipeline on the smoke run's production model: a new model version (staging) whose lineage names the
parent version and the new data version, the parent's domains unchanged, the MLflow run recording what was added."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_add_domain_pipeline_registers_a_child_version(smoke_runs, workspace, mlflow_uri):
    import mlflow
    from zenml.client import Client

    from mpnas.data.loading import iterate_split
    from mpnas.data.prepared import PreparedDataset
    from pipelines.add_domain_pipeline import add_domain_pipeline
    from steps.registry import production_version

    parent = production_version()
    parent_model = parent.get_artifact("model").load()
    add_domain_pipeline.with_options(config_path=str(ROOT / "configs" / "add_domain_smoke.yaml"))(
        workspace=str(workspace))
    run = Client().get_pipeline_run(Client().list_pipeline_runs(sort_by="desc:created", size=1).items[0].id)
    assert run.status.value == "completed"
    step = run.steps["add_domain"]
    assert str(step.inputs["parent"][0].id) == str(parent.get_artifact("model").id)  # artifact lineage
    child = step.outputs["model"][0].load()
    assert child.architecture()["genotypes"].keys() == {*parent_model.genotypes(), "signs"}

    dataset = run.steps["ingest"].outputs["dataset"][0].load()
    ds = PreparedDataset(dataset.path)
    old, new = parent_model.load(), child.load()
    with torch.no_grad():
        for d in old.domains:
            for x, _ in iterate_split(ds, d, "test", 128, 16):
                assert torch.equal(old(x, d), new(x, d)), d

    registration = run.steps["register_added"].outputs["registration"][0].load()
    mv = Client().get_model_version("mpnas", registration["version"])
    assert mv.number != parent.number and mv.stage == "staging"
    lineage = mv.run_metadata["lineage"]
    assert lineage["parent_model_version"] == f"mpnas:{parent.number}"
    assert lineage["data_content_hash"] == dataset.content_hash and lineage["added_domain"] == "signs"

    mlflow.set_tracking_uri(mlflow_uri)
    runs = mlflow.search_runs(experiment_names=["add_domain_pipeline"], output_format="list")
    latest = max(runs, key=lambda r: r.info.start_time)
    assert latest.data.tags["added_domain"] == "signs"
    assert latest.data.metrics["add_domain/summary/added_parameters"] > 0
    assert latest.data.tags["parent_model_version"] == f"mpnas:{parent.number}"
