"""Shared fixtures: one tiny config (two stages, narrow widths, 16 px) so model, search and training tests run in
seconds. Test folders add only the overrides of their own section (tests/nas: search.*, tests/training: train.*)."""

import pytest

from mpnas.config import load_config

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
