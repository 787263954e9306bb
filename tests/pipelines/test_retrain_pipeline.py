"""Retraining reuses the production architecture on a new data version and follows the promotion rule."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("cand, prod, tol, expected", [
    (0.50, 0.50, 0.0, True), (0.51, 0.50, 0.0, True), (0.49, 0.50, 0.0, False), (0.49, 0.50, 0.02, True),
    (0.10, None, 0.0, True), (None, 0.50, 0.0, False)])
def test_promotion_rule(cand, prod, tol, expected):
    from steps.registry import should_promote

    assert should_promote(cand, prod, tol) is expected


@pytest.mark.slow
def test_retrain_promotes_only_if_not_worse(smoke_runs, workspace, mlflow_uri):
    from zenml.client import Client

    from pipelines.retrain_pipeline import retrain_pipeline
    from steps.registry import production_version

    before = production_version()
    assert before is not None  # the smoke run's first model version went to production
    prod_genotypes = before.get_artifact("model").load().genotypes()
    retrain_pipeline.with_options(config_path=str(ROOT / "configs" / "smoke.yaml"))(
        overrides=["data.seed=1", "data.prepared_dir=data/prepared/run_smoke_v2"], workspace=str(workspace))
    run = Client().get_pipeline_run(Client().list_pipeline_runs(sort_by="desc:created", size=1).items[0].id)
    assert run.status.value == "completed" and not any(n.startswith("search") for n in run.steps)
    new_data = run.steps["ingest"].outputs["dataset"][0].load()
    old_data = smoke_runs[1].steps["ingest"].outputs["dataset"][0].load()
    assert new_data.content_hash != old_data.content_hash
    assert run.steps["train"].outputs["model"][0].load().genotypes() == prod_genotypes
    production = run.steps["production_architecture"].outputs["production"][0].load()
    assert production.version == str(before.number)
    assert production.model_artifact_id == str(before.get_artifact("model").id)
    decision = run.steps["promote"].outputs["promotion"][0].load()
    cand, prod = decision["candidate_mean_top1_val"], decision["production_mean_top1_val"]
    assert decision["promoted"] == (cand >= prod)
    after = production_version()
    if decision["promoted"]:
        assert str(after.number) == decision["candidate_version"]
    else:
        assert after.id == before.id
        assert Client().get_model_version("mpnas", decision["candidate_version"]).stage.value == "staging"
    import mlflow  # the retrained model is the retrain run's MLflow logged model, linked to its ZenML version

    candidate = Client().get_model_version("mpnas", decision["candidate_version"])
    logged = mlflow.MlflowClient(tracking_uri=mlflow_uri).get_logged_model(candidate.run_metadata["mlflow_model_id"])
    assert logged.tags["zenml.model_version_id"] == str(candidate.id)
    run_inputs = mlflow.MlflowClient(tracking_uri=mlflow_uri).get_run(logged.source_run_id).inputs.dataset_inputs
    assert [i.dataset.digest for i in run_inputs] == [new_data.content_hash[:32]]
