"""ImageFolder per domain: root/<domain>/{train,val[,test]}/<class>/<image>."""

from __future__ import annotations

import numpy as np
import pytest

from mpnas.config import DataConfig
from mpnas.data.imagefolder import read_imagefolder
from mpnas.data.prepare import prepare
from mpnas.data.prepared import DatasetError, PreparedDataset


def build(root, fx, test: str = "classes"):
    for d, classes in (("cats", ["a", "b"]), ("dogs", ["x", "y", "z"])):
        for k, c in enumerate(classes):
            for split, n in (("train", 4), ("val", 2)):
                for i in range(n):
                    fx.write_image(root / d / split / c / f"{i}.png", (40 * k, 0, 0))
            if test == "classes":
                fx.write_image(root / d / "test" / c / "t.jpg", (40 * k, 0, 0))
            elif test == "flat":
                fx.write_image(root / d / "test" / f"t{k}.png", (40 * k, 0, 0))
    return root


@pytest.mark.parametrize("test", ["classes", "flat", "none"])
def test_prepare_imagefolder(tmp_path, fx, test):
    root = build(tmp_path / "if", fx, test)
    prepare(DataConfig(source="imagefolder", root=root, size=8, crop=8), tmp_path / "out", log=lambda s: None)
    ds = PreparedDataset(tmp_path / "out")
    assert ds.domains == ["cats", "dogs"]
    assert ds.info("dogs").classes == ("x", "y", "z")
    y = np.concatenate([ds.labels("dogs", "train"), ds.labels("dogs", "searchval")])
    assert np.bincount(y).tolist() == [4, 4, 4]
    x = np.asarray(ds.images("dogs", "val"))
    assert [fx.label_of_colour(i) for i in x] == list(ds.labels("dogs", "val"))
    assert ds.split_size("dogs", "test") == (0 if test == "none" else 3)
    assert ds.has_labels("dogs", "test") == (test == "classes")


def test_unknown_val_class_and_missing_val(tmp_path, fx):
    root = build(tmp_path / "if", fx)
    fx.write_image(root / "cats" / "val" / "ghost" / "0.png", (0, 0, 0))
    with pytest.raises(DatasetError, match="ghost"):
        read_imagefolder(root)
    root = build(tmp_path / "if2", fx)
    import shutil
    shutil.rmtree(root / "dogs" / "val")
    with pytest.raises(DatasetError, match="dogs/val"):
        read_imagefolder(root)


def test_symlink_out_of_root_is_an_escape(tmp_path, fx):
    root = build(tmp_path / "if", fx)
    secret = fx.write_image(tmp_path / "secret.png", (1, 2, 3))
    (root / "cats" / "train" / "a" / "0.png").unlink()
    (root / "cats" / "train" / "a" / "0.png").symlink_to(secret)
    with pytest.raises(DatasetError, match="outside the dataset root"):
        prepare(DataConfig(source="imagefolder", root=root, size=8, crop=8), tmp_path / "out", log=lambda s: None)
    assert not (tmp_path / "out").exists()
