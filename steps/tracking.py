"""MLflow logging from inside steps (the stack's MLflow tracker has already opened the run) and git/data tags."""

from __future__ import annotations

import json
import math
import subprocess
import warnings
from pathlib import Path
from typing import Any, Optional

import mlflow

from mpnas.config import MpnasConfig, flatten
from mpnas.loop import OnLog
from steps.contracts import DatasetRef

ROOT = Path(__file__).resolve().parents[1]
_MAX_PARAM = 500  # MLflow's param value limit is 6000 chars; long lists are truncated for display only


def git_commit() -> str:
    """The code commit (with a `+dirty` suffix when the tree has uncommitted changes), or `unknown`."""
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, check=True).stdout.strip()
        return rev.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def active() -> bool:
    return mlflow.active_run() is not None


def log_config(cfg: MpnasConfig, scope: str) -> None:
    """Flattened config as params. Several steps of one run log into the same MLflow run and MLflow refuses to
    change a param, so a key already logged with another value (a baseline's search.mode) goes under `scope.`, and
    when that too holds another value (the same step for a third seed of a comparison), under `scope_seed<N>.`.
    A key that still conflicts is left out with a warning: a param must never fail a long run. Steps running side by
    side (pipelines/parallel_orchestrator.py) may both claim a free key: the one refused reads the run again and
    places its params anew."""
    if not active():
        return
    mlflow.set_tag("git_commit", git_commit())
    for attempt in range(5):
        params = _new_params(cfg, scope, mlflow.get_run(run_id()).data.params)
        try:
            items = list(params.items())
            for i in range(0, len(items), 100):
                mlflow.log_params(dict(items[i:i + 100]))
            return
        except mlflow.exceptions.MlflowException as exc:
            if "Changing param values is not allowed" not in str(exc) or attempt == 4:
                raise


def _new_params(cfg: MpnasConfig, scope: str, existing: dict[str, str]) -> dict[str, str]:
    """The params to log: each config key under the first name that is free or already holds its value."""
    params = {}
    for k, v in flatten(cfg).items():
        v = str(v)[:_MAX_PARAM]
        for key in (k, f"{scope}.{k}", f"{scope}_seed{cfg.seed}.{k}"):
            if existing.get(key, v) == v:
                if key not in existing:
                    params[key] = v
                break
        else:
            warnings.warn(f"MLflow param {k}={v!r} of {scope} not logged: every scoped name already holds another value")
    return params


def set_tags(tags: dict[str, Any]) -> None:
    if active():
        mlflow.set_tags({k: str(v) for k, v in tags.items()})


def log_metrics(metrics: dict[str, Any], step: Optional[int] = None, prefix: str = "") -> None:
    """Log every finite number of a (possibly nested) dict as `prefix/key/sub`."""
    if not active():
        return
    flat = {}
    for k, v in flatten(metrics).items() if isinstance(metrics, dict) else []:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            continue
        flat[_metric_name(f"{prefix}{k}")] = float(v)
    if flat:
        mlflow.log_metrics(flat, step=step)


def _metric_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "_-./ " else "_" for c in name)


def on_log(prefix: str) -> OnLog:
    """The progress hook of the search and training loops (`on_log(step, metrics)`, mpnas.loop) -> MLflow."""

    def hook(step: int, metrics: dict[str, float]) -> None:
        log_metrics(metrics, step=int(step), prefix=prefix)

    return hook


def log_dir(path: str | Path, artifact_path: Optional[str] = None) -> None:
    """Reports, figures and small JSON files as MLflow artifacts (weights and arrays stay in ZenML's store)."""
    if not active():
        return
    for f in sorted(Path(path).rglob("*")):
        if f.is_file() and f.suffix in (".json", ".md", ".png", ".svg", ".yaml", ".csv", ".txt"):
            rel = f.parent.relative_to(path)
            sub = "/".join(p for p in (artifact_path, str(rel) if str(rel) != "." else None) if p)
            mlflow.log_artifact(str(f), artifact_path=sub or None)


def run_id() -> Optional[str]:
    run = mlflow.active_run()
    return run.info.run_id if run else None


# ------------------------------------------------------------------------------------------- MLflow dataset input
DIGEST_CHARS = 32  # MLflow caps a dataset digest at 36 characters: the first 32 hex digits of the content hash


