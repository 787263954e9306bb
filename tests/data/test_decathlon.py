"""The decathlon reader through `prepare`: labels, awkward image modes, test labels, and every bad-input case."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mpnas.config import DataConfig
from mpnas.data.decathlon import read_decathlon
from mpnas.data.prepare import prepare
from mpnas.data.prepared import DatasetError, PreparedDataset


def run(root: Path, out: Path, **kw) -> dict:
    return prepare(DataConfig(source="decathlon", root=root, size=8, crop=8, **kw), out, log=lambda s: None)


def test_labels_are_category_indices_and_counts_match(tmp_path, fx):
    root = fx.make_decathlon(tmp_path / "dec", {"alpha": 3, "beta": 2}, per_class=(10, 2, 3))
    run(root, tmp_path / "out")
    ds = PreparedDataset(tmp_path / "out")
    assert ds.domains == ["alpha", "beta"]
    # categories are listed in reverse id order: class k (colour 40k) has category index K-1-k
    assert ds.info("alpha").classes == ("class2", "class1", "class0")
    for split in ("train", "searchval", "val", "test"):
        x, y = np.asarray(ds.images("alpha", split)), ds.labels("alpha", split)
        assert x.shape[1:] == (8, 8, 3)
        assert [2 - fx.label_of_colour(img) for img in x] == list(y)
    assert ds.split_size("alpha", "train") + ds.split_size("alpha", "searchval") == 30
    assert ds.split_size("alpha", "searchval") == 3
    assert ds.has_labels("alpha", "test")


@pytest.mark.parametrize("flat", [False, True])
def test_stripped_test_has_no_labels(tmp_path, flat, fx):
    root = fx.make_decathlon(tmp_path / "dec", {"alpha": 2}, test_labels="stripped", flat_test=flat)
    run(root, tmp_path / "out")
    ds = PreparedDataset(tmp_path / "out")
    assert ds.split_size("alpha", "test") == 4
    assert not ds.has_labels("alpha", "test")
    assert (ds.labels("alpha", "test") == -1).all()


def test_test_json_preferred_over_stripped(tmp_path, fx):
    root = fx.make_decathlon(tmp_path / "dec", {"alpha": 2}, test_labels="both", flat_test=True)
    (dom,) = read_decathlon(root)
    assert dom.labeled["test"] and all(it.label >= 0 for it in dom.items["test"])


@pytest.mark.parametrize("mode,colour,expect", [
    ("L", (90, 90, 90), (90, 90, 90)),
    ("P", (200, 10, 10), (200, 10, 10)),
    ("CMYK", (0, 255, 0), (0, 255, 0)),
    ("1", (255, 255, 255), (255, 255, 255)),
    ("LA", (60, 60, 60), (60, 60, 60)),
])
def test_image_modes_become_rgb(tmp_path, mode, colour, expect, fx):
    root = fx.make_decathlon(tmp_path / "dec", {"alpha": 2}, per_class=(2, 1, 1))
    rel = json.loads((root / "annotations" / "alpha_val.json").read_text())["images"][0]["file_name"]
    fx.write_image(root / rel, colour, mode=mode)
    run(root, tmp_path / "out")
    img = np.asarray(PreparedDataset(tmp_path / "out").images("alpha", "val"))[0]
    assert np.abs(img.astype(int) - np.array(expect)).max() <= (6 if mode == "CMYK" else 2)  # CMYK goes via JPEG


def test_sixteen_bit_and_rgba(tmp_path, fx):
    root = fx.make_decathlon(tmp_path / "dec", {"alpha": 2}, per_class=(2, 1, 1))
    names = [im["file_name"] for im in json.loads((root / "annotations" / "alpha_val.json").read_text())["images"]]
    Image.fromarray(np.full((10, 12), 32768, np.uint16)).save(root / names[0])  # 16-bit grey: half scale
    assert Image.open(root / names[0]).mode.startswith("I")
    Image.new("RGBA", (12, 10), (10, 20, 30, 0)).save(root / names[1])  # fully transparent -> white
    run(root, tmp_path / "out")
    val = np.asarray(PreparedDataset(tmp_path / "out").images("alpha", "val"))
    assert abs(int(val[0, 0, 0, 0]) - 128) <= 1 and (val[0] == val[0, 0, 0, 0]).all()
    assert (val[1] == 255).all()


def test_resize_shorter_side_then_centre_crop(tmp_path, fx):
    root = fx.make_decathlon(tmp_path / "dec", {"alpha": 2}, per_class=(2, 1, 1))
    rel = json.loads((root / "annotations" / "alpha_val.json").read_text())["images"][0]["file_name"]
    a = np.zeros((20, 60, 3), np.uint8)
    a[:, 20:40] = 255  # white centre third of a wide image
    Image.fromarray(a).save(root / rel)
    run(root, tmp_path / "out")
    img = np.asarray(PreparedDataset(tmp_path / "out").images("alpha", "val"))[0]
    assert img.min() >= 200  # the 8x8 crop is inside the white centre


# ------------------------------------------------------------------------------------------------- bad input
def _first(root: Path, split: str = "train") -> tuple[dict, str]:
    doc = json.loads((root / "annotations" / f"alpha_{split}.json").read_text())
    return doc["images"][0], doc["images"][0]["file_name"]


def _expect_error(root: Path, out: Path, *needles: str, **kw) -> None:
    with pytest.raises(DatasetError) as info:
        run(root, out, **kw)
    for n in needles:
        assert n in str(info.value), str(info.value)
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}")]  # no temp dir left


def test_missing_annotation_file(tmp_path, fx):
    root = fx.make_decathlon(tmp_path / "dec", {"alpha": 2})
    os.remove(root / "annotations" / "alpha_val.json")
    for mode in ("error", "skip"):
        _expect_error(root, tmp_path / "out", "alpha_val.json", "missing", on_bad_image=mode)


@pytest.mark.parametrize("text, needle", [("{not json", "not valid JSON"), ("[1, 2]", "must be an object"),
                                         ('{"images": [], "categories": 3}', "'categories' list")])
def test_malformed_annotation_file_is_a_dataset_error_naming_it(tmp_path, fx, text, needle):
    root = fx.make_decathlon(tmp_path / "dec", {"alpha": 2})
    (root / "annotations" / "alpha_val.json").write_text(text)
    _expect_error(root, tmp_path / "out", "alpha_val.json", needle)


def test_missing_test_annotations(tmp_path, fx):
    root = fx.make_decathlon(tmp_path / "dec", {"alpha": 2}, test_labels="both")
    os.remove(root / "annotations" / "alpha_test.json")
    os.remove(root / "annotations" / "alpha_test_stripped.json")
    _expect_error(root, tmp_path / "out", "alpha_test.json", "missing")


def test_image_listed_but_absent(tmp_path, fx):
    root = fx.make_decathlon(tmp_path / "dec", {"alpha": 2})
    im, rel = _first(root)
    os.remove(root / rel)
    _expect_error(root, tmp_path / "out", "alpha_train.json", f"image id {im['id']}", "missing")


@pytest.mark.parametrize("kind", ["garbage", "truncated"])
def test_unreadable_or_truncated_image(tmp_path, kind, fx):
    root = fx.make_decathlon(tmp_path / "dec", {"alpha": 2})
    im, rel = _first(root, "val")
    if kind == "garbage":
        (root / rel).write_bytes(b"not an image at all")
    else:
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(root / rel)
        data = (root / rel).read_bytes()
        (root / rel).write_bytes(data[:len(data) // 2])
    _expect_error(root, tmp_path / "out", "alpha_val.json", f"image id {im['id']}", "unreadable or truncated")


def test_category_not_in_categories(tmp_path, fx):
    root = fx.make_decathlon(tmp_path / "dec", {"alpha": 2})
    fx.edit_annotation(root, "alpha_val.json", lambda d: d["annotations"][1].update(category_id=999))
    for mode in ("error", "skip"):
        _expect_error(root, tmp_path / "out", "alpha_val.json", "annotations[1]", "999", on_bad_image=mode)


def test_duplicate_image_ids(tmp_path, fx):
    root = fx.make_decathlon(tmp_path / "dec", {"alpha": 2})
    fx.edit_annotation(root, "alpha_train.json", lambda d: d["images"][2].update(id=d["images"][0]["id"]))
    for mode in ("error", "skip"):
        _expect_error(root, tmp_path / "out", "alpha_train.json", "duplicate image id", "images[2]", on_bad_image=mode)


def test_empty_domain_and_empty_class(tmp_path, fx):
    root = fx.make_decathlon(tmp_path / "dec", {"alpha": 2})
    fx.edit_annotation(root, "alpha_train.json", lambda d: (d["images"].clear(), d["annotations"].clear()))
    _expect_error(root, tmp_path / "out", "alpha_train.json", "no training images")
    root = fx.make_decathlon(tmp_path / "dec2", {"alpha": 2})

    def drop_class(d):  # remove every training image of the category listed first
        gone = {a["image_id"] for a in d["annotations"] if a["category_id"] == d["categories"][0]["id"]}
        d["images"][:] = [i for i in d["images"] if i["id"] not in gone]
        d["annotations"][:] = [a for a in d["annotations"] if a["image_id"] not in gone]

    fx.edit_annotation(root, "alpha_train.json", drop_class)
    _expect_error(root, tmp_path / "out", "alpha_train.json", "no training image", "class1")


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink"])
def test_path_escapes_error_and_are_never_opened(tmp_path, kind, monkeypatch, fx):
    root = fx.make_decathlon(tmp_path / "dec", {"alpha": 2})
    secret = fx.write_image(tmp_path / "outside" / "secret.png", (1, 2, 3))
    im, rel = _first(root, "val")
    if kind == "symlink":
        os.remove(root / rel)
        os.symlink(secret, root / rel)
        name = rel
    else:
        name = "../outside/secret.png" if kind == "dotdot" else str(secret)
        fx.edit_annotation(root, "alpha_val.json", lambda d: d["images"][0].update(file_name=name))
    opened: list[str] = []
    import mpnas.data.images as images
    real = images.decode_file
    monkeypatch.setattr(images, "decode_file", lambda p, s: (opened.append(p), real(p, s))[1])
    _expect_error(root, tmp_path / "out", "alpha_val.json", f"image id {im['id']}", "root")
    run(root, tmp_path / "out", on_bad_image="skip")
    stats = json.loads((tmp_path / "out" / "stats.json").read_text())
    assert [s["file"] for s in stats["skipped"]] == [name]
    assert not any("secret" in p for p in opened) and str(secret.resolve()) not in opened
    assert PreparedDataset(tmp_path / "out").split_size("alpha", "val") == 3


def test_skip_mode_skips_exactly_the_broken_images(tmp_path, fx):
    root = fx.make_decathlon(tmp_path / "dec", {"alpha": 2, "beta": 2}, per_class=(5, 2, 2))
    doc = json.loads((root / "annotations" / "alpha_train.json").read_text())
    broken = [doc["images"][0]["file_name"], doc["images"][6]["file_name"]]
    os.remove(root / broken[0])
    (root / broken[1]).write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    run(root, tmp_path / "out", on_bad_image="skip")
    ds = PreparedDataset(tmp_path / "out")
    stats = json.loads((tmp_path / "out" / "stats.json").read_text())
    assert sorted(s["file"] for s in stats["skipped"]) == sorted(broken)
    assert {s["domain"] for s in stats["skipped"]} == {"alpha"}
    assert ds.split_size("alpha", "train") + ds.split_size("alpha", "searchval") == 8
    assert ds.split_size("beta", "train") + ds.split_size("beta", "searchval") == 10
    import pandas as pd
    manifest = pd.read_parquet(tmp_path / "out" / "manifest.parquet")
    assert not set(broken) & set(manifest["source_file"])
