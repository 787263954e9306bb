"""The smoke pipeline end to end (real ZenML, MLflow sqlite store, DVC): first with a report step that fails (its
reports root is a file), then rerun: earlier artifacts survive the failure and the rerun resumes from cache. Then
the artifacts, the report directory, the MLflow run, the Model Control Plane version and `mpnas lineage`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mpnas.cli import main as mpnas_main

ROOT = Path(__file__).resolve().parents[2]
BEFORE_REPORT = ("ingest", "balance", "search", "merge", "train", "evaluate", "export")


@pytest.mark.slow
def test_failed_step_keeps_earlier_artifacts(smoke_runs):
    failed, _ = smoke_runs
    assert failed.status.value == "failed"
    assert failed.steps["report"].status.value == "failed"
    for name in BEFORE_REPORT:
        assert failed.steps[name].status.value == "completed", name
    model = failed.steps["train"].outputs["model"][0].load()
    net = model.load()
    assert sorted(net.domains) == ["aircraft", "digits8", "flowers"]
    assert not model.file("checkpoint.pt").exists()  # the materializer never stores pickles


@pytest.mark.slow
def test_rerun_resumes_from_cache(smoke_runs):
    failed, ok = smoke_runs
    assert ok.status.value == "completed"
    for name in ("search", "merge", "train", "evaluate", "export"):
        assert ok.steps[name].status.value == "cached", name
        assert ok.steps[name].outputs.keys() == failed.steps[name].outputs.keys()
    assert ok.steps["train"].outputs["model"][0].id == failed.steps["train"].outputs["model"][0].id
    assert ok.steps["report"].status.value == "completed"


@pytest.mark.slow
def test_artifacts_and_report(smoke_runs, workspace):
    _, ok = smoke_runs
    genotypes = ok.steps["search"].outputs["genotypes"][0].load().root
    assert set(genotypes) == {"aircraft", "digits8", "flowers"}
    dataset = ok.steps["ingest"].outputs["dataset"][0].load()
    assert len(dataset.content_hash) == 64 and dataset.dvc_md5.endswith(".dir")
    latest = workspace / "reports" / "latest"
    assert latest.is_symlink() and latest.resolve().name == ok.name
    metrics = json.loads((latest / "metrics.json").read_text())
    assert set(metrics["domains"]) == set(genotypes) and 0.0 <= metrics["mean_top1_val"] <= 1.0
    assert (latest / "report.md").read_text().startswith(f"# mpnas run `{ok.name}`")
    assert (latest / "figures" / "architecture.png").is_file()
    manifest = json.loads((latest / "export" / "manifest.json").read_text())
    assert set(genotypes) <= set(json.dumps(manifest).split('"'))


@pytest.mark.slow
def test_mlflow_run_has_params_metrics_tags(smoke_runs, mlflow_uri):
    """Each run's MLflow run has the config, tags, headline metrics and the report; the per-step curves live in the
    run that executed search and training (the first one: the rerun took them from cache)."""
    import mlflow

    failed, ok = smoke_runs
    client = mlflow.MlflowClient(tracking_uri=mlflow_uri)
    exp = client.get_experiment_by_name("mpnas_pipeline")

    def mlflow_run(name):
        found = client.search_runs([exp.experiment_id], filter_string=f"attributes.run_name = '{name}'")
        assert len(found) == 1, name
        return found[0]

    run = mlflow_run(ok.name)
    assert run.data.params["search.steps"] == "8" and run.data.params["data.domains"]
    assert {"method", "dataset", "data_hash", "git_commit"} <= set(run.data.tags)
    assert run.data.tags["method"] == "mpnas"
    assert "eval/mpnas/mean_top1_val" in run.data.metrics
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "report")}
    assert "report/report.md" in artifacts and "report/metrics.json" in artifacts

    first = mlflow_run(failed.name)
    loss = client.get_metric_history(first.info.run_id, "train/mpnas/loss")
    assert len(loss) >= 2 and len({m.step for m in loss}) == len(loss)
    names = set(first.data.metrics)
    assert any(n.startswith("search/multi_path/") for n in names)
    assert any(n.startswith("train/mpnas/weight/") for n in names)  # ABDP loss weights over time


@pytest.mark.slow
def test_model_version_and_lineage(smoke_runs, capsys):
    from zenml.client import Client

    _, ok = smoke_runs
    # Other pipelines sharing the session's store (add_domain) may register later versions: find this run's version.
    versions = Client().list_model_versions("mpnas", size=100).items
    mine = [v for v in versions if ok.id in v.pipeline_run_ids.values()]
    assert len(mine) == 1
    mv = mine[0]
    assert 0.0 <= mv.run_metadata["mean_top1_val"] <= 1.0
    assert mpnas_main(["lineage", ok.name]) == 0
    out = capsys.readouterr().out
    dataset = ok.steps["ingest"].outputs["dataset"][0].load()
    assert dataset.content_hash in out and dataset.dvc_md5 in out
    assert "manifest.parquet" in out and "code commit: " in out
    for d, g in ok.steps["search"].outputs["genotypes"][0].load().root.items():
        assert f"{d}: {' '.join(g)}" in out
    assert "model v" in out and "from train <- dataset, genotypes" in out
    assert "mean_top1_val" in out and "mlflow run: " in out and "mlflow run: None" not in out
    assert "'method': 'mpnas'" in out  # the MLflow run's tags were read
    assert "\nconfig:\n  name: smoke\n" in out and "steps: 8" in out


@pytest.mark.slow
def test_mlflow_dataset_input_and_logged_model_linked_to_zenml(smoke_runs, mlflow_uri):
    """Each run (the cached rerun too) has one dataset input (the prepared data, digest = content hash) and one
    logged model; the MLflow model names the ZenML model version and the version's metadata names the model."""
    import mlflow
    from zenml.client import Client

    failed, ok = smoke_runs
    client = mlflow.MlflowClient(tracking_uri=mlflow_uri)
    exp = client.get_experiment_by_name("mpnas_pipeline")
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"
    run = client.search_runs([exp.experiment_id], filter_string=f"attributes.run_name = '{ok.name}'")[0]
    dataset = ok.steps["ingest"].outputs["dataset"][0].load()
    inputs = run.inputs.dataset_inputs
    assert len(inputs) == 1 and inputs[0].dataset.digest == dataset.content_hash[:32]
    assert json.loads(inputs[0].dataset.source)["dvc_md5"] == dataset.dvc_md5
    assert set(json.loads(inputs[0].dataset.profile)["domains"]) == {"aircraft", "digits8", "flowers"}
    models = [m for m in client.search_logged_models([exp.experiment_id]) if m.source_run_id == run.info.run_id]
    assert len(models) == 1
    mv = Client().get_model_version("mpnas", ok.steps["register"].outputs["registration"][0].load()["version"])
    assert models[0].tags["zenml.model_version_id"] == str(mv.id)
    assert mv.run_metadata["mlflow_model_id"] == models[0].model_id
    assert mv.run_metadata["mlflow_run_id"] == run.info.run_id
    failed_run = client.search_runs([exp.experiment_id], filter_string=f"attributes.run_name = '{failed.name}'")[0]
    assert len(failed_run.inputs.dataset_inputs) == 1  # ingest logs it before the report step fails


@pytest.mark.slow
def test_step_contracts_are_typed_json_artifacts(smoke_runs):
    """The dataset, genotypes and config sections cross step boundaries as pydantic models; ZenML stores the
    artifacts as JSON, and no artifact of the run is a pickle."""
    from steps.contracts import DatasetRef, Genotypes, SearchSections

    _, ok = smoke_runs
    dataset = ok.steps["ingest"].outputs["dataset"][0]
    genotypes = ok.steps["search"].outputs["genotypes"][0]
    assert isinstance(dataset.load(), DatasetRef) and isinstance(genotypes.load(), Genotypes)
    for artifact in (dataset, genotypes):
        assert artifact.materializer.import_path.endswith("PydanticMaterializer"), artifact.materializer
        assert {p.name for p in Path(artifact.uri).iterdir()} == {"data_v2.json"}
    for name, step in ok.steps.items():
        for versions in step.outputs.values():
            for artifact in versions:
                assert "pickle" not in artifact.materializer.import_path.lower(), (name, artifact.materializer)
    params = ok.steps["search"].config.parameters["config"]
    assert set(params) == {"name", "seed", "data", "space", "search"}  # only what the step uses: precise caching
    assert SearchSections.model_validate(params).search.steps == 8
