"""The comparison pipeline: seven methods over two seeds on the same data into one table (mean ± std); seed 0 reuses
the main run's search from the cache; each seed's mpnas trains with that seed's mpnas_uniform evaluation as ABDP
reference (and without one under `abdp_reference: none`); a bad seed list stops the run before any step, naming the
file and field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from mpnas.config import ConfigError

ROOT = Path(__file__).resolve().parents[2]
METHODS = {"mpnas", "mpnas_uniform", "mpnas_null", "independent_nas", "multi_head_nas", "single_path_multi_head",
           "shared_domain_bn"}


@pytest.mark.slow
def test_comparison_table_over_seeds(smoke_runs, workspace, mlflow_uri):
    from zenml.client import Client

    from pipelines.comparison_pipeline import comparison_pipeline

    comparison_pipeline.with_options(config_path=str(ROOT / "configs" / "smoke.yaml"))(
        workspace=str(workspace), reports_root=str(workspace / "reports"), seeds=[0, 1])
    run = Client().get_pipeline_run(Client().list_pipeline_runs(sort_by="desc:created", size=1).items[0].id)
    assert run.status.value == "completed"
    assert run.steps["search_multi_path_seed0"].status.value == "cached"  # same search as the smoke mpnas run
    # mpnas now steers by mpnas_uniform's evaluation: not the smoke run's training (no reference) from the cache
    assert run.steps["train_mpnas_seed0"].status.value == "completed"
    assert run.steps["search_multi_path_seed1"].status.value == "completed"  # another seed is another search
    assert not any(n.startswith("search_uniform") for n in run.steps)  # mpnas_uniform shares the multi_path search
    result = json.loads((workspace / "reports" / run.name / "comparison.json").read_text())
    assert set(result["methods"]) == METHODS and result["seeds"] == [0, 1]
    m = result["methods"]
    for name, entry in m.items():
        assert entry["seeds"] == [0, 1] and len(entry["runs"]) == 2, name
        tests = [r["mean_top1_test"] for r in entry["runs"]]
        assert entry["mean_top1_test"] == pytest.approx(sum(tests) / 2), name
        assert entry["std_top1_test"] == pytest.approx(abs(tests[0] - tests[1]) / 2 ** 0.5), name
        for d, dom in entry["domains"].items():
            assert dom["top1_test"] == pytest.approx(sum(r["domains"][d]["top1_test"] for r in entry["runs"]) / 2)
        assert [r["train"]["seed"] for r in entry["runs"]] == [0, 1], name
    smoke_steps = yaml.safe_load((ROOT / "configs" / "smoke.yaml").read_text())["parameters"]["config"]["train"]["steps"]
    for name, curve in result["val_curves"].items():  # val top-1 against steps, from each run's history.parquet
        assert curve["seeds"] == 2 and curve["steps"][-1] == smoke_steps and len(curve["std"]) == len(curve["steps"])
    assert (workspace / "reports" / run.name / "figures" / "val_top1_vs_steps.png").stat().st_size > 0
    table = (workspace / "reports" / run.name / "comparison.md").read_text()
    assert all(f"| {name} |" in table for name in METHODS) and " ± " in table
    assert m["independent_nas"]["runs"][0]["sharing"]["share_nodes"] is False
    assert m["mpnas"]["runs"][0]["train"]["share_nodes"] is True
    assert m["shared_domain_bn"]["runs"][0]["bn_mode"] == "per_domain_affine"
    assert m["single_path_multi_head"]["runs"][0]["bn_mode"] == "per_domain"
    # shared_domain_bn: the reference path for every domain, per-domain BN rows: more parameters than the same path
    # with shared BN affine, by 2 x channels per BN and further domain
    assert m["shared_domain_bn"]["params_total"] > m["single_path_multi_head"]["params_total"]
    for seed in (0, 1):  # each seed's mpnas steered by its own seed's uniform run: the numbers the trainer read
        uniform = run.steps[f"evaluate_mpnas_uniform_seed{seed}"].outputs["metrics"][0].load()
        model = run.steps[f"train_mpnas_seed{seed}"].outputs["model"][0].load()
        lw = yaml.safe_load(model.file("train_config.yaml").read_text())["train"]["loss_weighting"]
        ref = json.loads(Path(lw["abdp"]["reference_metrics"]).read_text())
        assert json.loads(model.file("abdp_reference.json").read_text()) == ref  # the artifact carries it too
        assert lw["name"] == "abdp" and (ref["method"], ref["seed"]) == ("mpnas_uniform", seed)
        assert ref["model_hash"] == uniform["model_hash"] == m["mpnas_uniform"]["runs"][seed]["model_hash"]
        assert ref["train"]["train_top1_final"] == uniform["train"]["train_top1_final"] != {}
        assert {d: v["top1_val"] for d, v in ref["domains"].items()} == {
            d: v["top1_val"] for d, v in uniform["domains"].items()}
        assert m["mpnas"]["runs"][seed]["weighting"]["reference_metrics"] == lw["abdp"]["reference_metrics"]
    assert m["mpnas_null"]["runs"][0]["weighting"] == {"name": "abdp", "reference_metrics": None}
    assert m["mpnas_uniform"]["runs"][1]["weighting"]["name"] == "uniform"
    refs = result["summary"]["abdp_references"]
    assert refs["mpnas"] == {str(s): f"mpnas_uniform seed {s} (train_top1_final)" for s in (0, 1)}
    assert "mpnas_uniform" not in refs and refs["shared_domain_bn"]["1"].startswith("none")
    assert "| mpnas | 1 | mpnas_uniform seed 1 (train_top1_final) |" in table
    null_search = run.steps["search_multi_path_null_seed0"].outputs["search_run"][0].load()
    assert json.loads((Path(null_search.path) / "summary.json").read_text())["null_control"] is True
    for shared in ("multi_head", "fixed"):
        g = run.steps[f"search_{shared}_seed0"].outputs["genotypes"][0].load().root
        assert len({tuple(v) for v in g.values()}) == 1, shared  # one path for every domain
    import mlflow  # the data every method saw: the comparison run's MLflow dataset input

    client = mlflow.MlflowClient(tracking_uri=mlflow_uri)
    exp = client.get_experiment_by_name("comparison_pipeline")
    mlflow_run = client.search_runs([exp.experiment_id], filter_string=f"attributes.run_name = '{run.name}'")[0]
    dataset = run.steps["ingest"].outputs["dataset"][0].load()
    assert [i.dataset.digest for i in mlflow_run.inputs.dataset_inputs] == [dataset.content_hash[:32]]


def _invocations(tmp_path, extra=None, config=None, **params):
    """The compiled step invocations of one comparison run on the smoke config (nothing runs)."""
    from pipelines.comparison_pipeline import comparison_pipeline

    config = config or yaml.safe_load((ROOT / "configs" / "smoke.yaml").read_text())["parameters"]["config"]
    p = comparison_pipeline.with_options(extra=extra or {})
    p.prepare(config=config, workspace=str(tmp_path), reports_root=str(tmp_path / "reports"), **params)
    return p.invocations


def _reference_input(invocation):
    ref = invocation.input_artifacts.get("reference")
    return None if ref is None else (ref.invocation_id, ref.output_name)


def test_mpnas_takes_its_seeds_uniform_evaluation_as_reference(zenml_stack, tmp_path):
    inv = _invocations(tmp_path, seeds=[0, 1])
    for seed in (0, 1):
        assert _reference_input(inv[f"train_mpnas_seed{seed}"]) == (f"evaluate_mpnas_uniform_seed{seed}", "metrics")
        assert inv[f"train_mpnas_seed{seed}"].parameters["config"].train.loss_weighting.abdp.reference_metrics is None
    others = [n for n in inv if n.startswith("train_") and not n.startswith("train_mpnas_seed")]
    assert len(others) == 12 and not [n for n in others if _reference_input(inv[n])]
    compare = inv["compare"].input_artifacts
    assert [a.invocation_id for a in compare["models"]] == [a.invocation_id.replace("evaluate_", "train_")
                                                            for a in compare["metrics"]]


def test_abdp_reference_none_or_a_given_one_leaves_mpnas_without_the_uniform_input(zenml_stack, tmp_path):
    assert _reference_input(_invocations(tmp_path, {"comparison": {"abdp_reference": "none"}})["train_mpnas"]) is None
    ref = tmp_path / "given_metrics.json"
    ref.write_text(json.dumps({"domains": {"aircraft": {"top1_val": 0.5}}}))
    config = yaml.safe_load((ROOT / "configs" / "smoke.yaml").read_text())["parameters"]["config"]
    config["train"]["loss_weighting"] = {"name": "abdp", "abdp": {"reference_metrics": str(ref)}}
    train = _invocations(tmp_path, config=config)["train_mpnas"]
    assert _reference_input(train) is None  # the configured reference wins
    assert train.parameters["config"].train.loss_weighting.abdp.reference_metrics == ref
    assert _reference_input(_invocations(tmp_path, abdp_reference="uniform")["train_mpnas"]) is not None


def test_bad_seed_list_stops_before_any_step(zenml_stack, tmp_path):
    from zenml.client import Client

    from pipelines.comparison_pipeline import comparison_pipeline

    raw = yaml.safe_load((ROOT / "configs" / "smoke.yaml").read_text())
    raw["extra"] = {"comparison": {"seeds": [1, 1]}}
    bad = tmp_path / "bad_seeds.yaml"
    bad.write_text(yaml.safe_dump(raw))
    runs_before = Client().list_pipeline_runs(size=1).total
    with pytest.raises(ConfigError, match=r"(?s)bad_seeds\.yaml.*extra\.comparison\.seeds.*repeat a seed"):
        comparison_pipeline.with_options(config_path=str(bad))()
    raw["extra"] = {"comparison": {"seedz": [0]}}
    bad.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match=r"extra\.comparison\.seedz"):
        comparison_pipeline.with_options(config_path=str(bad))()
    assert Client().list_pipeline_runs(size=1).total == runs_before


@pytest.mark.parametrize("name", ["mini_real", "mini_real_quick"])
def test_mini_real_configs_ask_for_three_seeds(name):
    from pipelines.comparison_pipeline import resolve_seeds

    raw = yaml.safe_load((ROOT / "configs" / f"{name}.yaml").read_text())
    assert resolve_seeds(None, raw.get("extra"), 0) == [0, 1, 2]
    assert resolve_seeds([4], raw.get("extra"), 0) == [4]  # the pipeline parameter wins
    assert resolve_seeds(None, None, 7) == [7]
