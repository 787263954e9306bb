"""`mpnas lineage [TARGET]`: where a model (or pipeline run) came from, from ZenML's records and the MLflow run.

TARGET is a model version of `mpnas` (`3`, `mpnas:3`, or a stage: `production`, `staging`, `latest`) or a pipeline
run name/id; default: the latest `mpnas` model version. Prints the data version (content hash, DVC md5, manifest),
the config, the code commit, the search run and genotypes, every parent artifact, the metrics and the MLflow run.
ZenML and MLflow are imported lazily: this is a front-end to the pipelines' records, not part of the library.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any, Optional

import yaml


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("lineage", help="show the lineage of a model version or pipeline run",
                       description=__doc__.split("\n\n")[1])
    p.add_argument("target", nargs="?", default="latest",
                   help="model version (N, mpnas:N, production, staging, latest) or pipeline run name/id")
    p.add_argument("--model", default="mpnas", help="Model Control Plane model name (default: mpnas)")
    p.add_argument("--json", action="store_true", help="print the lineage as JSON")
    p.set_defaults(func=_run)


def project_state_defaults(root: Path = Path.cwd()) -> None:
    """Use the project's ZenML/MLflow state (as `make` does) when the environment names none."""
    if "ZENML_CONFIG_PATH" not in os.environ and (root / ".zen-config").is_dir():
        os.environ["ZENML_CONFIG_PATH"] = str(root / ".zen-config")
    os.environ.setdefault("ZENML_ANALYTICS_OPT_IN", "false")
    if "MLFLOW_TRACKING_URI" not in os.environ and (root / "mlruns" / "mlflow.db").is_file():
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{root / 'mlruns' / 'mlflow.db'}"


def _resolve(client: Any, target: str, model: str) -> tuple[Any, Optional[Any]]:
    """(pipeline run, model version or None) for a TARGET."""
    name, _, version = target.rpartition(":") if ":" in target else (model, "", target)
    try:
        mv = client.get_model_version(name or model, version)
    except (KeyError, ValueError, RuntimeError):
        mv = None
    if mv is not None:
        art = mv.get_artifact("model")
        if art is not None and art.producer_pipeline_run_id is not None:
            return client.get_pipeline_run(art.producer_pipeline_run_id), mv
        runs = list(mv.pipeline_run_ids.values())
        if not runs:
            raise ValueError(f"model version {mv.model.name}:{mv.number} has no pipeline run")
        return client.get_pipeline_run(runs[-1]), mv
    try:
        return client.get_pipeline_run(target), None
    except KeyError:
        raise ValueError(f"{target!r} is neither a version of model {model!r} nor a pipeline run") from None


def _load(artifact: Any) -> Any:
    """The artifact's value; a typed step contract (a pydantic model) as its plain JSON data."""
    try:
        value = artifact.load()
        return value.model_dump(mode="json") if hasattr(value, "model_dump") else value
    except Exception as exc:  # noqa: BLE001 - lineage still prints the record when a payload cannot be read
        return f"<unreadable: {exc}>"