def dataset_input(dataset: DatasetRef) -> "mlflow.data.dataset.Dataset":
    """The prepared data as an MLflow dataset: name = its directory, digest = its content hash, source = the DVC
    stage and md5 that produced it, profile = the per-domain split counts, schema = the image and label arrays."""
    import numpy as np
    from mlflow.data.schema import TensorDatasetSchema
    from mlflow.types.schema import Schema, TensorSpec

    from mpnas.data.prepared import PreparedDataset

    ds = PreparedDataset(dataset.path)
    domains = list(dataset.domains)
    profile = {"content_hash": ds.content_hash, "image_size": ds.size,
               "domains": {d: {**ds.info(d).split_sizes, "classes": ds.num_classes(d)} for d in domains},
               "images": sum(sum(ds.info(d).split_sizes.values()) for d in domains)}
    schema = TensorDatasetSchema(
        features=Schema([TensorSpec(np.dtype("uint8"), (-1, ds.size, ds.size, 3), "image")]),
        targets=Schema([TensorSpec(np.dtype("int64"), (-1,), "label")]))
    source = DvcStageSource(stage=str(dataset.dvc_stage), md5=str(dataset.dvc_md5), path=dataset.path,
                            lock=dataset.dvc_lock or "")
    return PreparedData(source=source, name=dataset.name,
                        digest=ds.content_hash[:DIGEST_CHARS], schema=schema, profile=profile)


def log_dataset(dataset: DatasetRef, context: str = "training") -> None:
    """Log the prepared data as this run's dataset input (MLflow keeps one entry per dataset and run)."""
    if active():
        mlflow.log_input(dataset_input(dataset), context=context)


def _dataset_classes():
    from mlflow.data.dataset_source import DatasetSource
    from mlflow.data.meta_dataset import MetaDataset

    class DvcStageSource(DatasetSource):
        """Where prepared data came from: the DVC stage (in the workspace's dvc.yaml) and the md5 dvc.lock records."""

        def __init__(self, stage: str, md5: str, path: str, lock: str = ""):
            self.stage, self.md5, self.path, self.lock = stage, md5, path, lock

        @staticmethod
        def _get_source_type() -> str:
            return "dvc"

        def load(self) -> str:
            return self.path

        @staticmethod
        def _can_resolve(raw_source: Any) -> bool:
            return False

        @classmethod
        def _resolve(cls, raw_source: Any) -> "DvcStageSource":
            raise NotImplementedError("a DVC stage source is built from the ingest step's dataset, not resolved")

        def to_dict(self) -> dict[str, Any]:
            return {"dvc_stage": self.stage, "dvc_md5": self.md5, "path": self.path, "dvc_lock": self.lock}

        @classmethod
        def from_dict(cls, d: dict[Any, Any]) -> "DvcStageSource":
            return cls(d["dvc_stage"], d["dvc_md5"], d["path"], d.get("dvc_lock", ""))

    class PreparedData(MetaDataset):
        """A MetaDataset (the arrays stay in the DVC workspace) that also carries a profile."""

        def __init__(self, source, name, digest, schema, profile: dict):
            self._profile = profile
            super().__init__(source=source, name=name, digest=digest, schema=schema)

        @property
        def profile(self) -> dict:
            return self._profile

        def to_dict(self) -> dict[str, str]:
            return {**super().to_dict(), "profile": json.dumps(self._profile)}

    return DvcStageSource, PreparedData


DvcStageSource, PreparedData = _dataset_classes()


# --------------------------------------------------------------------------------------------- MLflow logged model
LOGGED_MODEL_NAME = "mpnas"


def log_model(model_dir: str | Path, export_dir: Optional[str | Path], dataset: DatasetRef,
              zenml_version: dict[str, str], metrics: dict[str, float]) -> Optional[str]:
    """Log the trained model as an MLflow logged model of the active run; return its model id.

    The PyTorch flavour is saved as `pt2` (torch.export, no pickle): it takes a float32 RGB batch scaled to [0, 1]
    (NCHW, the model's input size) and returns one logits tensor per domain, each domain normalising with its own
    mean/std inside, so the signature names one output per domain. The export's .pte and ONNX files and manifest are
    artifacts of the same model; tags carry the ZenML model version (whose metadata carries this model id back)."""
    if not active():
        return None
    import mlflow.pytorch

    from steps.mlflow_model import every_domain_model, export_files, input_example, signature

    net, wrapper = every_domain_model(model_dir, dataset.path)
    example = input_example(net, dataset.path)
    info = mlflow.pytorch.log_model(
        wrapper, name=LOGGED_MODEL_NAME, serialization_format="pt2", input_example=example,
        signature=signature(net, example), extra_files=export_files(export_dir),
        pip_requirements=[f"torch=={__import__('torch').__version__.split('+')[0]}", f"mlflow=={mlflow.__version__}"],
        validate_serving_input=False,  # pyfunc serving takes single-output models only (docs/contracts.md)
        tags={f"zenml.{k}": str(v) for k, v in zenml_version.items()},
        params={"domains": ",".join(net.domains), "input_size": str(net.space.input_size),
                "data_content_hash": dataset.content_hash})
    finite = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and math.isfinite(v)}
    if finite:
        mlflow.log_metrics(finite, model_id=info.model_id, dataset=dataset_input(dataset))
    return info.model_id
