"""`mpnas add-domain`: --help, and every refusal before any work (one error line naming the problem, nothing
written)."""

import json

import pytest

from mpnas.cli import main
from mpnas.data.synthetic import make_synthetic

from .conftest import ADD_FAST

SETS = [a for s in ADD_FAST + ["data.size=16", "data.crop=16"] for a in ("--set", s)]


def _run(capsys, *argv):
    rc = main(["add-domain", *argv])
    return rc, capsys.readouterr()


def test_help_lists_every_option(capsys):
    with pytest.raises(SystemExit):
        main(["add-domain", "--help"])
    out = capsys.readouterr().out
    for flag in ("--model", "--data", "--domain", "--out", "--resume", "--overwrite", "--set", "--config", "--quiet"):
        assert flag in out


def test_cli_adds_a_domain_and_says_so(capsys, parent_dir, add_data, tmp_path):
    rc, cap = _run(capsys, "--model", str(parent_dir), "--data", str(add_data), "--domain", "gamma",
                   "--out", str(tmp_path / "m2"), "--quiet", *SETS)
    assert rc == 0, cap.err
    assert "old domains' test logits identical: yes (alpha, beta)" in cap.out
    assert json.loads((tmp_path / "m2" / "add_domain.json").read_text())["domain"] == "gamma"


@pytest.fixture(scope="module")
def odd_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("odd")
    return {"size20": make_synthetic(root / "size20", {"gamma": 3}, per_class=8, size=20),
            "one_class": make_synthetic(root / "one", {"gamma": 1}, per_class=8, size=16)}


def _cases(parent_dir, add_data, odd_data, tmp_path):
    not_model = tmp_path / "not_model"
    not_model.mkdir()
    no_space = tmp_path / "no_space"
    no_space.mkdir()
    arch = json.loads((parent_dir / "architecture.json").read_text())
    del arch["space"]
    (no_space / "architecture.json").write_text(json.dumps(arch))
    return [
        (["--model", parent_dir, "--data", add_data, "--domain", "alpha"], "already has this domain"),
        (["--model", parent_dir, "--data", add_data, "--domain", "delta"], "not in the prepared data"),
        (["--model", parent_dir, "--data", odd_data["size20"], "--domain", "gamma"], "prepared at 20 px"),
        (["--model", parent_dir, "--data", odd_data["one_class"], "--domain", "gamma"], "at least 2"),
        (["--model", parent_dir, "--data", add_data, "--domain", "gamma", "--set", "data.crop=12"], "data.crop=12"),
        (["--model", not_model, "--data", add_data, "--domain", "gamma"], "model directory"),
        (["--model", no_space, "--data", add_data, "--domain", "gamma"], "no search space description"),
    ]


def test_bad_inputs_are_refused_before_any_work(capsys, parent_dir, add_data, odd_data, tmp_path):
    for i, (argv, message) in enumerate(_cases(parent_dir, add_data, odd_data, tmp_path)):
        out = tmp_path / f"out{i}"
        rc, cap = _run(capsys, *map(str, argv[:6]), "--out", str(out), *SETS, *map(str, argv[6:]))
        assert rc == 1, (message, cap.err)
        assert cap.err.startswith("error:") and message in cap.err, (message, cap.err)
        assert not out.exists() or not any(out.iterdir()), message


def test_out_inside_or_equal_to_an_input_is_refused(capsys, parent_dir, add_data):
    before = sorted(p.name for p in parent_dir.iterdir())
    for out in (parent_dir, parent_dir / "m2", add_data / "m2"):
        rc, cap = _run(capsys, "--model", str(parent_dir), "--data", str(add_data), "--domain", "gamma",
                       "--out", str(out), *SETS)
        assert rc == 1 and "never writes into or replaces its own input" in cap.err
    assert sorted(p.name for p in parent_dir.iterdir()) == before
