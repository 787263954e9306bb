"""Balancing and loading statistics: domain strategies, class balancing, per-domain augmentation, resumption."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from mpnas.config import AugmentConfig, DataConfig, SamplingConfig
from mpnas.data.loading import MultiDomainLoader, domain_probabilities
from mpnas.data.prepared import PreparedDataset, channel_stats, write_meta, write_split
from mpnas.utils.io import atomic_dir

SIZES = {"big": (270, 30), "small": (20, 20)}  # per-class train counts: big is 9:1 imbalanced


def build(root: Path, names: dict[str, tuple[int, int]] = SIZES, size: int = 8) -> PreparedDataset:
    rng = np.random.default_rng(0)
    with atomic_dir(root) as tmp:
        doms = {}
        for name, per in names.items():
            y = np.repeat(np.arange(len(per)), per)
            x = rng.integers(0, 256, (len(y), size, size, 3), dtype=np.uint8)
            write_split(tmp, name, "train", x, y)
            mean, std = channel_stats(x)
            doms[name] = {"classes": [f"c{i}" for i in range(len(per))], "splits": {"train": len(y)},
                          "labeled": {"train": True}, "mean": mean, "std": std}
        write_meta(tmp, size, "test", doms)
    return PreparedDataset(root)


def cfg(**sampling) -> DataConfig:
    return DataConfig(size=8, crop=8, sampling=SamplingConfig(**sampling))


def test_domain_probabilities():
    n = {"a": 400, "b": 100}
    assert domain_probabilities(n, SamplingConfig(strategy="uniform")) == {"a": 0.5, "b": 0.5}
    assert domain_probabilities(n, SamplingConfig(strategy="proportional")) == pytest.approx({"a": 0.8, "b": 0.2})
    assert domain_probabilities(n, SamplingConfig(strategy="temperature", temperature=2)) == \
        pytest.approx({"a": 20 / 30, "b": 10 / 30})


@pytest.mark.parametrize("strategy,expected_big", [("proportional", 300 / 340), ("temperature", None),
                                                   ("uniform", 0.5)])
def test_domain_frequencies(tmp_path, strategy, expected_big):
    ds = build(tmp_path / "ds")
    loader = MultiDomainLoader(ds, ds.domains, "train", 16, cfg(strategy=strategy, temperature=2.0), seed=0,
                               augment=False)
    counts = {"big": 0, "small": 0}
    for _ in range(400):
        for d, (x, y) in loader.next_batch().items():
            counts[d] += len(y)
    total = sum(counts.values())
    assert total == 400 * 32
    p = expected_big if expected_big is not None else np.sqrt(300) / (np.sqrt(300) + np.sqrt(40))
    sd = np.sqrt(p * (1 - p) / total)
    assert abs(counts["big"] / total - p) < 4 * sd + 1e-9


@pytest.mark.parametrize("balanced", [False, True])
def test_class_balance(tmp_path, balanced):
    ds = build(tmp_path / "ds")
    loader = MultiDomainLoader(ds, ["big"], "train", 32, cfg(class_balanced=balanced), seed=1, augment=False)
    ys = torch.cat([loader.next_batch()["big"][1] for _ in range(150)]).numpy()
    frac1 = (ys == 1).mean()
    target = 0.5 if balanced else 0.1
    assert abs(frac1 - target) < 4 * np.sqrt(target * (1 - target) / len(ys))


def test_unbalanced_epoch_visits_every_item_once(tmp_path):
    ds = build(tmp_path / "ds", {"d": (7, 5)})
    loader = MultiDomainLoader(ds, ["d"], "train", 4, cfg(), seed=0, augment=False)
    streams = loader.streams["d"]
    seen = np.concatenate([streams.take(4) for _ in range(3)])
    assert sorted(seen.tolist()) == list(range(12))


def test_per_domain_augmentation(tmp_path):
    ds = build(tmp_path / "ds", {"svhn": (10, 10), "photo": (10, 10)})
    c = DataConfig(size=8, crop=8, augment=AugmentConfig(random_crop=False, flip=True))
    assert not c.augment_for("svhn").flip and c.augment_for("photo").flip
    loader = MultiDomainLoader(ds, ds.domains, "train", 20, c, seed=0, augment=True)
    plain = MultiDomainLoader(ds, ds.domains, "train", 20, c, seed=0, augment=False)
    a, b = loader.next_batch(), plain.next_batch()
    assert torch.equal(a["svhn"][0], b["svhn"][0])
    flipped = [(not torch.equal(x, z)) and torch.equal(x, z.flip(-1)) for x, z in zip(a["photo"][0], b["photo"][0])]
    assert 3 <= sum(flipped) <= 17
    over = c.model_copy(update={"augment_overrides": {"svhn": AugmentConfig(random_crop=False, flip=True)}})
    assert over.augment_for("svhn").flip


def test_resume_gives_the_same_batches(tmp_path):
    ds = build(tmp_path / "ds")
    c = cfg(strategy="temperature", class_balanced=True)
    a = MultiDomainLoader(ds, ds.domains, "train", 8, c, seed=3)
    for _ in range(5):
        a.next_batch()
    state = a.state_dict()
    want = [a.next_batch() for _ in range(3)]
    b = MultiDomainLoader(ds, ds.domains, "train", 8, c, seed=99)
    b.load_state_dict(state)
    got = [b.next_batch() for _ in range(3)]
    for w, g in zip(want, got):
        assert w.keys() == g.keys()
        for d in w:
            assert torch.equal(w[d][0], g[d][0]) and torch.equal(w[d][1], g[d][1])


def test_numpy_and_torch_normalisation_agree():
    from mpnas.data.loading import Normalizer

    norm = Normalizer((0.4, 0.5, 0.6), (0.2, 0.3, 0.25), torch.device("cpu"))
    x = np.random.default_rng(0).integers(0, 256, (5, 8, 8, 3), dtype=np.uint8)
    assert torch.allclose(norm(torch.from_numpy(x)), norm.numpy_nchw(x.transpose(0, 3, 1, 2)), atol=1e-5)
