"""A config error stops a pipeline run before any step, naming the run-config file and the field."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mpnas.config import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def test_bad_field_stops_before_any_step(zenml_stack, tmp_path):
    from zenml.client import Client

    from pipelines.mpnas_pipeline import mpnas_pipeline

    raw = yaml.safe_load((ROOT / "configs" / "smoke.yaml").read_text())
    raw["parameters"]["config"]["train"]["steps"] = 0
    raw["parameters"]["config"]["search"]["stepz"] = 3
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(raw))
    runs_before = Client().list_pipeline_runs(size=1).total
    with pytest.raises(ConfigError) as err:
        mpnas_pipeline.with_options(config_path=str(bad))()
    msg = str(err.value)
    assert str(bad) in msg
    assert "parameters.config.train.steps" in msg and "parameters.config.search.stepz" in msg
    assert Client().list_pipeline_runs(size=1).total == runs_before  # no run (hence no step) was created


@pytest.mark.parametrize("name", ["default", "smoke", "mini_real", "decathlon"])
def test_shipped_configs_validate(name):
    from pipelines.config import read_run_config, resolve_config

    cfg = resolve_config(read_run_config(ROOT / "configs" / f"{name}.yaml"), source=name)
    assert cfg.search.steps >= 1 and cfg.train.steps >= 1
