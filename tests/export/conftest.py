"""A tiny trained-enough merged model (16 px, 2 domains, one shared and one private node) and its synthetic data.

The costly ExecuTorch exports (`BACKGROUND`: the full one, the measured-sharing one, the affine one) start in one child
process as soon as collection ends, so that in a single-process run they lower on the second core while the tests
before them run (tests/pipelines, first in `make test`); their fixtures wait for them. In an xdist worker, or when no
selected test uses them, every export runs in this process, inside its fixture, as before."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

import pytest
import torch

from mpnas.config import ExportConfig, SpaceConfig, StageConfig
from mpnas.data.prepared import PreparedDataset
from mpnas.data.synthetic import make_synthetic
from mpnas.export import export_model
from mpnas.models.blocks import DomainBatchNorm2d
from mpnas.models.multipath import MultiPathNet, save_model
from mpnas.space import Genotype, SearchSpace

DOMAINS = {"alpha": 3, "beta-2": 4}  # "beta-2" is not an identifier: entry names must be sanitised


def tiny_model() -> MultiPathNet:
    cfg = SpaceConfig(preset=None, input_size=16, stem_width=8, stem_stride=2, stem_kernels=[3],
                      stages=[StageConfig(width=8, layers=2, stride=1),
                              StageConfig(width=16, layers=1, stride=2, act="hswish")],
                      head_widths=[64, 256], kernels=[3, 5], expansions=[1, 2], se=[False, True])
    space = SearchSpace.from_config(cfg)
    genotypes = {"alpha": Genotype.from_strings(["conv_k3", "ir_k3_e2", "zero", "ir_k5_e2_se"]),
                 "beta-2": Genotype.from_strings(["conv_k3", "ir_k3_e2", "ir_k3_e1", "ir_k5_e2_se"])}
    torch.manual_seed(0)
    model = MultiPathNet(space, genotypes, DOMAINS, space_config=cfg)
    with torch.no_grad():  # distinct per-domain statistics, so a wrong domain index would show in parity
        for m in model.modules():
            if isinstance(m, DomainBatchNorm2d):
                m.running_mean.normal_(0, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    return model.eval()


def build_export_data(root: Path) -> Path:
    return make_synthetic(root / "prepared", DOMAINS, per_class=8, size=16)


def _meta(model: MultiPathNet, data: Path) -> dict:
    ds = PreparedDataset(data)
    return {"domains": {d: {"classes": list(ds.info(d).classes), "mean": list(ds.info(d).mean),
                            "std": list(ds.info(d).std)} for d in model.domains}}


def build_model_dir(root: Path, data: Path) -> Path:
    model = tiny_model()
    meta = {**_meta(model, data), "data": {"prepared_dir": str(data), "size": 16, "crop": 16}}
    return save_model(model, root / "model", meta)


def affine_single_path_model() -> MultiPathNet:
    """The shared_domain_bn baseline on the tiny model: beta-2's path for every domain, per-domain BN with distinct
    affine rows and statistics."""
    tiny = tiny_model()
    one_path = {d: tiny.genotypes["beta-2"] for d in tiny.domains}
    return per_domain_affine(tiny, one_path)


def per_domain_affine(base: MultiPathNet, genotypes: dict) -> MultiPathNet:
    """`base`'s space and classes with `genotypes`, per-domain affine BN whose rows and statistics differ per domain
    (seeded), so an exporter that mixed up domains would give different logits."""
    torch.manual_seed(0)
    m = MultiPathNet(base.space, genotypes, base.num_classes, "per_domain_affine", space_config=base.space_config)
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, DomainBatchNorm2d):
                mod.weight.uniform_(0.5, 1.5)
                mod.bias.uniform_(-0.3, 0.3)
                mod.running_mean.normal_(0, 0.2)
                mod.running_var.uniform_(0.5, 1.5)
    return m.eval()


def build_affine_model_dir(root: Path, data: Path) -> Path:
    model = affine_single_path_model()
    return save_model(model, root / "affine_model", _meta(model, data))


# fixture name -> (the model it exports: "tiny" is `model_dir`, "affine" `build_affine_model_dir`, ExportConfig fields)
BACKGROUND = {
    "exported": ("tiny", {"calibration_images": 8, "latency_repeats": 3}),
    "measured_sharing_export": ("tiny", {"formats": ["executorch"], "int8": False, "latency_repeats": 1,
                                         "measure_sharing": True}),
    "affine_export": ("affine", {"formats": ["executorch"], "int8": False, "latency_repeats": 1}),
}
JOBS_SCRIPT = Path(__file__).with_name("_export_jobs.py")
JOB_TIMEOUT_S = 1800


class Background:
    """Data and model built here, the exports `names` run by `_export_jobs.py` in one child process."""

    def __init__(self, root: Path, names: list[str]):
        self.root = root
        with torch.random.fork_rng(devices=[]):  # built before any test runs: leave the global RNG as it was
            self.data = build_export_data(root / "data")
            self.model_dir = build_model_dir(root, self.data)
            self.affine_dir = build_affine_model_dir(root, self.data) if "affine_export" in names else None
        models = {"tiny": self.model_dir, "affine": self.affine_dir}
        jobs = [{"name": n, "model_dir": str(models[BACKGROUND[n][0]]), "data_dir": str(self.data),
                 "cfg": BACKGROUND[n][1]} for n in names]
        (root / "jobs.json").write_text(json.dumps(jobs))
        self.log = open(root / "jobs.log", "wb")
        self.proc = subprocess.Popen([sys.executable, str(JOBS_SCRIPT), str(root / "jobs.json")], stdout=self.log,
                                     stderr=subprocess.STDOUT, env={**os.environ, "OMP_NUM_THREADS": "1"})
        self.names = set(names)

    def result(self, name: str) -> tuple[Path, dict]:
        """(export directory, report) of job `name`, once the child has written it; the child's output on failure."""
        done = self.root / f"{name}.report.json"
        deadline = time.monotonic() + JOB_TIMEOUT_S
        while not done.is_file():
            if self.proc.poll() is not None and not done.is_file() or time.monotonic() > deadline:
                pytest.fail(f"background export {name!r} failed:\n{(self.root / 'jobs.log').read_text()[-5000:]}")
            time.sleep(0.2)
        return self.root / name, json.loads(done.read_text())

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
        shutil.rmtree(self.root, ignore_errors=True)


