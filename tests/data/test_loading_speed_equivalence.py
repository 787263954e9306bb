"""Issue 18: the faster host loader gives the same batches as before, bit for bit.

`ReferenceLoader` below is a frozen copy of the MultiDomainLoader batch algorithm as it was before the speed-up
(np.pad of the fetched batch, one fancy-index crop gather, np.where flip, NHWC -> NCHW float normalisation). The same
(dataset, seed, config) must give identical tensors and labels from both, over several steps, for every sampling
strategy and augmentation setting, and after a state_dict/load_state_dict resume in either direction.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mpnas.config import AugmentConfig, DataConfig, SamplingConfig
from mpnas.data.loading import MultiDomainLoader, Normalizer
from mpnas.data.prepared import PreparedDataset, channel_stats, write_meta, write_split
from mpnas.utils.io import atomic_dir

SIZE = 12
# "svhn" is a no-flip domain by default; the sizes differ so proportional sampling gives uneven counts
DOMAINS = {"pets": (50, 4), "svhn": (23, 3), "cars": (31, 5)}


def reference_augment(x: np.ndarray, crop: int, aug: AugmentConfig, gen: torch.Generator) -> np.ndarray:
    """Frozen copy of the pre-issue-18 mpnas.data.loading.augment_uint8 (NHWC uint8 in, NHWC uint8 out)."""
    n, h, w, _ = x.shape
    if aug.pad:
        x = np.pad(x, ((0, 0), (aug.pad, aug.pad), (aug.pad, aug.pad), (0, 0)), mode="reflect")
        h, w = h + 2 * aug.pad, w + 2 * aug.pad
    if aug.random_crop and (h > crop or w > crop):
        tops = torch.randint(0, h - crop + 1, (n,), generator=gen).numpy()
        lefts = torch.randint(0, w - crop + 1, (n,), generator=gen).numpy()
        rows = (tops[:, None] + np.arange(crop))[:, :, None]
        cols = (lefts[:, None] + np.arange(crop))[:, None, :]
        x = x[np.arange(n)[:, None, None], rows, cols]
    else:
        top, left = (h - crop) // 2, (w - crop) // 2
        x = x[:, top:top + crop, left:left + crop]
    if aug.flip:
        flip = (torch.rand(n, generator=gen) < 0.5).numpy()
        x = np.where(flip[:, None, None, None], x[:, :, ::-1], x)
    return np.ascontiguousarray(x)


def reference_normalise(norm: Normalizer, x: np.ndarray) -> torch.Tensor:
    """Frozen copy of the pre-issue-18 Normalizer.numpy (NHWC uint8 -> NCHW float32)."""
    x = x.transpose(0, 3, 1, 2).astype(np.float32)
    return torch.from_numpy(np.ascontiguousarray(x * norm.np_scale + norm.np_bias))


class ReferenceLoader(MultiDomainLoader):
    """The pre-issue-18 step: counts, then per domain fetch, augment (or centre crop) and normalise."""

    def _counts(self) -> dict[str, int]:
        if self.cfg.sampling.strategy == "uniform":
            return {d: self.batch_size for d in self.domains}
        total = self.batch_size * len(self.domains)
        draws = self.rng.multinomial(total, [self.probs[d] for d in self.domains])
        return {d: int(k) for d, k in zip(self.domains, draws) if k > 0}

    def domain_batch(self, domain: str, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        idx = self.streams[domain].take(k)
        x = np.asarray(self.images[domain][idx])
        if self.augment:
            x = reference_augment(x, self.crop, self.cfg.augment_for(domain), self.gen)
        else:
            top = (x.shape[1] - self.crop) // 2
            x = x[:, top:top + self.crop, top:top + self.crop]
        return reference_normalise(self.norm[domain], x), torch.from_numpy(self.labels[domain][idx])

    def next_batch(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        self.step += 1
        return {d: self.domain_batch(d, k) for d, k in self._counts().items()}


@pytest.fixture(scope="module")
def ds(tmp_path_factory) -> PreparedDataset:
    """Random uint8 images (every crop and flip is distinct), per-class counts that are imbalanced."""
    root = tmp_path_factory.mktemp("equiv") / "ds"
    rng = np.random.default_rng(18)
    with atomic_dir(root) as tmp:
        doms = {}
        for name, (n, classes) in DOMAINS.items():
            y = np.sort(rng.integers(0, classes, n))
            x = rng.integers(0, 256, (n, SIZE, SIZE, 3), dtype=np.uint8)
            write_split(tmp, name, "train", x, y)
            mean, std = channel_stats(x)
            doms[name] = {"classes": [f"c{i}" for i in range(classes)], "splits": {"train": n},
                          "labeled": {"train": True}, "mean": mean, "std": std}
        write_meta(tmp, SIZE, "test", doms)
    return PreparedDataset(root)


def same(a: dict, b: dict) -> None:
    """Bit-identical batches: same domains, same float bits, same labels."""
    assert list(a) == list(b)
    for d in a:
        xa, xb = a[d][0], b[d][0]
        assert xa.dtype == xb.dtype == torch.float32 and xa.shape == xb.shape and xa.is_contiguous()
        assert torch.equal(xa.view(torch.int32), xb.view(torch.int32)), d
        assert torch.equal(a[d][1], b[d][1]), d


CASES = {
    "uniform-default": dict(),
    "proportional": dict(sampling=SamplingConfig(strategy="proportional")),
    "temperature-class-balanced": dict(sampling=SamplingConfig(strategy="temperature", class_balanced=True)),
    "proportional-class-balanced": dict(sampling=SamplingConfig(strategy="proportional", class_balanced=True)),
    "pad2": dict(augment=AugmentConfig(pad=2)),
    "pad-larger-than-image": dict(augment=AugmentConfig(pad=SIZE + 1)),
    "no-flip": dict(augment=AugmentConfig(flip=False)),
    "centre-crop-with-flip": dict(augment=AugmentConfig(random_crop=False, flip=True)),
    "centre-crop-pad-flip": dict(augment=AugmentConfig(random_crop=False, flip=True, pad=3)),
    "flip-only-no-crop-room": dict(crop=SIZE),
    "pad-no-crop-room": dict(crop=SIZE, augment=AugmentConfig(pad=1)),
    "overrides": dict(augment_overrides={"svhn": AugmentConfig(flip=True, pad=1),
                                         "cars": AugmentConfig(random_crop=False, flip=False)}),
}


@pytest.mark.parametrize("augment", [True, False])
@pytest.mark.parametrize("case", sorted(CASES))
def test_same_batches_as_the_reference_algorithm(ds, case, augment):
    kw = {"crop": 8, **CASES[case]}
    cfg = DataConfig(size=SIZE, **kw)
    for seed, batch in ((0, 7), (5, 16)):
        new = MultiDomainLoader(ds, ds.domains, "train", batch, cfg, seed=seed, augment=augment)
        ref = ReferenceLoader(ds, ds.domains, "train", batch, cfg, seed=seed, augment=augment)
        for _ in range(12):  # 12 steps of 16 pass every epoch boundary of every domain
            same(new.next_batch(), ref.next_batch())


@pytest.mark.parametrize("case", ["uniform-default", "temperature-class-balanced", "pad2"])
def test_same_batches_after_resume_in_either_direction(ds, case):
    cfg = DataConfig(size=SIZE, crop=8, **CASES[case])
    ref = ReferenceLoader(ds, ds.domains, "train", 9, cfg, seed=2)
    for _ in range(5):
        ref.next_batch()
    state = ref.state_dict()
    want = [ref.next_batch() for _ in range(6)]
    new = MultiDomainLoader(ds, ds.domains, "train", 9, cfg, seed=77)
    new.load_state_dict(state)
    got = [new.next_batch() for _ in range(6)]
    for w, g in zip(want, got):
        same(g, w)
    back = ReferenceLoader(ds, ds.domains, "train", 9, cfg, seed=1)
    back.load_state_dict(new.state_dict())
    same(new.next_batch(), back.next_batch())


def test_batches_do_not_share_memory_across_steps(ds):
    """A caller may keep a batch while taking the next: the loader must not reuse an output buffer."""
    loader = MultiDomainLoader(ds, ds.domains, "train", 8, DataConfig(size=SIZE, crop=8), seed=0)
    first = loader.next_batch()
    kept = {d: x.clone() for d, (x, _) in first.items()}
    loader.next_batch()
    for d, (x, _) in first.items():
        assert torch.equal(x, kept[d])


def test_nchw_normalisation_matches_the_nhwc_one():
    """numpy_nchw takes the crops in NCHW order whatever their memory layout and returns contiguous float32."""
    norm = Normalizer((0.4, 0.5, 0.6), (0.2, 0.3, 0.25), torch.device("cpu"))
    x = np.random.default_rng(0).integers(0, 256, (5, 8, 8, 3), dtype=np.uint8)
    want = reference_normalise(norm, x)
    for nchw in (x.transpose(0, 3, 1, 2), np.ascontiguousarray(x.transpose(0, 3, 1, 2))):
        got = norm.numpy_nchw(nchw)
        assert got.is_contiguous() and torch.equal(got.view(torch.int32), want.view(torch.int32))
    nchw = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))  # the GPU host path's float ops
    assert torch.equal(norm.nchw(nchw).view(torch.int32), norm(torch.from_numpy(x)).view(torch.int32))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_same_batches_on_cuda_host_path(ds):
    """data.device_resident=off on a GPU: host crops, device normalisation; equal to the NHWC upload path."""

    class ReferenceCuda(ReferenceLoader):
        def domain_batch(self, domain: str, k: int) -> tuple[torch.Tensor, torch.Tensor]:
            idx = self.streams[domain].take(k)
            x = reference_augment(np.asarray(self.images[domain][idx]), self.crop, self.cfg.augment_for(domain),
                                  self.gen)
            y = torch.from_numpy(self.labels[domain][idx]).to(self.device)
            return self.norm[domain](torch.from_numpy(x).to(self.device)), y

    cfg = DataConfig(size=SIZE, crop=8, device_resident="off", augment=AugmentConfig(pad=1))
    dev = torch.device("cuda")
    new = MultiDomainLoader(ds, ds.domains, "train", 8, cfg, seed=4, device=dev)
    ref = ReferenceCuda(ds, ds.domains, "train", 8, cfg, seed=4, device=dev)
    for _ in range(4):
        same(new.next_batch(), ref.next_batch())
