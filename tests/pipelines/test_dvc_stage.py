"""The ingest step's DVC stage: defined in one place (prepare_stage), depends on the data code prepare runs (not on
other code), watches only the config values prepare reads, portable, not rewritten when nothing changed, and clean
in git after it ran.

Runs the real `dvc` in a throw-away workspace that is a git checkout (like the project), without ZenML."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import steps.ingest_dvc as ingest
from mpnas.config import MpnasConfig
from steps.ingest_dvc import CODE_ROOT, dvc_prepare, prepare_code, prepare_stage

BIN = Path(sys.executable).parent
TINY = {"name": "tiny", "data": {"source": "embedded", "domains": ["digits8"], "prepared_dir": "data/prepared/tiny",
                                 "size": 12, "crop": 12, "max_train_per_domain": 24}}


def _dvc(ws: Path, *args: str) -> str:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    res = subprocess.run([str(BIN / "dvc"), *args], cwd=ws, env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    return res.stdout


def _config(**data) -> MpnasConfig:
    return MpnasConfig.model_validate({**TINY, "data": {**TINY["data"], **data}})


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A git checkout holding a copy of mpnas/data and mpnas/utils (so the stage's code dependencies lie inside it;
    the stage's command still runs the installed mpnas)."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    for package in ("data", "utils", "cli"):
        shutil.copytree(CODE_ROOT / "mpnas" / package, tmp_path / "mpnas" / package,
                        ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / ".gitignore").write_text("/data/\n/dvc.yaml\n/dvc.lock\n/.dvc/tmp/\n")
    monkeypatch.setattr(ingest, "CODE_ROOT", tmp_path)
    return tmp_path


def test_prepare_code_is_what_prepare_imports():
    """Every mpnas.data/mpnas.utils module that importing the prepare command loads is a dependency of the stage,
    and the training-side data code is not (a loader change must not re-prepare the data)."""
    deps = {str(p.relative_to(CODE_ROOT)) for p in prepare_code()}
    assert {"mpnas/data/prepare.py", "mpnas/data/decathlon.py", "mpnas/data/embedded.py", "mpnas/data/images.py",
            "mpnas/data/imagefolder.py", "mpnas/data/sources.py", "mpnas/utils/io.py", "mpnas/cli/data.py"} <= deps
    assert not {"mpnas/data/loading.py", "mpnas/data/device.py", "mpnas/config.py"} & deps
    probe = ("import sys, mpnas.cli.data, mpnas.data.prepare, mpnas.data.version; print('\\n'.join(m for m in "
             "sys.modules if m.startswith(('mpnas.data', 'mpnas.utils'))))")
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.split()
    files = {str(ingest._module_file(CODE_ROOT, m).relative_to(CODE_ROOT)) for m in loaded}
    assert files <= deps, files - deps


def test_one_stage_definition_portable_and_only_prepare_fields_watched(workspace: Path):
    stage = prepare_stage(_config(), workspace)
    assert stage.entry["outs"] == ["data/prepared/tiny"]
    assert "mpnas/data/prepare.py" in stage.entry["deps"] and "mpnas/data/loading.py" not in stage.entry["deps"]
    assert str(workspace) not in yaml.safe_dump(stage.entry)
    watched = stage.entry["params"][0][stage.params_file]
    assert "data.size" in watched and "data.crop" not in watched and "data.augment" not in watched
    assert prepare_stage(_config(crop=8), workspace).entry == stage.entry
    assert prepare_stage(_config(size=16), workspace).params != stage.params


def test_stage_reruns_on_code_change_not_rewritten_and_clean(workspace: Path, capsys: pytest.CaptureFixture):
    cfg = _config()
    version = dvc_prepare(cfg, workspace)
    dvc_yaml = workspace / "dvc.yaml"
    stage = yaml.safe_load(dvc_yaml.read_text())["stages"][version["dvc_stage"]]
    assert stage == prepare_stage(cfg, workspace).entry  # what DVC wrote is the one definition, as is
    assert str(workspace) not in (workspace / "dvc.lock").read_text() and str(workspace) not in dvc_yaml.read_text()
    assert "up to date" in _dvc(workspace, "status")
    git = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=workspace,
                         capture_output=True, text=True).stdout
    assert all(not line.endswith(("dvc.yaml", "dvc.lock")) and " data/" not in line for line in git.splitlines()), git

    before = (dvc_yaml.read_bytes(), dvc_yaml.stat().st_mtime_ns)
    capsys.readouterr()
    again = dvc_prepare(_config(crop=8), workspace)  # a training-only field: same data, stage left alone
    assert again["dvc_md5"] == version["dvc_md5"]
    assert "up to date, reused" in capsys.readouterr().out
    assert (dvc_yaml.read_bytes(), dvc_yaml.stat().st_mtime_ns) == before
    assert "up to date" in _dvc(workspace, "status")

    with open(workspace / "mpnas" / "data" / "loading.py", "a") as f:  # not prepare's code: still up to date
        f.write("\n# changed\n")
    assert "up to date" in _dvc(workspace, "status")
    with open(workspace / "mpnas" / "data" / "images.py", "a") as f:  # prepare's code: the stage is stale
        f.write("\n# changed\n")
    status = _dvc(workspace, "status")
    assert version["dvc_stage"] in status and "mpnas/data/images.py" in status, status


def test_prepare_field_change_makes_the_stage_stale(workspace: Path):
    cfg = _config()
    stage = prepare_stage(cfg, workspace)
    ingest.ensure_dvc_repo(workspace)
    assert ingest.declare_stage(workspace, stage) is True
    assert ingest.declare_stage(workspace, stage) is False  # nothing changed: dvc.yaml untouched
    (workspace / "data" / "prepared" / "tiny").mkdir(parents=True)
    _dvc(workspace, "commit", "-f", stage.name)  # record the current state without running prepare
    assert "up to date" in _dvc(workspace, "status")
    ingest.declare_stage(workspace, prepare_stage(_config(size=16, crop=12), workspace))
    assert "data.size" in _dvc(workspace, "status")
