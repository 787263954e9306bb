"""`mpnas data prepare|info`: exit codes, messages, config defaults overridden by flags."""

from __future__ import annotations

import os

from mpnas.cli import main
from mpnas.data.prepared import PreparedDataset


def test_prepare_and_info(tmp_path, fx, capsys):
    root = fx.make_decathlon(tmp_path / "dec", {"alpha": 2, "beta": 3})
    cfg = tmp_path / "c.yaml"
    cfg.write_text("data:\n  size: 16\n  crop: 8\n  searchval_fraction: 0.25\n")
    rc = main(["data", "prepare", "--source", "decathlon", "--root", str(root), "--out", str(tmp_path / "out"),
               "-c", str(cfg), "--size", "10", "--domains", "beta"])
    assert rc == 0
    ds = PreparedDataset(tmp_path / "out")
    assert ds.size == 10 and ds.domains == ["beta"]  # flag beats config
    assert ds.split_size("beta", "searchval") == 3  # 0.25 of 12, from the config
    assert "[1/1] beta" in capsys.readouterr().out
    assert main(["data", "info", str(tmp_path / "out")]) == 0
    text = capsys.readouterr().out
    assert "beta" in text and ds.content_hash in text and "searchval" in text


def test_errors_exit_non_zero_and_name_the_file(tmp_path, fx, capsys):
    root = fx.make_decathlon(tmp_path / "dec", {"alpha": 2})
    os.remove(root / "annotations" / "alpha_val.json")
    rc = main(["data", "prepare", "--source", "decathlon", "--root", str(root), "--out", str(tmp_path / "out")])
    assert rc == 1
    assert "alpha_val.json" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    assert main(["data", "prepare", "--source", "imagefolder", "--out", str(tmp_path / "o2")]) == 1
    assert "--root" in capsys.readouterr().err
    assert main(["data", "info", str(tmp_path / "nothing")]) == 1
    assert "not a prepared dataset" in capsys.readouterr().err
    assert main(["data", "prepare", "--source", "decathlon", "--root", str(root), "--out", str(tmp_path / "o3"),
                 "--set", "data.bogus=1"]) == 2


def test_flags_are_validated_as_the_data_section(tmp_path, fx, capsys):
    """Flags become a DataConfig (its limits, one message per bad flag, exit 1); a --size below the default crop
    works, since crop is a training setting that prepare does not read."""
    root = fx.make_decathlon(tmp_path / "dec", {"alpha": 2})
    base = ["data", "prepare", "--source", "decathlon", "--root", str(root)]
    assert main([*base, "--out", str(tmp_path / "bad"), "--searchval-fraction", "0.7", "--size", "4"]) == 1
    err = capsys.readouterr().err
    assert "data.searchval_fraction" in err and "data.size" in err and "--searchval-fraction 0.7" in err
    assert not (tmp_path / "bad").exists()
    assert main([*base, "--out", str(tmp_path / "small"), "--size", "12"]) == 0
    assert PreparedDataset(tmp_path / "small").size == 12
