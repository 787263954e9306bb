"""A tiny search space and synthetic two-domain data so training tests run in seconds."""

import pytest

from mpnas.config import load_config
from mpnas.data.synthetic import make_synthetic

TINY = ["space.preset=null", "space.stem_width=8", "space.stem_stride=2", "space.stem_kernels=[3]",
        "space.stages=[{width: 8, layers: 2, stride: 1, act: relu}, {width: 16, layers: 2, stride: 2, act: hswish}]",
        "space.head_widths=[32, 48]", "space.kernels=[3, 5]", "space.expansions=[1, 2]", "space.se=[false, true]",
        "data.size=16", "data.crop=16", "train.batch_size=8", "train.optimizer=adamw", "train.lr=0.01", "train.steps=12",
        "train.eval_every=6", "train.checkpoint_every=4", "train.log_every=4", "train.dropout=0.1",
        "evaluate.latency_repeats=3", "evaluate.latency_warmup=1"]


@pytest.fixture
def tiny_cfg():
    return load_config(None, TINY)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    return make_synthetic(tmp_path_factory.mktemp("data") / "syn", {"alpha": 3, "beta": 4}, per_class=16, size=16)
