"""data.device_resident (issue 12): arrays uploaded once, sampling and augmentation by tensor ops on the device.

On the CPU the device is the CPU; the checks are what a GPU run relies on: the host loader's shapes, dtypes and
normalisation, augmentation that is a real crop/flip of the drawn image, determinism, and no image copies per step.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from mpnas.config import AugmentConfig, ConfigError, DataConfig, SamplingConfig, load_config
from mpnas.data import device as device_mod
from mpnas.data.device import DeviceResidentLoader, _reflect, make_loader, split_bytes, use_device_resident
from mpnas.data.loading import MultiDomainLoader, Normalizer
from mpnas.data.prepared import PreparedDataset, channel_stats, write_meta, write_split
from mpnas.utils.io import atomic_dir

CPU = torch.device("cpu")
SIZE, CROP = 12, 8
# "svhn" is a no-flip domain (labels change under a flip): its default augmentation never flips
DOMAINS = {"pets": 40, "svhn": 24}


@pytest.fixture(scope="module")
def ds(tmp_path_factory) -> PreparedDataset:
    """Random uint8 images (every crop of every image is distinct), 3 classes per domain, three labelled splits."""
    root = tmp_path_factory.mktemp("resident") / "ds"
    rng = np.random.default_rng(0)
    with atomic_dir(root) as tmp:
        doms = {}
        for name, n in DOMAINS.items():
            for split in ("train", "searchval", "val"):
                x = rng.integers(0, 256, (n, SIZE, SIZE, 3), dtype=np.uint8)
                write_split(tmp, name, split, x, np.arange(n) % 3)
                if split == "train":
                    mean, std = channel_stats(x)
            doms[name] = {"classes": ["a", "b", "c"], "splits": {"train": n, "searchval": n, "val": n},
                          "labeled": {"train": True, "searchval": True, "val": True}, "mean": mean, "std": std}
        write_meta(tmp, SIZE, "test", doms)
    return PreparedDataset(root)


def data_cfg(**kw) -> DataConfig:
    return DataConfig(size=SIZE, crop=CROP, **kw)


def resident(ds, seed=0, train_aug=True, batch=6, **kw) -> DeviceResidentLoader:
    """A device-resident train loader on the CPU; `kw` are DataConfig fields."""
    return DeviceResidentLoader(ds, ds.domains, "train", batch, data_cfg(**kw), seed=seed, device=CPU,
                                augment=train_aug)


def host_view(ds, domain: str, idx: np.ndarray, top: int, left: int, flip: bool, pad: int) -> torch.Tensor:
    """The host pipeline on chosen images: reflect pad, crop at (top, left), optional flip, normalise (numpy)."""
    x = np.asarray(ds.images(domain, "train"))[idx]
    if pad:
        x = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="reflect")
    x = x[:, top:top + CROP, left:left + CROP]
    if flip:
        x = x[:, :, ::-1]
    info = ds.info(domain)
    return Normalizer(info.mean, info.std, CPU).numpy_nchw(x.transpose(0, 3, 1, 2))


def match_view(ds, domain: str, image: int, row: torch.Tensor, pad: int) -> tuple[int, int, bool]:
    """The (top, left, flip) of the host pipeline that produces `row` from image `image`; fails when none does."""
    span = SIZE + 2 * pad - CROP + 1
    for top in range(span):
        for left in range(span):
            for flip in (False, True):
                if torch.allclose(host_view(ds, domain, np.array([image]), top, left, flip, pad)[0], row,
                                  rtol=0, atol=1e-5):
                    return top, left, flip
    raise AssertionError(f"{domain} image {image}: the batch row is no padded crop/flip of it")


def test_same_shapes_dtypes_and_normalisation_as_the_host_loader(ds):
    host = MultiDomainLoader(ds, ds.domains, "train", 6, data_cfg(), seed=0, device=CPU, augment=False)
    dev = resident(ds, train_aug=False)
    hb, db = host.next_batch(), dev.next_batch()
    assert hb.keys() == db.keys()
    for d in hb:
        (hx, hy), (dx, dy) = hb[d], db[d]
        assert dx.shape == hx.shape == (6, 3, CROP, CROP) and dy.shape == hy.shape == (6,)
        assert dx.dtype == hx.dtype == torch.float32 and dy.dtype == hy.dtype == torch.int64
        assert dx.is_contiguous()
        idx = dev.last_index[d].numpy()
        centre = (SIZE - CROP) // 2
        torch.testing.assert_close(dx, host_view(ds, d, idx, centre, centre, False, 0), rtol=0, atol=1e-5)
        assert torch.equal(dy, torch.from_numpy(np.asarray(ds.labels(d, "train"))[idx]))


@pytest.mark.parametrize("pad", [0, 3])
def test_augmentation_is_a_random_crop_and_flip_of_the_drawn_image(ds, pad):
    aug = AugmentConfig(pad=pad)
    dev = resident(ds, augment=aug)
    views: dict[str, set[tuple[int, int, bool]]] = {d: set() for d in DOMAINS}
    for _ in range(3):
        batch = dev.next_batch()
        for d, (x, _) in batch.items():
            for row, image in zip(x, dev.last_index[d].tolist()):
                views[d].add(match_view(ds, d, image, row, pad))
    for d, seen in views.items():
        assert len({(t, l) for t, l, _ in seen}) > 3, f"{d}: crops should differ across images and steps"
        flips = {f for _, _, f in seen}
        assert flips == ({False} if d == "svhn" else {False, True}), (d, flips)


def test_the_same_seed_gives_the_same_batches(ds):
    a, b, c = resident(ds, seed=4), resident(ds, seed=4), resident(ds, seed=5)
    for _ in range(3):
        ba, bb, bc = a.next_batch(), b.next_batch(), c.next_batch()
        for d in ba:
            assert torch.equal(ba[d][0], bb[d][0]) and torch.equal(ba[d][1], bb[d][1])
    assert not torch.equal(ba["pets"][0], bc["pets"][0])


def test_arrays_are_uploaded_once_and_steps_copy_no_image(ds, monkeypatch):
    dev = resident(ds)
    tensors = {d: (t, t.data_ptr()) for d, t in dev.resident.items()}
    assert dev.resident_bytes == split_bytes(ds, ds.domains, "train")

    class Gone:
        def __getitem__(self, key):
            raise AssertionError("a step read the host array")

        def __array__(self, *a, **kw):
            raise AssertionError("a step read the host array")
    for d in dev.domains:
        dev.images[d] = Gone()

    def no_copy(*a, **kw):
        raise AssertionError("a step built a tensor from host memory")
    monkeypatch.setattr(torch, "from_numpy", no_copy)
    monkeypatch.setattr(torch, "as_tensor", no_copy)
    for _ in range(4):
        dev.next_batch()
    for d, (t, ptr) in tensors.items():
        assert dev.resident[d] is t and t.data_ptr() == ptr


def test_epochs_visit_every_image_once(ds):
    dev = resident(ds, batch=8)
    n = DOMAINS["pets"]
    drawn = torch.cat([dev.streams["pets"].take(8) for _ in range(n // 8)]).tolist()
    assert sorted(drawn) == list(range(n))


def test_class_balanced_draws(tmp_path):
    root = tmp_path / "imb"
    with atomic_dir(root) as tmp:
        y = np.repeat([0, 1], [90, 10])
        x = np.zeros((100, SIZE, SIZE, 3), np.uint8)
        write_split(tmp, "d", "train", x, y)
        write_meta(tmp, SIZE, "test", {"d": {"classes": ["a", "b"], "splits": {"train": 100},
                                             "labeled": {"train": True}, "mean": [.5] * 3, "std": [.2] * 3}})
    dev = DeviceResidentLoader(PreparedDataset(root), ["d"], "train", 50,
                               data_cfg(sampling=SamplingConfig(class_balanced=True)), device=CPU)
    labels = torch.cat([dev.next_batch()["d"][1] for _ in range(40)])
    assert 0.4 < labels.float().mean().item() < 0.6  # 10% of the images, half of the draws


def test_state_roundtrip_and_refusals(ds):
    dev = resident(ds, seed=2)
    dev.next_batch()
    state = dev.state_dict()
    first = [dev.next_batch() for _ in range(5)]  # crosses an epoch of svhn (24 images, 6 a step)
    dev.load_state_dict(state)
    again = [dev.next_batch() for _ in range(5)]
    for a, b in zip(first, again):
        for d in a:
            assert torch.equal(a[d][0], b[d][0]) and torch.equal(a[d][1], b[d][1])
    host = MultiDomainLoader(ds, ds.domains, "train", 6, data_cfg(), seed=2, device=CPU)
    with pytest.raises(ValueError, match="data.device_resident"):
        host.load_state_dict(state)
    with pytest.raises(ValueError, match="data.device_resident"):
        dev.load_state_dict(host.state_dict())


def test_option_resolution(ds, monkeypatch):
    assert type(make_loader(ds, ds.domains, "train", 4, data_cfg(), device=CPU)) is MultiDomainLoader  # auto, CPU
    assert type(make_loader(ds, ds.domains, "train", 4, data_cfg(device_resident="on"), device=CPU)) \
        is DeviceResidentLoader
    assert type(make_loader(ds, ds.domains, "train", 4, data_cfg(device_resident="off"), device=CPU)) \
        is MultiDomainLoader
    cuda = torch.device("cuda")
    monkeypatch.setattr(device_mod.torch.cuda, "mem_get_info", lambda device: (1000, 2000))
    assert use_device_resident("auto", cuda, 500) and not use_device_resident("auto", cuda, 501)
    assert not use_device_resident("off", cuda, 1)
    with pytest.raises(ConfigError, match="data.device_resident"):
        load_config(None, ["data.device_resident=always"])
    assert load_config(None, ["data.device_resident=on"]).data.device_resident == "on"


def test_reflect_matches_numpy_padding():
    for size, pad in ((5, 2), (5, 4), (5, 9), (12, 3)):
        ref = np.pad(np.arange(size), pad, mode="reflect")
        got = _reflect(torch.arange(-pad, size + pad), size).numpy()
        assert got.tolist() == ref.tolist(), (size, pad)


def test_search_runs_and_resumes_with_device_resident_data(tiny_config, ds, tmp_path, monkeypatch):
    """A search on the device-resident loaders resumes bit for bit (loader state in the checkpoint)."""
    from mpnas.nas.search import run_search, SearchEngine

    cfg = tiny_config("data.size=12", "data.crop=8", "data.device_resident=on", "search.batch_size=4",
                      "search.steps=4", "search.checkpoint_every=2", "search.rl_delay_fraction=0",
                      "search.op_warmup_fraction=0")
    full = run_search(cfg, ds.root, tmp_path / "full", progress=False)
    original = SearchEngine.run_step
    calls = {"n": 0}

    def stop_at_third(self):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return original(self)
    with monkeypatch.context() as m:
        m.setattr(SearchEngine, "run_step", stop_at_third)
        with pytest.raises(KeyboardInterrupt):
            run_search(cfg, ds.root, tmp_path / "resumed", progress=False)
    engine_loaders = []
    m_init = SearchEngine.__init__

    def spy(self, *a, **kw):
        m_init(self, *a, **kw)
        engine_loaders.append(type(self.train_loader))
    monkeypatch.setattr(SearchEngine, "__init__", spy)
    resumed = run_search(cfg, ds.root, tmp_path / "resumed", resume=True, progress=False)
    assert engine_loaders == [DeviceResidentLoader]
    pd.testing.assert_frame_equal(resumed.history, full.history)
    assert resumed.genotypes == full.genotypes


class _Crash(Exception):
    pass


def test_training_resumes_with_device_resident_data(tiny_config, ds, tmp_path):
    """mpnas train on the device-resident loader: a crashed run resumes bit for bit; the host loader is refused."""
    from mpnas.space import SearchSpace
    from mpnas.training.trainer import train_model

    sets = ["data.size=12", "data.crop=8", "train.batch_size=4", "train.steps=6", "train.eval_every=3",
            "train.checkpoint_every=2", "train.log_every=2"]
    cfg = tiny_config(*sets, "data.device_resident=on")
    ref = SearchSpace.from_config(cfg.space, cfg.data.crop).reference_genotype()
    genotypes = {d: ref for d in DOMAINS}
    full = train_model(cfg, ds.root, genotypes, tmp_path / "full", progress=False)

    def crash_at_4(step, metrics):
        if step == 4:
            raise _Crash
    with pytest.raises(_Crash):
        train_model(cfg, ds.root, genotypes, tmp_path / "cut", progress=False, on_log=crash_at_4)
    with pytest.raises(ValueError, match="data.device_resident"):
        train_model(tiny_config(*sets), ds.root, genotypes, tmp_path / "cut", resume=True, progress=False)
    resumed = train_model(cfg, ds.root, genotypes, tmp_path / "cut", resume=True, progress=False)
    for (k, a), (_, b) in zip(full.model.state_dict().items(), resumed.model.state_dict().items()):
        assert torch.equal(a, b), k
    pd.testing.assert_frame_equal(full.history, resumed.history)
