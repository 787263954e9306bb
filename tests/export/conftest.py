"""A tiny trained-enough merged model (16 px, 2 domains, one shared and one private node) and its synthetic data."""

from __future__ import annotations

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


@pytest.fixture(scope="session")
def export_data(tmp_path_factory):
    return make_synthetic(tmp_path_factory.mktemp("data") / "prepared", DOMAINS, per_class=8, size=16)


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory, export_data):
    ds = PreparedDataset(export_data)
    meta = {"domains": {d: {"classes": list(ds.info(d).classes), "mean": list(ds.info(d).mean),
                            "std": list(ds.info(d).std)} for d in DOMAINS},
            "data": {"prepared_dir": str(export_data), "size": 16, "crop": 16}}
    return save_model(tiny_model(), tmp_path_factory.mktemp("model") / "model", meta)


@pytest.fixture(scope="session")
def exported(tmp_path_factory, model_dir, export_data):
    """One full export (both formats, int8) shared by the tests of this package."""
    out = tmp_path_factory.mktemp("export") / "exp"
    cfg = ExportConfig(calibration_images=8, latency_repeats=3)
    report = export_model(model_dir, out, cfg, data_dir=export_data, progress=False)
    return out, report


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
