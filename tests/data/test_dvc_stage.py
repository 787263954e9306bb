"""DVC: a tiny prepare stage reproduces in a throw-away git repo, and `data_version` reads its lock entry.

Runs the real `dvc` (a project dependency) in a subprocess; mpnas itself never imports dvc.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mpnas.data.version import data_version

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def sh(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "DVC_NO_ANALYTICS": "1"}
    res = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, f"{' '.join(args)} failed:\n{res.stdout}\n{res.stderr}"
    return res


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    if shutil.which("git") is None or not (BIN / "dvc").exists():
        pytest.fail("git and the dvc console script are required for this test")
    sh(["git", "init", "-q"], tmp_path)
    sh([str(BIN / "dvc"), "init", "-q"], tmp_path)
    return tmp_path


def test_tiny_stage_repro_and_data_version(repo: Path):
    (repo / "params.yaml").write_text("tiny: {size: 12, seed: 1}\n")
    (repo / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"tiny": {
        "cmd": "mpnas data prepare --source embedded --domains digits8,texture --scale 0.01 --workers 1 "
               "--size ${tiny.size} --seed ${tiny.seed} --out data/prepared/tiny --overwrite",
        "params": ["tiny"], "outs": ["data/prepared/tiny"]}}}))
    sh([str(BIN / "dvc"), "repro", "-q"], repo)
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    md5 = lock["stages"]["tiny"]["outs"][0]["md5"]
    version = data_version(repo / "data" / "prepared" / "tiny")
    assert version["dvc_md5"] == md5 and version["dvc_stage"] == "tiny"
    assert len(version["content_hash"]) == 64
    again = sh([str(BIN / "dvc"), "repro"], repo)
    assert "didn't change" in again.stdout or "up to date" in again.stdout
    (repo / "params.yaml").write_text("tiny: {size: 12, seed: 2}\n")  # a param change re-runs with new data
    sh([str(BIN / "dvc"), "repro", "-q"], repo)
    assert data_version(repo / "data" / "prepared" / "tiny")["content_hash"] != version["content_hash"]


def test_data_version_without_dvc(tmp_path: Path):
    from mpnas.data.synthetic import make_synthetic

    make_synthetic(tmp_path / "ds")
    v = data_version(tmp_path / "ds")
    assert v["dvc_md5"] is None and len(v["content_hash"]) == 64
