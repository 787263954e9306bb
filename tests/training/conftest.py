"""Training fixtures: the tiny config (tests/conftest.py) with a short training, and synthetic two-domain data."""

import pytest

from mpnas.data.synthetic import make_synthetic

TRAIN = ["train.batch_size=8", "train.optimizer=adamw", "train.lr=0.01", "train.steps=12", "train.eval_every=6",
         "train.checkpoint_every=4", "train.log_every=4", "train.dropout=0.1", "evaluate.latency_repeats=3",
         "evaluate.latency_warmup=1"]


@pytest.fixture
def tiny_cfg(tiny_config):
    return tiny_config(*TRAIN)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    return make_synthetic(tmp_path_factory.mktemp("data") / "syn", {"alpha": 3, "beta": 4}, per_class=16, size=16)
