"""Issue 13 regressions: `zenml pipeline run -c` with a plain mpnas config or a misspelt top-level key is refused at
compile time naming the file (it used to run the built-in defaults), and DVC's own reason reaches the user."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mpnas.config import ConfigError, load_config

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("kind", ["plain", "typo"])
def test_run_config_without_parameters_config_is_refused_at_compile_time(zenml_stack, tmp_path, kind):
    from zenml.client import Client

    from pipelines.mpnas_pipeline import mpnas_pipeline

    raw = yaml.safe_load((ROOT / "configs" / "smoke.yaml").read_text())
    if kind == "plain":
        raw = raw["parameters"]["config"]  # an mpnas config, as `mpnas search -c` takes
    else:
        raw["paramters"] = raw.pop("parameters")
    path = tmp_path / f"{kind}.yaml"
    path.write_text(yaml.safe_dump(raw))
    runs_before = Client().list_pipeline_runs(size=1).total
    with pytest.raises(ConfigError) as err:
        mpnas_pipeline.with_options(config_path=str(path))()
    msg = str(err.value)
    assert str(path) in msg
    assert ("'paramters'" in msg) if kind == "typo" else ("unknown top-level key" in msg or "parameters.config" in msg)
    assert Client().list_pipeline_runs(size=1).total == runs_before


def test_shipped_run_configs_pass_the_file_check():
    from pipelines.config import check_run_config_file

    for path in sorted((ROOT / "configs").glob("*.yaml")):
        check_run_config_file(path)


def test_dvc_stage_failure_shows_dvcs_reason(tmp_path):
    from steps.ingest import dvc_prepare

    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    dvc = str(Path(sys.executable).parent / "dvc")
    subprocess.run([dvc, "init", "-q", "--no-scm"], cwd=tmp_path, env=env, check=True)
    subprocess.run([dvc, "stage", "add", "-n", "other", "-o", "data/prepared/x", "echo hi"], cwd=tmp_path, env=env,
                   check=True, capture_output=True)
    cfg = load_config(None, ["data.prepared_dir=data/prepared/x"])
    with pytest.raises(RuntimeError, match="already specified in stage: 'other'"):
        dvc_prepare(cfg, tmp_path)
