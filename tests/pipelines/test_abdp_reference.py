"""ABDP's automatic reference in the comparison pipeline, without running it: the `extra.comparison.abdp_reference`
option (validated, the field named), when the wiring applies, the reference file the train step writes (read back
by the real reader), and the report's per-run reference line."""

from __future__ import annotations

import json

import pytest
import yaml

from mpnas.config import ConfigError, MpnasConfig

UNIFORM_METRICS = {  # the parts of an evaluate_model metrics.json a reference uses, plus some it must drop
    "method": "mpnas_uniform", "model_hash": "abc123", "mean_top1_test": 0.9, "model_dir": "/artifacts/x",
    "domains": {"easy": {"top1_val": 0.8, "top1_test": 0.7, "num_classes": 2},
                "hard": {"top1_val": 0.1, "top1_test": 0.2, "num_classes": 10}},
    "train": {"seed": 1, "steps_done": 8, "train_top1_final": {"easy": 0.9, "hard": 0.55}},
}


def _options(extra, **params):
    from pipelines.comparison_pipeline import resolve_options

    return resolve_options(extra, 7, "run.yaml", **params)


def test_abdp_reference_defaults_to_uniform_and_keeps_the_config_seed():
    opts = _options(None)
    assert opts.abdp_reference == "uniform" and opts.seeds == [7]
    opts = _options({"comparison": {"abdp_reference": "none"}})  # no seeds given: still the config's seed
    assert opts.abdp_reference == "none" and opts.seeds == [7]
    assert _options({"comparison": {"abdp_reference": "none"}}, abdp_reference="uniform").abdp_reference == "uniform"


def test_bad_abdp_reference_is_refused_naming_the_field():
    with pytest.raises(ConfigError, match=r"(?s)run\.yaml.*extra\.comparison\.abdp_reference: Input should be "
                                          r"'uniform' or 'none'"):
        _options({"comparison": {"abdp_reference": "uniform_run", "seeds": [0]}})
    with pytest.raises(ConfigError, match=r"parameters\.abdp_reference: Input should be 'uniform' or 'none'"):
        _options(None, abdp_reference="yes")
    with pytest.raises(ConfigError, match=r"parameters\.seeds: .*repeat a seed"):
        _options({"comparison": {"abdp_reference": "none"}}, seeds=[2, 2])


def test_the_wiring_applies_to_abdp_without_a_configured_reference(tmp_path):
    from pipelines.comparison_pipeline import ComparisonOptions, uniform_reference

    on, off = ComparisonOptions(), ComparisonOptions(abdp_reference="none")
    abdp = MpnasConfig()
    assert abdp.train.loss_weighting.name == "abdp" and uniform_reference(abdp, on)
    assert not uniform_reference(abdp, off)
    dwa = MpnasConfig.model_validate({"train": {"loss_weighting": {"name": "dwa"}}})
    assert not uniform_reference(dwa, on)
    ref = tmp_path / "given.json"
    ref.write_text(json.dumps(UNIFORM_METRICS))
    given = MpnasConfig.model_validate({"train": {"loss_weighting": {"abdp": {"reference_metrics": str(ref)}}}})
    assert not uniform_reference(given, on)  # a configured reference wins


def test_train_step_writes_a_reference_the_weighting_reads(tmp_path):
    from mpnas.weighting import attainable_from_reference
    from steps.contracts import AbdpReference
    from steps.train import with_reference

    cfg = with_reference(MpnasConfig(), AbdpReference.of(UNIFORM_METRICS), str(tmp_path))
    path = cfg.train.loss_weighting.abdp.reference_metrics
    assert path.parent.parent == tmp_path.resolve() / "runs" / "reference"
    doc = json.loads(path.read_text())
    assert (doc["method"], doc["seed"], doc["model_hash"]) == ("mpnas_uniform", 1, "abc123")
    assert "top1_test" not in json.dumps(doc) and "model_dir" not in doc  # test never steers training
    a = attainable_from_reference(path, ["easy", "hard"], {"easy": 0.0, "hard": 0.0})
    assert a == pytest.approx({"easy": (0.9 - 0.5) / 0.5, "hard": (0.55 - 0.1) / 0.9})  # final train top-1
    again = with_reference(MpnasConfig(), AbdpReference.of({**UNIFORM_METRICS, "model_dir": "/elsewhere"}),
                           str(tmp_path))
    assert again.train.loss_weighting.abdp.reference_metrics == path  # same numbers, same file (and train key)


def test_train_step_refuses_a_reference_it_cannot_use(tmp_path):
    from steps.contracts import AbdpReference
    from steps.train import with_reference

    ref = AbdpReference.of(UNIFORM_METRICS)
    uniform = MpnasConfig.model_validate({"train": {"loss_weighting": {"name": "uniform"}}})
    with pytest.raises(ValueError, match=r"reference from mpnas_uniform .* 'uniform'"):
        with_reference(uniform, ref, str(tmp_path))
    with pytest.raises(ValueError, match=r"reference from mpnas_uniform .* reference_metrics"):
        with_reference(with_reference(MpnasConfig(), ref, str(tmp_path)), ref, str(tmp_path))
    with pytest.raises(ValueError, match=r"domains\.hard\.top1_val"):
        AbdpReference.of({**UNIFORM_METRICS, "domains": {"hard": {"top1_test": 0.2}}})


def test_report_names_each_abdp_runs_reference(tmp_path):
    from mpnas.evaluation.comparison import (REFERENCE_FILE, abdp_references, comparison_markdown, compare_methods,
                                             run_weighting)
    from steps.contracts import AbdpReference
    from steps.train import with_reference

    def model_dir(name: str, cfg: MpnasConfig):
        d = tmp_path / name
        d.mkdir(exist_ok=True)
        (d / "train_config.yaml").write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
        return run_weighting(d)

    wired = model_dir("mpnas", with_reference(MpnasConfig(), AbdpReference.of(UNIFORM_METRICS), str(tmp_path)))
    plain = model_dir("null", MpnasConfig())
    assert wired["reference_method"] == "mpnas_uniform" and wired["attainable_from"] == "train_top1_final"
    moved = with_reference(MpnasConfig(), AbdpReference.of({**UNIFORM_METRICS, "model_hash": "def"}), str(tmp_path))
    ref_file = moved.train.loss_weighting.abdp.reference_metrics
    (tmp_path / "moved").mkdir()
    (tmp_path / "moved" / REFERENCE_FILE).write_text(ref_file.read_text())
    ref_file.unlink()  # the workspace copy gone (another machine): the model dir's own copy still says where from
    assert model_dir("moved", moved)["reference_model_hash"] == "def"
    assert plain == {"name": "abdp", "reference_metrics": None}
    run = {"domains": {"easy": {"top1_test": 0.5}}, "mean_top1_test": 0.5}
    table = {"mpnas": {"seeds": [1], "runs": [{**run, "weighting": wired}], **run},
             "mpnas_null": {"seeds": [1], "runs": [{**run, "weighting": plain}], **run},
             "mpnas_uniform": {"seeds": [1], "runs": [{**run, "weighting": {"name": "uniform"}}], **run}}
    refs = abdp_references(table)
    assert refs == {"mpnas": {"1": "mpnas_uniform seed 1 (train_top1_final)"},
                    "mpnas_null": {"1": "none (every domain taken as fully attainable)"}}
    md = comparison_markdown(compare_methods(table))
    assert "| mpnas | 1 | mpnas_uniform seed 1 (train_top1_final) |" in md and "| mpnas_uniform |" not in md.split(
        "## ABDP reference per run")[1]
