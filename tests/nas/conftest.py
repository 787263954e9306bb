"""Tiny search fixtures: a 2-stage space at 16 px and a synthetic 3-domain prepared dataset."""

from __future__ import annotations

import pytest

from mpnas.config import load_config
from mpnas.data.synthetic import make_synthetic

TINY = ["data.size=16", "data.crop=16",
        "space.stages=[{width: 16, layers: 2, stride: 1}, {width: 24, layers: 2, stride: 2, act: hswish}]",
        "space.kernels=[3, 5]", "space.expansions=[1, 3, 6]", "space.head_widths=[32, 48]",
        "search.batch_size=8", "search.val_batch_multiplier=1", "search.log_every=1"]


@pytest.fixture(scope="session")
def tiny_overrides() -> list[str]:
    return list(TINY)


@pytest.fixture(scope="session")
def tiny_config():
    """Factory: the tiny config with extra dotted overrides."""
    return lambda *overrides: load_config(None, TINY + list(overrides))


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    return make_synthetic(tmp_path_factory.mktemp("nas") / "syn", {"alpha": 3, "beta": 4, "gamma": 2},
                          per_class=8, size=16)
