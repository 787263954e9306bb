"""The prepared data as an MLflow dataset input and the trained model as an MLflow logged model (real sqlite store)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from mpnas.data.prepared import PreparedDataset
from mpnas.data.synthetic import make_synthetic
from mpnas.models.multipath import load_model, save_model
from steps.contracts import DatasetRef

DOMAINS = {"alpha": 3, "beta-2": 4}


@pytest.fixture(scope="module")
def data_and_model(tmp_path_factory):
    from tests.export.conftest import tiny_model

    data = make_synthetic(tmp_path_factory.mktemp("data") / "prepared", DOMAINS, per_class=4, size=16)
    ds = PreparedDataset(data)
    meta = {"domains": {d: {"classes": list(ds.info(d).classes), "mean": list(ds.info(d).mean),
                            "std": list(ds.info(d).std)} for d in DOMAINS}}
    model = save_model(tiny_model(), tmp_path_factory.mktemp("model") / "model", meta)
    export = tmp_path_factory.mktemp("export")
    (export / "onnx").mkdir()
    (export / "onnx" / "alpha.onnx").write_bytes(b"onnx")  # placeholders: only their presence is checked here
    (export / "model.pte").write_bytes(b"pte")
    (export / "manifest.json").write_text("{}")
    dataset = DatasetRef(path=str(data), name=data.name, content_hash=ds.content_hash, domains=list(DOMAINS),
                         dvc_stage="pipeline_tiny", dvc_md5="0123abcd.dir", dvc_lock="/ws/dvc.lock")
    return dataset, model, export


def test_dataset_input_and_logged_model(tmp_path, data_and_model, monkeypatch):
    import mlflow

    from steps import tracking

    dataset, model_dir, export = data_and_model
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    exp = mlflow.create_experiment("t", artifact_location=(tmp_path / "artifacts").as_uri())
    with mlflow.start_run(experiment_id=exp) as run:
        tracking.log_dataset(dataset)
        tracking.log_dataset(dataset)  # a second step of the same run: still one input
        model_id = tracking.log_model(model_dir, export, dataset, {"model": "mpnas", "model_version": "3"},
                                      {"mean_top1_val": 0.5})
    inputs = mlflow.get_run(run.info.run_id).inputs
    assert len(inputs.dataset_inputs) == 1
    ds = inputs.dataset_inputs[0].dataset
    assert ds.digest == dataset.content_hash[:32] and ds.source_type == "dvc"
    assert json.loads(ds.source)["dvc_md5"] == "0123abcd.dir"
    assert json.loads(ds.profile)["domains"]["beta-2"]["train"] == PreparedDataset(dataset.path).split_size(
        "beta-2", "train")

    logged = mlflow.get_logged_model(model_id)
    assert logged.source_run_id == run.info.run_id and logged.tags["zenml.model_version"] == "3"
    assert [m.key for m in logged.metrics] == ["mean_top1_val"]
    files = {Path(f.path).name for f in mlflow.MlflowClient().list_logged_model_artifacts(model_id)}
    assert {"MLmodel", "input_example.json"} <= files, files
    extra = mlflow.artifacts.download_artifacts(artifact_uri=f"{logged.artifact_location}/extra_files",
                                                dst_path=str(tmp_path / "x"))
    assert {"model.pte", "alpha.onnx", "manifest.json"} <= {p.name for p in Path(extra).iterdir()}

    info = mlflow.models.get_model_info(f"models:/{model_id}")
    assert [s.name for s in info.signature.outputs.inputs] == list(DOMAINS)
    loaded = mlflow.pytorch.load_model(f"models:/{model_id}")  # torch.export program: no pickle involved
    net = load_model(model_dir)
    x = torch.rand(3, 3, 16, 16)
    out = loaded(x)
    for i, d in enumerate(DOMAINS):
        mean = torch.tensor(net.meta["domains"][d]["mean"]).view(1, 3, 1, 1)
        std = torch.tensor(net.meta["domains"][d]["std"]).view(1, 3, 1, 1)
        with torch.no_grad():
            np.testing.assert_allclose(out[d].numpy(), net((x - mean) / std, d).numpy(), rtol=1e-4, atol=1e-5)


def test_one_step_logs_its_config_for_three_seeds_into_one_run(tmp_path, monkeypatch, tiny_config):
    """A comparison run logs every seed's search config into one MLflow run: the third seed (whose `seed` differs
    from both the run's and the scoped value) used to fail the step with MLflow's 'Changing param values'."""
    import mlflow

    from steps import tracking

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    exp = mlflow.create_experiment("seeds", artifact_location=(tmp_path / "artifacts").as_uri())
    with mlflow.start_run(experiment_id=exp) as run:
        for seed in (0, 1, 2, 2):  # the last: a retried step, same values again
            tracking.log_config(tiny_config(f"seed={seed}"), "search_fixed")
    params = mlflow.get_run(run.info.run_id).data.params
    assert (params["seed"], params["search_fixed.seed"], params["search_fixed_seed2.seed"]) == ("0", "1", "2")
    assert not any(k.startswith("search_fixed_seed2.") and k != "search_fixed_seed2.seed" for k in params)


def test_a_step_that_loses_a_param_race_places_its_params_again(tmp_path, monkeypatch, tiny_config):
    """Two steps side by side (parallel orchestrator) may both see `seed` free and both log it: the second is refused
    by MLflow, reads the run again and logs its value under the scoped name instead of failing the step."""
    import mlflow

    from steps import tracking

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    exp = mlflow.create_experiment("race", artifact_location=(tmp_path / "artifacts").as_uri())
    with mlflow.start_run(experiment_id=exp) as run:
        stale = mlflow.get_run(run.info.run_id)  # what the second step read before the first one logged
        tracking.log_config(tiny_config("seed=0"), "search_a")
        real_get_run, reads = mlflow.get_run, []

        def get_run(run_id):
            reads.append(run_id)
            return stale if len(reads) == 1 else real_get_run(run_id)

        monkeypatch.setattr(mlflow, "get_run", get_run)
        tracking.log_config(tiny_config("seed=1"), "search_b")
    params = real_get_run(run.info.run_id).data.params
    assert len(reads) == 2 and (params["seed"], params["search_b.seed"]) == ("0", "1")
