"""The hostile-user trial of issue 13, as regression tests on the `mpnas` command line: each test runs the command
that used to lose data, run planted code or misbehave, and checks that it is now refused with one line naming the
file (and that nothing was lost or run)."""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from mpnas.cli import main
from mpnas.data.synthetic import make_synthetic
from mpnas.space import Genotype, genotypes_to_json

MPNAS = str(Path(sys.executable).parent / "mpnas")
SEARCH = ["search.steps=2", "search.batch_size=4", "search.val_batch_multiplier=1", "search.checkpoint_every=1",
          "search.log_every=1"]
TRAIN = ["train.steps=2", "train.batch_size=4", "train.eval_every=2", "train.checkpoint_every=1"]


def _sets(items: list[str]) -> list[str]:
    return [a for s in items for a in ("--set", s)]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return make_synthetic(tmp_path_factory.mktemp("hostile") / "data", {"alpha": 3, "beta": 4}, per_class=6, size=16)


@pytest.fixture(scope="module")
def other_data(tmp_path_factory) -> Path:
    return make_synthetic(tmp_path_factory.mktemp("hostile") / "other", {"alpha": 3, "beta": 4}, per_class=6,
                          size=16, seed=1)


@pytest.fixture
def sets(tiny_overrides) -> list[str]:
    return _sets(tiny_overrides + SEARCH + TRAIN)


@pytest.fixture(scope="module")
def genotypes(tmp_path_factory) -> Path:
    g = {"alpha": Genotype.from_strings(["conv_k3", "ir_k3_e2", "zero", "ir_k5_e2_se", "ir_k3_e1"]),
         "beta": Genotype.from_strings(["conv_k3", "ir_k3_e2", "ir_k5_e1", "ir_k3_e2", "zero"])}
    path = tmp_path_factory.mktemp("hostile") / "g.json"
    path.write_text(genotypes_to_json(g))
    return path