def collect(target: str = "latest", model: str = "mpnas") -> dict:
    """Lineage of TARGET as a plain dict (what `mpnas lineage --json` prints)."""
    project_state_defaults()
    from zenml.client import Client

    client = Client()
    run, mv = _resolve(client, target, model)
    steps = run.steps
    out: dict[str, Any] = {"pipeline": run.pipeline.name if run.pipeline else None, "run": run.name,
                           "run_id": str(run.id), "status": str(run.status.value)}
    if mv is not None:
        out["model_version"] = {"name": mv.model.name, "number": mv.number,
                                "stage": mv.stage.value if hasattr(mv.stage, "value") else mv.stage,
                                "metadata": {k: v for k, v in mv.run_metadata.items()}}
    params = run.config.parameters or {}
    out["config"] = params.get("config") if params.get("config") is not None else params
    artifacts, mlflow_run = [], None
    for name, s in steps.items():
        md = s.run_metadata
        if mlflow_run is None and "mlflow_run_id" in md:
            mlflow_run = {"run_id": md["mlflow_run_id"], "experiment_id": md.get("mlflow_experiment_id"),
                          "tracking_uri": str(md.get("experiment_tracker_url", ""))}
        for out_name, versions in s.outputs.items():
            for av in versions:
                artifacts.append({"name": out_name, "version": str(av.version), "id": str(av.id),
                                  "type": str(av.type.value), "producer_step": name, "status": str(s.status.value),
                                  "uri": av.uri, "inputs": sorted(s.inputs)})
    out["artifacts"] = artifacts

    def output(step_prefix: str, name: str) -> Any:
        for sname, s in steps.items():
            if sname.startswith(step_prefix) and name in s.outputs:
                return _load(s.outputs[name][0])
        return None

    out["data_version"] = output("ingest", "dataset")
    search_run = output("search", "search_run")
    out["search"] = {"step": next((n for n in steps if n.startswith("search")), None),
                     "run_dir": getattr(search_run, "path", None),
                     "summary": search_run.json("summary.json") if getattr(search_run, "file", None)
                     and search_run.file("summary.json").is_file() else None,
                     "genotypes": output("search", "genotypes") or output("production_architecture", "genotypes")}
    metrics = output("evaluate", "metrics")
    if isinstance(metrics, dict):
        keep = ("method", "dataset", "mean_top1_val", "mean_top1_test", "decathlon_score", "params_total",
                "flops_union", "jaccard_mean_off_diagonal")
        out["metrics"] = {k: metrics.get(k) for k in keep} | {
            "per_domain": {d: {k: v.get(k) for k in ("top1_val", "top1_test")} for d, v in metrics["domains"].items()}}
    out["promotion"] = output("promote", "promotion") or output("register", "registration")
    out["report_dir"] = output("report", "report_dir") or None
    if mlflow_run is not None:
        mlflow_run.update(_mlflow_details(mlflow_run["run_id"], mlflow_run["tracking_uri"]))
    out["mlflow"] = mlflow_run
    out["code_commit"] = (mlflow_run or {}).get("tags", {}).get("git_commit")
    return out


def _mlflow_details(run_id: str, tracking_uri: str) -> dict:
    import mlflow

    try:
        r = mlflow.MlflowClient(tracking_uri=tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")).get_run(run_id)
    except Exception as exc:  # noqa: BLE001 - a missing MLflow store should not hide the ZenML lineage
        return {"error": str(exc)}
    return {"run_name": r.info.run_name, "experiment_id": r.info.experiment_id,
            "tags": {k: v for k, v in r.data.tags.items() if not k.startswith("mlflow.")},
            "n_metrics": len(r.data.metrics), "n_params": len(r.data.params)}


def render(lin: dict) -> str:
    """Human-readable lineage."""
    lines = [f"pipeline run: {lin['run']} ({lin['pipeline']}, {lin['status']}, id {lin['run_id']})"]
    if "model_version" in lin:
        mv = lin["model_version"]
        lines.append(f"model version: {mv['name']}:{mv['number']} stage={mv['stage']} "
                     f"mean_top1_val={mv['metadata'].get('mean_top1_val')}")
    dv = lin.get("data_version") or {}
    lines += ["", "data version:",
              f"  path: {dv.get('path')}", f"  content hash: {dv.get('content_hash')}",
              f"  dvc: stage {dv.get('dvc_stage')} md5 {dv.get('dvc_md5')} ({dv.get('dvc_lock')})",
              f"  manifest: {dv.get('manifest')}",
              "", f"code commit: {lin.get('code_commit')}", "", "search:",
              f"  step: {lin['search']['step']}  run dir: {lin['search']['run_dir']}", "  genotypes:"]
    for d, g in (lin["search"]["genotypes"] or {}).items():
        lines.append(f"    {d}: {' '.join(g)}")
    lines += ["", "artifacts (producer step <- its inputs):"]
    for a in lin["artifacts"]:
        lines.append(f"  {a['name']} v{a['version']} [{a['type']}] from {a['producer_step']} "
                     f"<- {', '.join(a['inputs']) or '-'}  {a['uri']}")
    if lin.get("metrics"):
        lines += ["", "metrics:", *("  " + l for l in json.dumps(lin["metrics"], indent=2).splitlines())]
    if lin.get("promotion"):
        lines += ["", f"registration/promotion: {json.dumps(lin['promotion'], default=str)}"]
    if lin.get("report_dir"):
        lines.append(f"report: {lin['report_dir']}")
    ml = lin.get("mlflow") or {}
    lines += ["", f"mlflow run: {ml.get('run_id')} (experiment {ml.get('experiment_id')}, "
                  f"{ml.get('run_name')}) tags {ml.get('tags')}",
              "", "config:", *("  " + l for l in yaml.safe_dump(lin["config"], sort_keys=False).splitlines())]
    return "\n".join(lines) + "\n"


def _run(args: argparse.Namespace) -> int:
    lin = collect(args.target, args.model)
    print(json.dumps(lin, indent=2, default=str) if args.json else render(lin), end="" if not args.json else "\n")
    return 0
