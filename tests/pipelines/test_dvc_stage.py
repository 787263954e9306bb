"""The ingest step's DVC stage: generated from the config, depends on the data code, portable, and clean after it ran.

Runs the real `dvc` in a throw-away workspace that is a git checkout (like the project), without ZenML."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mpnas.config import MpnasConfig
from steps.ingest import DATA_CODE, dvc_prepare

BIN = Path(sys.executable).parent


def _dvc(ws: Path, *args: str) -> str:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    res = subprocess.run([str(BIN / "dvc"), *args], cwd=ws, env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    return res.stdout


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """A git checkout holding a copy of the data code (so the stage's code dependency lies inside it)."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    shutil.copytree(DATA_CODE, tmp_path / "mpnas" / "data", ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / ".gitignore").write_text("/data/\n/dvc.yaml\n/dvc.lock\n/.dvc/tmp/\n")
    return tmp_path


def test_stage_depends_on_code_is_portable_and_clean(workspace: Path, monkeypatch: pytest.MonkeyPatch):
    import steps.ingest as ingest

    monkeypatch.setattr(ingest, "DATA_CODE", workspace / "mpnas" / "data")
    cfg = MpnasConfig.model_validate({"name": "tiny", "data": {
        "source": "embedded", "domains": ["digits8"], "prepared_dir": "data/prepared/tiny", "size": 12, "crop": 12,
        "max_train_per_domain": 24}})
    version = dvc_prepare(cfg, workspace)
    stage = yaml.safe_load((workspace / "dvc.yaml").read_text())["stages"][version["dvc_stage"]]
    assert "mpnas/data" in stage["deps"]
    lock = (workspace / "dvc.lock").read_text()
    assert str(workspace) not in lock and str(workspace) not in (workspace / "dvc.yaml").read_text()
    assert "up to date" in _dvc(workspace, "status")
    git = subprocess.run(["git", "status", "--porcelain"], cwd=workspace, capture_output=True, text=True).stdout
    assert all(not line.endswith(("dvc.yaml", "dvc.lock")) for line in git.splitlines()), git
    again = dvc_prepare(cfg, workspace)
    assert again["dvc_md5"] == version["dvc_md5"]
    with open(workspace / "mpnas" / "data" / "prepare.py", "a") as f:  # a code change makes the stage stale
        f.write("\n# changed\n")
    assert "mpnas/data" in _dvc(workspace, "status")
