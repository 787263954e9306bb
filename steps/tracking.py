"""MLflow logging from inside steps (the stack's MLflow tracker has already opened the run) and git/data tags."""

from __future__ import annotations

import math
import subprocess
from pathlib import Path
from typing import Any, Callable, Optional

import mlflow

from mpnas.config import MpnasConfig, flatten

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
    change a param, so a key already logged with another value (a baseline's search.mode) goes under `scope.`."""
    if not active():
        return
    mlflow.set_tag("git_commit", git_commit())
    existing = mlflow.get_run(run_id()).data.params
    params = {}
    for k, v in flatten(cfg).items():
        v = str(v)[:_MAX_PARAM]
        if k not in existing:
            params[k] = v
        elif existing[k] != v:
            params[f"{scope}.{k}"] = v
    items = list(params.items())
    for i in range(0, len(items), 100):
        mlflow.log_params(dict(items[i:i + 100]))


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


def on_log(prefix: str) -> Callable[..., None]:
    """The library's progress hook, `on_log(step, metrics)` (or `on_log(metrics)` with a `step` key) -> MLflow."""

    def hook(*args: Any, **kwargs: Any) -> None:
        if len(args) == 2:
            step, metrics = args
        else:
            metrics = dict(args[0] if args else kwargs)
            step = metrics.pop("step", None)
        log_metrics(metrics, step=None if step is None else int(step), prefix=prefix)

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
