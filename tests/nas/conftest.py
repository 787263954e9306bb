"""Search fixtures: the tiny config (tests/conftest.py) with small search batches, and a synthetic 3-domain dataset."""

from __future__ import annotations

import pytest

from mpnas.data.synthetic import make_synthetic

# Wider stages and expansions than the shared tiny space: with 8-channel layers some SE units of the supernet get no
# gradient at all (dead ReLUs), which the every-weight-gets-a-gradient checks would report.
SEARCH = ["space.stages=[{width: 16, layers: 2, stride: 1}, {width: 24, layers: 2, stride: 2, act: hswish}]",
          "space.expansions=[1, 3, 6]", "search.batch_size=8", "search.val_batch_multiplier=1", "search.log_every=1"]


@pytest.fixture(scope="session")
def tiny_overrides(tiny_overrides) -> list[str]:
    return tiny_overrides + SEARCH


@pytest.fixture(scope="session")
def tiny_config(tiny_config):
    """Factory: the tiny search config with extra dotted overrides."""
    return lambda *overrides: tiny_config(*SEARCH, *overrides)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    return make_synthetic(tmp_path_factory.mktemp("nas") / "syn", {"alpha": 3, "beta": 4, "gamma": 2},
                          per_class=8, size=16)
