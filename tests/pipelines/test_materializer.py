"""The model materializer stores state_dict (safetensors) + architecture.json, never pickles, and round-trips."""

from __future__ import annotations

import torch

from mpnas.config import SpaceConfig, StageConfig
from mpnas.models.multipath import MultiPathNet, save_model


def _model() -> MultiPathNet:
    from mpnas.space import SearchSpace

    cfg = SpaceConfig(stem_width=8, stages=[StageConfig(width=8, layers=1), StageConfig(width=16, layers=1, stride=2)],
                      head_widths=[32], kernels=[3], expansions=[1, 3])
    space = SearchSpace.from_config(cfg, 16)
    torch.manual_seed(0)
    return MultiPathNet(space, {"a": space.reference_genotype(), "b": space.reference_genotype()}, {"a": 2, "b": 3},
                        "per_domain", 0.0, True, cfg)


def test_model_dir_round_trip(zenml_stack, tmp_path):
    from steps.artifacts import ModelDir, ModelDirMaterializer

    src = tmp_path / "model"
    net = _model()
    save_model(net, src)
    (src / "checkpoint.pt").write_bytes(b"resume state, a torch pickle")
    store = tmp_path / "store"
    store.mkdir()
    ModelDirMaterializer(str(store)).save(ModelDir(str(src)))
    assert sorted(p.name for p in store.iterdir()) == ["architecture.json", "model.safetensors"]
    loaded = ModelDirMaterializer(str(store)).load(ModelDir)
    assert isinstance(loaded, ModelDir) and loaded.genotypes() == {d: net.genotypes[d].to_strings() for d in "ab"}
    back = loaded.load()
    for k, v in net.state_dict().items():
        assert torch.equal(back.state_dict()[k], v), k
    x = torch.randn(2, 3, 16, 16)
    torch.testing.assert_close(back(x, "b"), net.eval()(x, "b"))


def test_incomplete_model_dir_is_refused(zenml_stack, tmp_path):
    import pytest

    from steps.artifacts import ModelDir, ModelDirMaterializer

    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "architecture.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        ModelDirMaterializer(str(tmp_path / "s")).save(ModelDir(str(tmp_path / "m")))
