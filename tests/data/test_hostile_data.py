"""Issue 13 regressions for `mpnas data`: prepare never writes into its own input, refuses sizes and disks that
cannot hold the arrays (cleaning up), and a damaged prepared dataset is an error naming the file, also in `info`."""

from __future__ import annotations

import hashlib
import json
import resource
import shutil
import signal
import subprocess
import sys
import time
from collections import namedtuple
from pathlib import Path

import numpy as np
import pytest

from mpnas.cli import main
from mpnas.data.prepared import DatasetError, PreparedDataset
from mpnas.data.synthetic import make_synthetic

MPNAS = str(Path(sys.executable).parent / "mpnas")


def build_imagefolder(root: Path, fx, n: int = 3) -> Path:
    for d in ("cats", "dogs"):
        for k, c in enumerate(("a", "b")):
            for split in ("train", "val"):
                for i in range(n):
                    fx.write_image(root / d / split / c / f"{i}.png", (60 * k, 20 * i, 90))
    return root


def snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------------------------------- 1: the input survives
@pytest.mark.parametrize("where", ["same", "parent", "inside"])
def test_prepare_refuses_an_out_that_overlaps_the_root(tmp_path, fx, capsys, where):
    root = build_imagefolder(tmp_path / "images" / "R", fx)
    before = snapshot(tmp_path / "images")
    out = {"same": root, "parent": root.parent, "inside": root / "prepared"}[where]
    rc = main(["data", "prepare", "--source", "imagefolder", "--root", str(root), "--out", str(out), "--size", "16",
               "--overwrite"])
    err = capsys.readouterr().err
    assert rc == 1 and str(root) in err and f"--out {out}" in err
    assert snapshot(tmp_path / "images") == before  # every image still there, byte for byte


def test_prepare_refuses_through_a_symlink(tmp_path, fx, capsys):
    root = build_imagefolder(tmp_path / "R", fx)
    (tmp_path / "alias").symlink_to(root)
    before = snapshot(root)
    rc = main(["data", "prepare", "--source", "imagefolder", "--root", str(root), "--out", str(tmp_path / "alias"),
               "--size", "16", "--overwrite"])
    assert rc == 1 and "same path" in capsys.readouterr().err
    assert snapshot(root) == before


# ---------------------------------------------------------------------------------------- 6/7: size and space
def test_prepare_refuses_a_size_that_cannot_fit_before_decoding(tmp_path, fx, capsys):
    root = build_imagefolder(tmp_path / "R", fx)
    t0 = time.perf_counter()
    rc = main(["data", "prepare", "--source", "imagefolder", "--root", str(root), "--out", str(tmp_path / "out"),
               "--size", "4096"])
    err = capsys.readouterr().err
    assert rc == 1 and "size 4096" in err and "512" in err
    assert time.perf_counter() - t0 < 5 and not (tmp_path / "out").exists()


def test_prepare_checks_free_space_first(tmp_path, fx, capsys, monkeypatch):
    root = build_imagefolder(tmp_path / "R", fx)
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(10_000, 9_000, 1_000))
    rc = main(["data", "prepare", "--source", "imagefolder", "--root", str(root), "--out", str(tmp_path / "out"),
               "--size", "64"])
    err = capsys.readouterr().err
    assert rc == 1 and f"{tmp_path / 'out'}: the prepared arrays need" in err
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != ".out.lock") == ["R"]


def _limited(limit_bytes: int):
    def apply():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG, like a full disk
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))
    return apply


def test_full_disk_during_prepare_is_one_line_and_leaves_nothing(tmp_path, fx):
    root = build_imagefolder(tmp_path / "R", fx, n=4)
    out = tmp_path / "work" / "out"
    res = subprocess.run([MPNAS, "data", "prepare", "--source", "imagefolder", "--root", str(root), "--out",
                          str(out), "--size", "64"], capture_output=True, text=True, preexec_fn=_limited(20_000))
    assert res.returncode == 1, (res.returncode, res.stderr)  # used to be SIGBUS (exit 135) with no message
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and ".npy" in last and "Traceback" not in res.stderr
    assert [p.name for p in (tmp_path / "work").iterdir()] == [".out.lock"]  # no .partial dir, no out


# ---------------------------------------------------------------------------------------- 9: damaged arrays
@pytest.fixture
def prepared(tmp_path) -> Path:
    return make_synthetic(tmp_path / "prep", {"alpha": 3, "beta": 2}, per_class=6, size=16)


def test_truncated_array_is_named_and_info_is_not_healthy(prepared, capsys):
    arr = prepared / "alpha" / "train.images.npy"
    arr.write_bytes(arr.read_bytes()[: arr.stat().st_size // 2])
    with pytest.raises(DatasetError, match=str(arr)):
        PreparedDataset(prepared).images("alpha", "train")
    assert main(["data", "info", str(prepared)]) == 1
    err = capsys.readouterr().err
    assert f"error: {arr}: unreadable or truncated" in err


def test_tampered_labels_are_refused_naming_the_file(prepared, capsys):
    path = prepared / "beta" / "val.labels.npy"
    labels = np.load(path)
    labels[0] = 99
    np.save(path, labels)
    with pytest.raises(DatasetError, match=r"labels must lie in \[0, 1\]"):
        PreparedDataset(prepared).labels("beta", "val")
    assert main(["data", "info", str(prepared)]) == 1
    assert str(path) in capsys.readouterr().err


def test_healthy_dataset_info_exits_zero(prepared, capsys):
    assert main(["data", "info", "--json", str(prepared)]) == 0
    assert json.loads(capsys.readouterr().out)["problems"] == []


def test_nul_byte_in_an_annotation_file_name_names_the_file(tmp_path, fx, capsys):
    root = fx.make_decathlon(tmp_path / "dec", {"alpha": 2})
    fx.edit_annotation(root, "alpha_train.json",
                       lambda doc: doc["images"][1].update(file_name=doc["images"][1]["file_name"] + "\x00.png"))
    rc = main(["data", "prepare", "--source", "decathlon", "--root", str(root), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 1 and str(root / "annotations" / "alpha_train.json") in err and "NUL" in err
