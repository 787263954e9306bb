"""Isolated ZenML/MLflow state for pipeline tests: a temp ZENML_CONFIG_PATH (set before zenml is imported), a temp
ZenML repository (so the project's .zen/ is never touched), a real sqlite MLflow store and a DVC workspace."""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STATE = Path(tempfile.mkdtemp(prefix="mpnas-pipeline-tests-"))
atexit.register(shutil.rmtree, STATE, ignore_errors=True)  # ~50 MB of stores and runs per session
MLFLOW_URI = f"sqlite:///{STATE / 'mlruns' / 'mlflow.db'}"  # ZenML's tracker resets the env var after each step
os.environ.update({
    "ZENML_CONFIG_PATH": str(STATE / "zen-config"),
    "ZENML_REPOSITORY_PATH": str(STATE / "zen-repo"),
    "ZENML_ANALYTICS_OPT_IN": "false",
    "ZENML_LOGGING_VERBOSITY": "WARN",
    "AUTO_OPEN_DASHBOARD": "false",
    "MLFLOW_TRACKING_URI": MLFLOW_URI,
})


@pytest.fixture(scope="session")
def zenml_stack() -> Path:
    """The mpnas_local stack (MLflow tracker on the temp sqlite store) registered in the temp ZenML store."""
    from zenml.client import Client
    from zenml.utils import source_utils

    from pipelines.stack import ensure_local_stack

    (STATE / "zen-repo").mkdir(exist_ok=True)
    Client.initialize(STATE / "zen-repo")
    source_utils.set_custom_source_root(str(ROOT))
    ensure_local_stack()
    return STATE


@pytest.fixture(scope="session")
def mlflow_uri() -> str:
    return MLFLOW_URI


@pytest.fixture(scope="session")
def workspace(zenml_stack: Path) -> Path:
    """A DVC repository (no git) holding data/, runs/ and reports/ for the pipeline runs of this session."""
    ws = zenml_stack / "workspace"
    ws.mkdir(exist_ok=True)
    dvc = str(Path(sys.executable).parent / "dvc")
    subprocess.run([dvc, "init", "-q", "--no-scm"], cwd=ws, check=True)
    subprocess.run([dvc, "config", "core.analytics", "false"], cwd=ws, check=True)
    return ws


SMOKE = str(ROOT / "configs" / "smoke.yaml")


@pytest.fixture(scope="session")
def smoke_runs(workspace):
    """(failed run, successful rerun) of the smoke pipeline: the report step of the first run fails (its reports
    root is a file), the rerun uses a real directory. Later pipeline tests reuse its cache and production model."""
    from zenml.client import Client

    from pipelines.mpnas_pipeline import mpnas_pipeline

    blocker = workspace / "reports-is-a-file"
    blocker.write_text("not a directory\n")
    with pytest.raises(RuntimeError, match="report"):
        mpnas_pipeline.with_options(config_path=SMOKE)(workspace=str(workspace), reports_root=str(blocker))
    failed = Client().list_pipeline_runs(sort_by="desc:created", size=1).items[0]
    mpnas_pipeline.with_options(config_path=SMOKE)(workspace=str(workspace), reports_root=str(workspace / "reports"))
    ok = Client().list_pipeline_runs(sort_by="desc:created", size=1).items[0]
    return Client().get_pipeline_run(failed.id), Client().get_pipeline_run(ok.id)
