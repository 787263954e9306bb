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
from typing import Iterator

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


class Server:
    """`make TARGET PORT_VAR=<free port> ...` started in its own process group; `url` and what make printed."""

    def __init__(self, target: str, port_var: str, **make_vars: str):
        port = free_port()
        self.args = ["make", "--no-print-directory", target, f"{port_var}={port}",
                     *(f"{k}={v}" for k, v in make_vars.items())]
        self.url = f"http://127.0.0.1:{port}"
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(self.args, cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def answers(self) -> bool:
        """True once the URL answers; fails the test with make's output when the server died."""
        try:
            urllib.request.urlopen(self.url, timeout=5).close()
            return True
        except OSError:
            if self.proc.poll() is not None:
                pytest.fail(f"`{' '.join(self.args)}` exited before serving {self.url}:\n{self.output()}")
            return False

    def stop(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:  # it had already exited
            pass
        self.log.close()


@contextmanager
def serve_all(**servers: tuple[str, dict[str, str]]) -> Iterator[dict[str, Server]]:
    """Start every `name=(PORT_VAR, make variables)` target at once (their start-ups overlap, which the servers
    spend importing on separate cores), wait until every URL answers, stop them all afterwards."""
    started: dict[str, Server] = {}
    try:
        for target, (port_var, make_vars) in servers.items():
            started[target] = Server(target, port_var, **make_vars)
        deadline = time.monotonic() + 180
        waiting = dict(started)
        while waiting:
            waiting = {k: s for k, s in waiting.items() if not s.answers()}
            if waiting and time.monotonic() > deadline:
                pytest.fail("; ".join(f"`{' '.join(s.args)}` did not serve {s.url}:\n{s.output()}"
                                      for s in waiting.values()))
            if waiting:
                time.sleep(1)
        yield started
    finally:
        for server in started.values():
            server.stop()


@pytest.fixture(scope="module")
def servers(smoke_runs, mlflow_uri, zenml_stack) -> Iterator[dict[str, Server]]:
    """`make ui` (MLflow) and `make dashboard` (ZenML) serving the finished smoke run, shared by this module."""
    with serve_all(ui=("UI_PORT", {"MLFLOW_TRACKING_URI": mlflow_uri}),
                   dashboard=("DASHBOARD_PORT", {"ZENML_CONFIG_PATH": os.environ["ZENML_CONFIG_PATH"]})) as started:
        yield started


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


def test_mlflow_ui_opens_on_runs_with_dataset_and_logged_model(smoke_runs, mlflow_uri, servers):
    """The link `make ui` prints opens MLflow's model-training view: the experiment's runs table with the dataset
    column filled, and the run page lists the dataset input and the logged model (not the GenAI overview)."""
    import mlflow

    _, ok = smoke_runs
    client = mlflow.MlflowClient(tracking_uri=mlflow_uri)
    exp = client.get_experiment_by_name("mpnas_pipeline")
    assert exp.tags.get("mlflow.experimentKind") == "custom_model_development"
    run = client.search_runs([exp.experiment_id], filter_string=f"attributes.run_name = '{ok.name}'")[0]
    dataset = run.inputs.dataset_inputs[0].dataset
    url = servers["ui"].url
    printed = re.search(r"MLflow UI: (\S+)", servers["ui"].output()).group(1)
    assert printed.startswith(url) and "workflowType=machine_learning" in printed
    assert "mpnas_pipeline" in page_text(printed, "mpnas_pipeline")
    query = printed.split("?", 1)[1]
    experiment = page_text(f"{url}/#/experiments/{exp.experiment_id}?{query}", ok.name, dataset.name)
    assert experiment.startswith("Runs - Experiment") and "Token Usage" not in experiment
    run_page = page_text(f"{url}/#/experiments/{exp.experiment_id}/runs/{run.info.run_id}?{query}",
                         "Logged models (1)", dataset.name)
    assert re.search(r"Logged models \(1\).*\bmpnas\b", run_page)


def test_zenml_dashboard_lists_the_run(smoke_runs, zenml_stack, servers):
    _, ok = smoke_runs
    text = page_text(f"{servers['dashboard'].url}/projects/default/runs", ok.name)
    assert "mpnas_pipeline" in text
