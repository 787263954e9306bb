"""Shared fixtures: one tiny config (two stages, narrow widths, 16 px) so model, search and training tests run in
seconds. Test folders add only the overrides of their own section (tests/nas: search.*, tests/training: train.*)."""

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from mpnas.config import load_config

TESTS = Path(__file__).resolve().parent
RAM_DISK = Path("/dev/shm")


def use_ram_disk_for_temp_files(min_free: int = 2 << 30) -> None:
    """Temp files (tmp_path, the pipeline tests' ZenML/MLflow/DVC state, the embedded set `mpnas data prepare`
    draws before reading it back, in this process and its subprocesses) go to a RAM disk when there is one and
    TMPDIR is not set: on a VM disk every created file and sqlite commit costs about a millisecond (tests/pipelines
    without the comparison test: 129 s with TMPDIR=/tmp, 120 s here). What runs is unchanged; only where its
    scratch files lie."""
    if os.environ.get("TMPDIR") or not RAM_DISK.is_dir() or not os.access(RAM_DISK, os.W_OK | os.X_OK):
        return
    if shutil.disk_usage(RAM_DISK).free < min_free:
        return
    os.environ["TMPDIR"] = str(RAM_DISK)
    tempfile.tempdir = None  # gettempdir() reads TMPDIR again


use_ram_disk_for_temp_files()
# Folders whose tests share session fixtures too costly to build twice: the ZenML store, DVC workspace and smoke runs
# (tests/pipelines); the full ExecuTorch + ONNX export (tests/export). Listed longest first: they start first.
SHARED = ("pipelines", "export")

TINY = ["space.preset=null", "space.stem_width=8", "space.stem_stride=2", "space.stem_kernels=[3]",
        "space.stages=[{width: 8, layers: 2, stride: 1, act: relu}, {width: 16, layers: 2, stride: 2, act: hswish}]",
        "space.head_widths=[32, 48]", "space.kernels=[3, 5]", "space.expansions=[1, 2]", "space.se=[false, true]",
        "data.size=16", "data.crop=16"]


@pytest.fixture
def tiny_cfg():
    return load_config(None, TINY)


@pytest.fixture(scope="session")
def tiny_overrides():
    return list(TINY)


@pytest.fixture(scope="session")
def tiny_config():
    """Factory: the tiny config with extra dotted overrides."""
    return lambda *overrides: load_config(None, TINY + list(overrides))


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """Group tests for `make test` (`pytest -n 2 --dist loadgroup`): a worker runs a whole module, or a whole SHARED
    folder, so no module or session fixture is built on two workers; the SHARED folders run first so that the
    longest groups do not start last. Without xdist the marks are inert and only the order changes."""
    def group(item) -> str:
        path = Path(str(item.path)).resolve()
        if not path.is_relative_to(TESTS):
            return str(path)
        rel = path.relative_to(TESTS)
        return rel.parts[0] if rel.parts[0] in SHARED else rel.as_posix()

    for item in items:
        item.add_marker(pytest.mark.xdist_group(group(item)))
    rank = {name: i for i, name in enumerate(SHARED)}
    items.sort(key=lambda item: rank.get(group(item), len(SHARED)))  # stable: keeps the order within a group
