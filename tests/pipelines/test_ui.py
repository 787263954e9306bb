"""`make ui` (MLflow) and `make dashboard` (ZenML) served on free ports and loaded in a real headless Chromium
against the finished smoke run: the pages are rendered by the UIs' JavaScript, not just served.

Skipped with the reason when no Chromium is installed (the system package `chromium`; `make setup` names it)."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import pytest

from pipelines.bootstrap import browser

ROOT = Path(__file__).resolve().parents[2]
BROWSER = browser()
pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    BROWSER is None, reason="no Chromium on the PATH: install the system package `chromium` (apt-get install chromium)")]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serve(target: str, port_var: str, **make_vars: str) -> Iterator[tuple[str, Callable[[], str]]]:
    """`make TARGET PORT_VAR=<free port> ...` in its own process group, until its URL answers; yields the URL and a
    function returning what make printed so far; stopped afterwards."""
    port = free_port()
    args = ["make", "--no-print-directory", target, f"{port_var}={port}", *(f"{k}={v}" for k, v in make_vars.items())]
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen(args, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                urllib.request.urlopen(url, timeout=5).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    pytest.fail(f"`{' '.join(args)}` did not serve {url}:\n{log.read().decode(errors='replace')}")
                time.sleep(1)
        def output() -> str:
            log.seek(0)
            return log.read().decode(errors="replace")

        yield url, output
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


def page_text(url: str, *expected: str, tries: int = 4) -> str:
    """The visible text of `url` after Chromium ran its scripts; retried with a longer budget until every
    `expected` string shows (a shared CPU makes the single-page apps slow to fetch their data)."""
    text = ""
    for attempt in range(tries):
        with tempfile.TemporaryDirectory() as profile:
            res = subprocess.run([BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                                  f"--user-data-dir={profile}", f"--virtual-time-budget={10000 * (attempt + 1)}",
                                  "--dump-dom", url], capture_output=True, text=True, timeout=240)
        html = re.sub(r"<(script|style)\b.*?</\1>", " ", res.stdout, flags=re.S)
        text = " ".join(re.sub(r"<[^>]+>", " ", html).split())
        if all(e in text for e in expected):
            return text
    pytest.fail(f"{url}: {', '.join(e for e in expected if e not in text)} not shown; the page said: {text[:1500]}")


def test_mlflow_ui_opens_on_runs_with_dataset_and_logged_model(smoke_runs, mlflow_uri):
    """The link `make ui` prints opens MLflow's model-training view: the experiment's runs table with the dataset
    column filled, and the run page lists the dataset input and the logged model (not the GenAI overview)."""
    import mlflow

    _, ok = smoke_runs
    client = mlflow.MlflowClient(tracking_uri=mlflow_uri)
    exp = client.get_experiment_by_name("mpnas_pipeline")
    assert exp.tags.get("mlflow.experimentKind") == "custom_model_development"
    run = client.search_runs([exp.experiment_id], filter_string=f"attributes.run_name = '{ok.name}'")[0]
    dataset = run.inputs.dataset_inputs[0].dataset
    with serve("ui", "UI_PORT", MLFLOW_TRACKING_URI=mlflow_uri) as (url, output):
        printed = re.search(r"MLflow UI: (\S+)", output()).group(1)
        assert printed.startswith(url) and "workflowType=machine_learning" in printed
        assert "mpnas_pipeline" in page_text(printed, "mpnas_pipeline")
        query = printed.split("?", 1)[1]
        experiment = page_text(f"{url}/#/experiments/{exp.experiment_id}?{query}", ok.name, dataset.name)
        assert experiment.startswith("Runs - Experiment") and "Token Usage" not in experiment
        run_page = page_text(f"{url}/#/experiments/{exp.experiment_id}/runs/{run.info.run_id}?{query}",
                             "Logged models (1)", dataset.name)
        assert re.search(r"Logged models \(1\).*\bmpnas\b", run_page)


def test_zenml_dashboard_lists_the_run(smoke_runs, zenml_stack):
    _, ok = smoke_runs
    with serve("dashboard", "DASHBOARD_PORT", ZENML_CONFIG_PATH=os.environ["ZENML_CONFIG_PATH"]) as (url, _):
        text = page_text(f"{url}/projects/default/runs", ok.name)
        assert "mpnas_pipeline" in text