_background: Optional[Background] = None


def pytest_collection_finish(session: pytest.Session) -> None:
    """Start the background exports that the selected tests use (not in an xdist worker: the controller spreads
    the work there, and a worker cannot tell which tests it will get)."""
    global _background
    if os.environ.get("PYTEST_XDIST_WORKER") or session.config.option.collectonly:
        return
    used = [n for n in BACKGROUND if any(n in getattr(item, "fixturenames", ()) for item in session.items)]
    if used:
        _background = Background(Path(tempfile.mkdtemp(prefix="mpnas-export-tests-")), used)


def pytest_sessionfinish(session: pytest.Session) -> None:
    if _background is not None:
        _background.close()


def _export(name: str, tmp_path_factory, model_dir: Path, export_data: Path) -> tuple[Path, dict]:
    if _background is not None and name in _background.names:
        return _background.result(name)
    out = tmp_path_factory.mktemp(name) / "exp"
    cfg = ExportConfig(**BACKGROUND[name][1])
    return out, export_model(model_dir, out, cfg, data_dir=export_data, progress=False)


@pytest.fixture
def per_domain_affine_model():
    """`per_domain_affine` for test modules (which cannot import conftest)."""
    return per_domain_affine


@pytest.fixture(scope="session")
def export_data(tmp_path_factory):
    if _background is not None:
        return _background.data
    return build_export_data(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory, export_data):
    if _background is not None:
        return _background.model_dir
    return build_model_dir(tmp_path_factory.mktemp("model"), export_data)


@pytest.fixture(scope="session")
def exported(tmp_path_factory, model_dir, export_data):
    """One full export (both formats, int8) shared by the tests of this package."""
    return _export("exported", tmp_path_factory, model_dir, export_data)


@pytest.fixture(scope="session")
def measured_sharing_export(tmp_path_factory, model_dir, export_data):
    """An fp32 ExecuTorch export of the same model with export.measure_sharing (one single-method lowering per
    domain besides the combined one)."""
    return _export("measured_sharing_export", tmp_path_factory, model_dir, export_data)


@pytest.fixture(scope="session")
def onnx_export(tmp_path_factory, model_dir, export_data):
    """A fast fp32 ONNX-only export, for the manifest and predictor tests."""
    out = tmp_path_factory.mktemp("export_onnx") / "exp"
    cfg = ExportConfig(formats=["onnx"], int8=False, latency_repeats=2)
    report = export_model(model_dir, out, cfg, data_dir=export_data, progress=False)
    return out, report


@pytest.fixture
def tiny() -> MultiPathNet:
    return tiny_model()


@pytest.fixture(scope="session")
def affine_model_dir(tmp_path_factory, export_data):
    if _background is not None and _background.affine_dir is not None:
        return _background.affine_dir
    return build_affine_model_dir(tmp_path_factory.mktemp("affine"), export_data)


@pytest.fixture(scope="session")
def affine_export(tmp_path_factory, affine_model_dir, export_data):
    """An fp32 ExecuTorch export of `affine_single_path_model`."""
    return _export("affine_export", tmp_path_factory, affine_model_dir, export_data)
