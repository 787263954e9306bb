"""`prepare` as a whole: searchval split, caps, outputs, atomicity under interruption, embedded end to end."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import mpnas.data.prepare as prep
from mpnas.config import DataConfig
from mpnas.data.prepare import cap_train, prepare, split_searchval
from mpnas.data.prepared import PreparedDataset
from mpnas.data.sources import SourceItem


def decathlon(root, **kw) -> DataConfig:
    return DataConfig(source="decathlon", root=root, size=8, crop=8, **kw)


def items(per_class: list[int]) -> list[SourceItem]:
    return [SourceItem(f"e{c}_{i}", f"f{c}_{i}", c) for c, n in enumerate(per_class) for i in range(n)]


def test_searchval_is_stratified_disjoint_and_seeded():
    src = items([50, 30, 20, 3])
    train, sv = split_searchval(src, 0.1, seed=0, domain="d")
    assert len(sv) == round(0.1 * len(src))
    assert set(it.entry for it in train).isdisjoint(it.entry for it in sv)
    assert len(train) + len(sv) == len(src)
    counts = np.bincount([it.label for it in sv], minlength=4)
    assert counts[:3].tolist() == [5, 3, 2]
    assert np.bincount([it.label for it in train]).min() >= 1
    assert split_searchval(src, 0.1, 0, "d") == (train, sv)
    assert split_searchval(src, 0.1, 1, "d")[1] != sv


def test_cap_train_keeps_every_class():
    src = items([100, 5, 5])
    kept = cap_train(src, 12, seed=0, domain="d")
    assert len(kept) == 12
    assert np.bincount([it.label for it in kept]).min() >= 4
    assert kept == [it for it in src if it in kept]  # original order


def test_outputs_manifest_stats_meta(tmp_path, fx):
    root = fx.make_decathlon(tmp_path / "dec", {"alpha": 3, "beta": 2}, per_class=(10, 2, 2))
    meta = prepare(decathlon(root, seed=1), tmp_path / "out", log=lambda s: None)
    ds = PreparedDataset(tmp_path / "out")
    assert meta["content_hash"] == ds.content_hash and len(ds.content_hash) == 64
    m = pd.read_parquet(tmp_path / "out" / "manifest.parquet")
    assert list(m.columns) == ["domain", "split", "index", "label", "class_name", "source_file", "sha1"]
    assert len(m) == sum(ds.split_size(d, s) for d in ds.domains for s in ("train", "searchval", "val", "test"))
    sub = m[(m.domain == "alpha") & (m.split == "searchval")].sort_values("index")
    assert sub["label"].tolist() == ds.labels("alpha", "searchval").tolist()
    assert m["sha1"].str.len().eq(40).all()
    stats = json.loads((tmp_path / "out" / "stats.json").read_text())
    assert stats["domains"]["alpha"]["class_histogram"]["val"] == [2, 2, 2]
    assert stats["skipped"] == []
    x = np.asarray(ds.images("alpha", "train"), np.float64) / 255
    assert np.allclose(ds.info("alpha").mean, x.mean(axis=(0, 1, 2)), atol=1e-6)
    again = prepare(decathlon(root, seed=1), tmp_path / "out2", log=lambda s: None)
    assert again["content_hash"] == meta["content_hash"]


@pytest.mark.parametrize("exc", [RuntimeError, KeyboardInterrupt])
def test_interrupted_prepare_leaves_nothing(tmp_path, fx, monkeypatch, exc):
    root = fx.make_decathlon(tmp_path / "dec", {"alpha": 2, "beta": 2})
    calls = []
    real = prep.decode_many

    def flaky(args):
        calls.append(1)
        if len(calls) == 3:
            raise exc("simulated interruption")
        return real(args)

    monkeypatch.setattr(prep, "decode_many", flaky)
    out = tmp_path / "work" / "out"
    with pytest.raises(exc):
        prepare(decathlon(root), out, log=lambda s: None)
    assert len(calls) == 3
    assert list((tmp_path / "work").iterdir()) == []


def test_overwrite_replaces_only_when_complete(tmp_path, fx, monkeypatch):
    root = fx.make_decathlon(tmp_path / "dec", {"alpha": 2})
    out = tmp_path / "out"
    first = prepare(decathlon(root), out, log=lambda s: None)
    with pytest.raises(FileExistsError):
        prepare(decathlon(root), out, log=lambda s: None)
    monkeypatch.setattr(prep, "decode_many", lambda a: (_ for _ in ()).throw(RuntimeError("boom")))
    with pytest.raises(RuntimeError):
        prepare(decathlon(root), out, overwrite=True, log=lambda s: None)
    assert PreparedDataset(out).content_hash == first["content_hash"]


def test_embedded_end_to_end(tmp_path):
    lines: list[str] = []
    cfg = DataConfig(domains=["digits8", "glyph"], size=16, crop=16, max_train_per_domain=150)
    prepare(cfg, tmp_path / "emb", scale=0.02, log=lines.append)
    ds = PreparedDataset(tmp_path / "emb")
    assert ds.domains == ["digits8", "glyph"] and ds.size == 16
    assert ds.num_classes("glyph") == 100
    assert ds.split_size("glyph", "train") + ds.split_size("glyph", "searchval") == 150
    assert ds.has_labels("glyph", "test")
    assert ds.meta["generator"]["scale"] == 0.02
    assert any(line.startswith("[2/2] glyph") for line in lines)
