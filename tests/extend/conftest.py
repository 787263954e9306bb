"""A tiny parent model (two domains, 16 px, one shared and one private node, distinct per-domain BN statistics) saved
as a model directory, and synthetic data holding its domains plus a new one, `gamma`."""

from __future__ import annotations

import pytest
import torch

from mpnas.data.prepared import PreparedDataset
from mpnas.data.synthetic import make_synthetic
from mpnas.models.blocks import DomainBatchNorm2d, init_weights
from mpnas.models.multipath import MultiPathNet, save_model
from mpnas.nas.search import build_space
from mpnas.space import Genotype

OLD = {"alpha": 3, "beta": 4}
ALL = {**OLD, "gamma": 3}
ADD_FAST = ["search.steps=6", "search.batch_size=8", "search.paths_per_domain=2", "search.log_every=3",
            "search.rl_delay_fraction=0.3", "search.op_warmup_fraction=0.3", "train.steps=6", "train.batch_size=8",
            "train.log_every=3"]


def parent_model(cfg, bn_mode: str = "per_domain") -> MultiPathNet:
    space = build_space(cfg)
    genotypes = {"alpha": Genotype.from_strings(["conv_k3", "ir_k3_e2", "zero", "ir_k3_e2", "zero"]),
                 "beta": Genotype.from_strings(["conv_k3", "ir_k3_e2", "ir_k5_e1", "ir_k5_e2_se", "ir_k3_e1"])}
    torch.manual_seed(0)
    model = MultiPathNet(space, genotypes, OLD, bn_mode, 0.1, space_config=cfg.space)
    init_weights(model)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, DomainBatchNorm2d):
                m.running_mean.normal_(0, 0.2)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
    return model.eval()


@pytest.fixture(scope="session")
def add_data(tmp_path_factory):
    return make_synthetic(tmp_path_factory.mktemp("adddata") / "prepared", ALL, per_class=8, size=16)


@pytest.fixture(scope="session")
def add_cfg(tiny_config):
    return tiny_config(*ADD_FAST)


def save_parent(cfg, data, out, bn_mode: str = "per_domain"):
    ds = PreparedDataset(data)
    meta = {"domains": {d: {"classes": list(ds.info(d).classes), "mean": list(ds.info(d).mean),
                            "std": list(ds.info(d).std)} for d in OLD},
            "data": {"prepared_dir": str(data), "size": 16, "crop": 16, "content_hash": ds.content_hash}}
    return save_model(parent_model(cfg, bn_mode), out, meta)


@pytest.fixture(scope="session")
def parent_dir(tmp_path_factory, add_cfg, add_data):
    return save_parent(add_cfg, add_data, tmp_path_factory.mktemp("parent") / "model")