class _Planted:
    """A pickle that creates a file when unpickled: what a planted checkpoint.pt would do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


# ------------------------------------------------------------------------------------ 3: no code from checkpoints
@pytest.mark.parametrize("command", ["search", "train"])
def test_resume_never_runs_a_planted_checkpoint(command, data, genotypes, sets, tmp_path, capsys):
    out, marker = tmp_path / "run", tmp_path / "PWNED"
    out.mkdir()
    torch.save({"format": "mpnas.search_checkpoint/2", "payload": _Planted(marker)}, out / "checkpoint.pt")
    extra = ["--genotypes", str(genotypes)] if command == "train" else []
    rc = main([command, "--data", str(data), "--out", str(out), "--resume", "--quiet", *extra, *sets])
    assert rc == 1 and not marker.exists()
    assert f"{out / 'checkpoint.pt'}: not a readable" in capsys.readouterr().err


# ------------------------------------------------------------------------------------ 5: resume on other data
def test_search_resume_refuses_a_checkpoint_of_other_data(data, other_data, sets, tmp_path, capsys):
    out = tmp_path / "search"
    assert main(["search", "--data", str(data), "--out", str(out), "--quiet", *sets]) == 0
    summary = (out / "summary.json").read_text()
    rc = main(["search", "--data", str(other_data), "--out", str(out), "--resume", "--quiet", *sets])
    err = capsys.readouterr().err
    assert rc == 1 and "content hash" in err and str(other_data) in err and str(out / "checkpoint.pt") in err
    assert (out / "summary.json").read_text() == summary  # the old lineage is untouched
    # the same data resumes (the finished run is simply rewritten from its checkpoint)
    assert main(["search", "--data", str(data), "--out", str(out), "--resume", "--quiet", *sets]) == 0


def test_train_resume_refuses_a_checkpoint_of_other_data(data, other_data, genotypes, sets, tmp_path, capsys):
    out = tmp_path / "model"
    assert main(["train", "--data", str(data), "--genotypes", str(genotypes), "--out", str(out), "--quiet",
                 *sets]) == 0
    rc = main(["train", "--data", str(other_data), "--genotypes", str(genotypes), "--out", str(out), "--resume",
               "--quiet", *sets])
    assert rc == 1 and "content hash" in capsys.readouterr().err


# ------------------------------------------------------------------------------------ 8: non-empty out, locking
@pytest.mark.parametrize("command", ["search", "train"])
def test_fresh_run_refuses_a_non_empty_out_unless_overwrite(command, data, genotypes, sets, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "earlier_result.json").write_text("{}")
    extra = ["--genotypes", str(genotypes)] if command == "train" else []
    rc = main([command, "--data", str(data), "--out", str(out), "--quiet", *extra, *sets])
    assert rc == 1 and f"--out {out} is not empty" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["earlier_result.json"]
    assert main([command, "--data", str(data), "--out", str(out), "--quiet", "--overwrite", *extra, *sets]) == 0


def test_a_second_writer_of_the_same_out_is_refused(data, sets, tmp_path, capsys):
    out = tmp_path / "search"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from mpnas.utils.io import output_lock\n"
                               f"with output_lock({str(out)!r}):\n    print('locked', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        rc = main(["search", "--data", str(data), "--out", str(out), "--quiet", *sets])
        err = capsys.readouterr().err
        assert rc == 1 and f"being written by process {holder.pid}" in err
        assert not out.exists()
    finally:
        holder.kill()
        holder.wait()
    # the kernel released the lock with the process: the next writer proceeds
    assert main(["search", "--data", str(data), "--out", str(out), "--quiet", *sets]) == 0


def test_out_under_a_regular_file_is_one_line(data, sets, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    rc = main(["search", "--data", str(data), "--out", str(blocker / "sub"), "--quiet", *sets])
    err = capsys.readouterr().err
    assert rc == 1 and f"{blocker} is a file" in err and "Traceback" not in err


# ------------------------------------------------------------------------------------ 6: sizes that cannot fit
def test_batch_size_that_cannot_fit_is_refused_before_allocating(data, sets, tmp_path, capsys):
    t0 = time.perf_counter()
    rc = main(["search", "--data", str(data), "--out", str(tmp_path / "s"), *sets,
               "--set", "search.batch_size=100000000"])
    err = capsys.readouterr().err
    assert rc == 2 and "search.batch_size" in err and "memory" in err
    assert time.perf_counter() - t0 < 5 and not (tmp_path / "s").exists()


@pytest.mark.parametrize("command", ["search", "train"])
def test_batch_size_is_checked_against_this_machines_memory(command, data, genotypes, sets, tmp_path, capsys,
                                                            monkeypatch):
    import mpnas.cli._common as common

    monkeypatch.setattr(common, "physical_memory", lambda: 16 * 2**20)  # a 16 MiB machine
    extra = ["--genotypes", str(genotypes)] if command == "train" else []
    rc = main([command, "--data", str(data), "--out", str(tmp_path / "o"), *extra, *sets,
               "--set", f"{command}.batch_size=4096"])
    err = capsys.readouterr().err
    assert rc == 1 and f"{command}.batch_size=4096" in err and "0.0 GiB of memory" in err
    assert not (tmp_path / "o").exists()


# ------------------------------------------------------------------------------------ 7/9: a full disk in search
def _limited(limit_bytes: int):
    def apply():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG, like a full disk
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))
    return apply


def test_full_disk_during_search_is_one_line_naming_the_file(data, tiny_overrides, tmp_path):
    out = tmp_path / "search"
    res = subprocess.run([MPNAS, "search", "--data", str(data), "--out", str(out), "--quiet",
                          *_sets(tiny_overrides + SEARCH)], capture_output=True, text=True,
                         preexec_fn=_limited(16 * 1024), env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert res.returncode == 1, res.stderr
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "checkpoint.pt" in last and "Traceback" not in res.stderr
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]  # no half-written temp file is left


# ------------------------------------------------------------------------------------ 9/10: configs
def test_config_errors_name_the_file(tmp_path, capsys):
    cases = {"latin1.yaml": "search:\n  steps: 3  # caf\xe9\n".encode("latin-1"), "empty.yaml": b"",
             "booly.yaml": b"search:\n  steps: true\n"}
    expected = {"latin1.yaml": "not UTF-8", "empty.yaml": "empty", "booly.yaml": "search.steps"}
    for name, content in cases.items():
        path = tmp_path / name
        path.write_bytes(content)
        assert main(["config", "validate", "-c", str(path)]) == 2, name
        err = capsys.readouterr().err
        assert str(path) in err and expected[name] in err, err


def test_cli_takes_plain_and_run_configs(tmp_path, capsys):
    root = Path(__file__).resolve().parents[1]
    for name in ("default", "smoke", "mini_real", "retrain"):
        assert main(["config", "show", "-c", str(root / "configs" / f"{name}.yaml")]) == 0, name
        assert f"name: {name}" in capsys.readouterr().out
    run = tmp_path / "run.yaml"
    run.write_text("run_name: x\nparameters:\n  config:\n    search: {steps: 7}\n    train: {stepz: 1}\n")
    assert main(["config", "validate", "-c", str(run)]) == 2
    assert "parameters.config.train.stepz" in capsys.readouterr().err
    no_params = tmp_path / "noparams.yaml"
    no_params.write_text("run_name: x\nparamters:\n  config: {}\n")
    assert main(["config", "validate", "-c", str(no_params)]) == 2
    assert "without parameters.config" in capsys.readouterr().err
    plain = tmp_path / "plain.yaml"
    plain.write_text("search: {steps: 7}\n")
    assert main(["config", "show", "-c", str(plain), "--set", "train.steps=5"]) == 0
    shown = capsys.readouterr().out
    assert "steps: 7" in shown and "steps: 5" in shown


def test_invalid_genotype_names_the_file(data, genotypes, sets, tmp_path, capsys):
    bad = tmp_path / "g.json"
    good = json.loads(genotypes.read_text())
    good["genotypes"]["alpha"][1] = "ir_k9_e2"  # a well-formed block the space does not have
    bad.write_text(json.dumps(good))
    rc = main(["train", "--data", str(data), "--genotypes", str(bad), "--out", str(tmp_path / "m"), *sets])
    err = capsys.readouterr().err
    assert rc == 1 and f"{bad}: genotype of domain 'alpha'" in err and "kernel 9" in err
