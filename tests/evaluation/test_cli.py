"""`mpnas train` + `mpnas evaluate` on tiny synthetic data write the model directory, metrics, report and figures."""

import json

import pytest

from mpnas.cli import main
from mpnas.data.synthetic import make_synthetic
from mpnas.space import Genotype, genotypes_to_json

SETS = ["train.steps=6", "train.batch_size=8", "train.eval_every=3", "train.optimizer=adamw", "train.lr=0.01",
        "evaluate.latency_repeats=2", "evaluate.latency_warmup=1"]


@pytest.fixture
def sets(tiny_overrides):
    out = []
    for s in tiny_overrides + SETS:
        out += ["--set", s]
    return out


def test_train_and_evaluate(tmp_path, sets):
    data = make_synthetic(tmp_path / "data", {"alpha": 3, "beta": 4}, per_class=8, size=16)
    g = {"alpha": Genotype.from_strings(["conv_k3", "ir_k3_e2", "zero", "ir_k5_e2_se", "ir_k3_e1"]),
         "beta": Genotype.from_strings(["conv_k3", "ir_k3_e2", "ir_k5_e1", "ir_k3_e2", "zero"])}
    (tmp_path / "g.json").write_text(genotypes_to_json(g))
    assert main(["train", "--data", str(data), "--genotypes", str(tmp_path / "g.json"), "--out",
                 str(tmp_path / "model"), "--quiet", *sets]) == 0
    assert main(["evaluate", "--model", str(tmp_path / "model"), "--data", str(data), "--out",
                 str(tmp_path / "report"), "--method", "mpnas_test", *sets]) == 0
    m = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert m["method"] == "mpnas_test" and set(m["domains"]) == {"alpha", "beta"}
    for key in ("top1_val", "top1_test", "params_path", "flops_path", "latency_ms_cpu"):
        assert m["domains"]["alpha"][key] is not None
    assert m["flops_union"] < m["flops_sum_paths"] and m["decathlon_score"] is None
    for f in ("report.md", "architecture.png", "jaccard.png", "weights.png"):
        assert (tmp_path / "report" / f).stat().st_size > 0, f
    assert "architecture.png" in (tmp_path / "report" / "report.md").read_text()
    # the model's own metrics as a reference: E_max = 2 x its test error -> a finite score
    assert main(["evaluate", "--model", str(tmp_path / "model"), "--data", str(data), "--out",
                 str(tmp_path / "report2"), "--reference", str(tmp_path / "report" / "metrics.json"),
                 *sets]) == 0
    m2 = json.loads((tmp_path / "report2" / "metrics.json").read_text())
    expected = sum(1000.0 if v["top1_test"] == 1.0 else 250.0 for v in m["domains"].values())
    assert m2["decathlon_score"] == pytest.approx(expected)
    # bundle baseline: no sharing, more parameters
    assert main(["train", "--data", str(data), "--genotypes", str(tmp_path / "g.json"), "--out",
                 str(tmp_path / "bundle"), "--quiet", "--no-share", *sets]) == 0
    assert main(["evaluate", "--model", str(tmp_path / "bundle"), "--data", str(data), "--out",
                 str(tmp_path / "report3"), *sets]) == 0
    m3 = json.loads((tmp_path / "report3" / "metrics.json").read_text())
    assert m3["params_total"] == sum(v["params_path"] for v in m3["domains"].values()) > m["params_total"]
    assert m3["flops_union"] == m3["flops_sum_paths"] and m3["sharing"]["nodes_shared"] == 0


def test_clear_errors(tmp_path, capsys, sets):
    data = make_synthetic(tmp_path / "data", {"alpha": 3}, per_class=4, size=16)
    assert main(["train", "--data", str(data), "--genotypes", str(tmp_path / "nope.json"), "--out",
                 str(tmp_path / "m"), *sets]) == 1
    assert "nope.json: file not found" in capsys.readouterr().err
    (tmp_path / "g.json").write_text(genotypes_to_json(
        {"zeta": Genotype.from_strings(["conv_k3", "ir_k3_e2", "zero", "ir_k5_e2_se", "ir_k3_e1"])}))
    assert main(["train", "--data", str(data), "--genotypes", str(tmp_path / "g.json"), "--out",
                 str(tmp_path / "m"), *sets]) == 1
    assert "'zeta'" in capsys.readouterr().err
    (tmp_path / "g.json").write_text(genotypes_to_json(
        {"alpha": Genotype.from_strings(["conv_k3", "ir_k9_e2", "zero", "ir_k5_e2_se", "ir_k3_e1"])}))
    assert main(["train", "--data", str(data), "--genotypes", str(tmp_path / "g.json"), "--out",
                 str(tmp_path / "m"), *sets]) == 1
    err = capsys.readouterr().err
    assert "domain 'alpha'" in err and "s1.l0" in err
    assert main(["evaluate", "--model", str(tmp_path / "missing"), "--data", str(data), "--out",
                 str(tmp_path / "r")]) == 1
    assert "architecture.json" in capsys.readouterr().err
