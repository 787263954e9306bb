"""Config validation: unknown keys and wrong types are refused with the file and dotted field named."""

from pathlib import Path

import pytest

from mpnas.config import ConfigError, MpnasConfig, flatten, load_config


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "cfg.yaml"
    p.write_text(text)
    return p


def test_defaults_validate():
    cfg = load_config()
    assert isinstance(cfg, MpnasConfig)
    assert cfg.search.mode == "multi_path"


def test_unknown_key_names_file_and_dotted_field(tmp_path):
    p = write(tmp_path, "train:\n  stepz: 3\n")
    with pytest.raises(ConfigError) as exc:
        load_config(p)
    msg = str(exc.value)
    assert str(p) in msg and "train.stepz" in msg and "unknown key" in msg


def test_wrong_type_names_field(tmp_path):
    p = write(tmp_path, "search:\n  loss_weighting:\n    abdp:\n      gamma: lots\n")
    with pytest.raises(ConfigError, match=r"search\.loss_weighting\.abdp\.gamma"):
        load_config(p)


def test_overrides_apply_and_validate(tmp_path):
    p = write(tmp_path, "train:\n  steps: 10\n")
    cfg = load_config(p, ["train.steps=3", "search.mode=multi_head", "data.domains=[a, b]"])
    assert cfg.train.steps == 3 and cfg.search.mode == "multi_head" and cfg.data.domains == ["a", "b"]
    with pytest.raises(ConfigError, match=r"search\.mode"):
        load_config(p, ["search.mode=bogus"])
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        load_config(p, ["train.steps"])


def test_missing_file_and_non_mapping(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(write(tmp_path, "- a\n- b\n"))


def test_impossible_values_refused():
    with pytest.raises(ConfigError, match=r"search\.cost_target"):
        load_config(None, ["search.cost_target=0"])
    with pytest.raises(ConfigError, match=r"space\.kernels"):
        load_config(None, ["space.kernels=[3, 4]"])
    with pytest.raises(ConfigError, match="crop"):
        load_config(None, ["data.size=16", "data.crop=32"])
    with pytest.raises(ConfigError, match="op_warmup_fraction"):
        load_config(None, ["search.op_warmup_fraction=0.5", "search.rl_delay_fraction=0.2"])


def test_flip_defaults_per_domain():
    cfg = load_config()
    assert cfg.data.augment_for("svhn").flip is False
    assert cfg.data.augment_for("photo").flip is True


def test_flatten_uses_dotted_keys():
    flat = flatten(load_config())
    assert flat["train.steps"] == 600 and "search.loss_weighting.abdp.gamma" in flat


def test_data_size_above_bound_says_why():
    from mpnas.config import ConfigError, load_config

    with pytest.raises(ConfigError, match=r"data\.size.*above the upper bound 512.*uncompressed"):
        load_config(None, ["data.size=600"])
