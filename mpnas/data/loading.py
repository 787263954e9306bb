"""Fast multi-domain batches from a prepared dataset: index the memory-mapped arrays, crop and flip by strided views.

No per-image decoding happens in the training loop: each crop of a batch is one block copy out of a strided window
view of the uint8 memory map (a column-reversed view for flipped images), then normalisation runs in numpy on the
CPU, or in torch on the training device when it is a GPU.
"""

from __future__ import annotations

from typing import Iterator, Optional

import numpy as np
import torch
from numpy.lib.stride_tricks import as_strided

from mpnas.config import AugmentConfig, DataConfig, SamplingConfig
from mpnas.data.prepared import DatasetError, PreparedDataset

Batch = dict[str, tuple[torch.Tensor, torch.Tensor]]
CENTRE_CROP = AugmentConfig(random_crop=False, flip=False, pad=0)


def domain_probabilities(sizes: dict[str, int], sampling: SamplingConfig) -> dict[str, float]:
    """p_d for `proportional` (n_d) and `temperature` (n_d^(1/T)); `uniform` gives 1/D."""
    names = list(sizes)
    n = np.array([max(sizes[d], 0) for d in names], dtype=np.float64)
    if sampling.strategy == "uniform":
        p = np.ones_like(n)
    elif sampling.strategy == "proportional":
        p = n
    else:
        p = n ** (1.0 / sampling.temperature)
    if p.sum() <= 0:
        raise DatasetError("every selected domain is empty")
    p = p / p.sum()
    return dict(zip(names, p.tolist()))


class Normalizer:
    """uint8 NHWC -> float NCHW normalised with a domain's mean/std."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...], device: torch.device):
        self.mean = torch.tensor(mean, dtype=torch.float32, device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32, device=device).view(1, 3, 1, 1)
        self.np_scale = (1.0 / (255.0 * np.asarray(std, np.float32))).reshape(3, 1, 1)
        self.np_bias = (-np.asarray(mean, np.float32) / np.asarray(std, np.float32)).reshape(3, 1, 1)

    def __call__(self, x_uint8_nhwc: torch.Tensor) -> torch.Tensor:
        # the layout change runs on uint8 and the float ops on contiguous memory: several times faster on CPU
        x = x_uint8_nhwc.permute(0, 3, 1, 2).contiguous().float().div_(255.0)
        return x.sub_(self.mean).div_(self.std)

    def nchw(self, x_uint8_nchw: torch.Tensor) -> torch.Tensor:
        """__call__ for crops already in NCHW order (the same float ops, so the same values)."""
        return x_uint8_nchw.float().div_(255.0).sub_(self.mean).div_(self.std)

    def numpy_nchw(self, x_uint8_nchw: np.ndarray, out: Optional[np.ndarray] = None) -> torch.Tensor:
        """The same on the CPU for crops in NCHW order (any memory layout), in single-threaded numpy (small-batch
        torch ops pay for thread hand-offs, which on a busy 2-core machine cost milliseconds each): two passes into
        `out` (default: a new C-contiguous float32 array). uint8 -> float32 is exact, then a float32 multiply and
        add."""
        out = np.empty(x_uint8_nchw.shape, np.float32) if out is None else out
        np.multiply(x_uint8_nchw, self.np_scale, out=out)
        return torch.from_numpy(np.add(out, self.np_bias, out=out))


def center_crop(x: torch.Tensor, crop: int) -> torch.Tensor:
    """x: (N, C, H, W)."""
    h, w = x.shape[-2:]
    top, left = (h - crop) // 2, (w - crop) // 2
    return x[..., top:top + crop, left:left + crop]


def crop_windows(src: np.ndarray, crop: int, flipped: bool = False) -> np.ndarray:
    """Read-only view (N, H-crop+1, W-crop+1, C, crop, crop) of NHWC images: [n, top, left] is image n's crop at
    (top, left) in CHW order, columns reversed when `flipped`.

    Why: [n, top, left] copies a crop once, straight from the memory map and already in the network's NCHW order,
    as one strided block copy instead of a gather of crop*crop*C bytes through index grids.
    """
    n, h, w, c = src.shape
    s0, s1, s2, s3 = src.strides
    shape = (n, h - crop + 1, w - crop + 1, c, crop, crop)
    if not flipped:
        return as_strided(src, shape, (s0, s1, s2, s3, s1, s2), writeable=False)
    return as_strided(src[:, :, crop - 1:], shape, (s0, s1, s2, s3, s1, -s2), writeable=False)


class CropSource:
    """Plain and column-reversed crop windows of one NHWC uint8 array (a domain's memory map, or a padded batch)."""

    def __init__(self, src: np.ndarray, crop: int):
        self.images, self.shape = src, src.shape
        self.plain, self.flipped = crop_windows(src, crop), crop_windows(src, crop, flipped=True)

    def gather(self, idx: np.ndarray, tops: np.ndarray, lefts: np.ndarray, flip: Optional[np.ndarray]
               ) -> np.ndarray:
        """uint8 C-contiguous (k, C, crop, crop) crops of images `idx`, one window copy per image.

        Why a loop: numpy's fancy indexing copies a column-reversed window ~30x slower than a plain one, and into
        its own NHWC-ordered result ~5x slower than into a contiguous NCHW row; one copy each costs ~1-2 us.
        """
        x = np.empty((len(idx),) + self.plain.shape[3:], np.uint8)
        flips = [False] * len(idx) if flip is None else flip.tolist()
        for i, (n, t, left, f) in enumerate(zip(idx.tolist(), tops.tolist(), lefts.tolist(), flips)):
            x[i] = (self.flipped if f else self.plain)[n, t, left]
        return x


def draw_augment(n: int, h: int, w: int, crop: int, aug: AugmentConfig, gen: torch.Generator
                 ) -> tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]:
    """Crop offsets (tops, lefts) and flips of n images of h x w (after padding); None when `aug` never flips.

    The generator draws tops, lefts, then flips, and only what `aug` needs: this order is what makes a seed's batches
    (and a resumed run's) the same as before.
    """
    if aug.random_crop and (h > crop or w > crop):
        tops = torch.randint(0, h - crop + 1, (n,), generator=gen).numpy()
        lefts = torch.randint(0, w - crop + 1, (n,), generator=gen).numpy()
    else:
        tops, lefts = np.full(n, (h - crop) // 2), np.full(n, (w - crop) // 2)
    flip = (torch.rand(n, generator=gen) < 0.5).numpy() if aug.flip else None
    return tops, lefts, flip


def augment_uint8(source: CropSource, idx: np.ndarray, crop: int, aug: AugmentConfig, gen: torch.Generator
                  ) -> np.ndarray:
    """Per-sample random crop (after optional reflect padding) and horizontal flip: uint8 (k, C, crop, crop).

    Runs before normalisation, on uint8: cheaper than float ops on the batch, and the result is the same because
    crop, flip and padding commute with the per-channel normalisation.
    """
    if aug.pad:
        p = aug.pad
        batch = np.pad(np.asarray(source.images[idx]), ((0, 0), (p, p), (p, p), (0, 0)), mode="reflect")
        source, idx = CropSource(batch, crop), np.arange(len(idx))
    _, h, w, _ = source.shape
    tops, lefts, flip = draw_augment(len(idx), h, w, crop, aug, gen)
    return source.gather(idx, tops, lefts, flip)


class EpochCycle:
    """Endless epochs over an index order: `_chunks(k)` takes the next k positions, drawing a new order (the
    subclass's `_new_order`) whenever one is used up. Shared by the host and the device-resident streams."""

    order: object
    pos: int
    n: int

    def _new_order(self):  # pragma: no cover - every subclass defines it
        raise NotImplementedError

    def _chunks(self, k: int) -> list:
        out = []
        while k > 0:
            if self.pos >= self.n:
                self.order, self.pos = self._new_order(), 0
            chunk = self.order[self.pos:self.pos + k]
            self.pos += len(chunk)
            k -= len(chunk)
            out.append(chunk)
        return out


class DomainStream(EpochCycle):
    """Endless shuffled epochs over one domain/split (optionally class-balanced), with resumable position."""

    def __init__(self, labels: np.ndarray, seed: int, class_balanced: bool = False):
        self.labels = np.asarray(labels)
        self.n = len(self.labels)
        if self.n == 0:
            raise DatasetError("cannot sample batches from an empty split")
        self.class_balanced = class_balanced
        self.rng = np.random.default_rng(seed)
        self.order = self._new_order()
        self.pos = 0

    def _new_order(self) -> np.ndarray:
        if not self.class_balanced:
            return self.rng.permutation(self.n)
        classes, inv = np.unique(self.labels, return_inverse=True)
        w = 1.0 / np.bincount(inv)[inv]
        return self.rng.choice(self.n, size=self.n, replace=True, p=w / w.sum())

    def take(self, k: int) -> np.ndarray:
        return np.sort(np.concatenate(self._chunks(k)))  # sorted indices read the memmap sequentially

    def state_dict(self) -> dict:
        return {"rng": self.rng.bit_generator.state, "order": self.order.copy(), "pos": self.pos}

    def load_state_dict(self, s: dict) -> None:
        self.rng.bit_generator.state = s["rng"]
        self.order, self.pos = np.asarray(s["order"]), int(s["pos"])


class MultiDomainLoader:
    """Training batches for several domains at once.

    `uniform` draws `batch_size` images from every domain each step. `proportional`/`temperature` split the step's
    `batch_size * D` images across domains by p_d (multinomial), so a step may omit a domain.
    `next_batch()` returns {domain: (x float (N,3,crop,crop) normalised, y int64 (N,))} on `device`.
    """

    kind = "host"  # what state_dict/load_state_dict hold (mpnas.data.device.DeviceResidentLoader: device_resident)

    def __init__(self, ds: PreparedDataset, domains: list[str], split: str, batch_size: int, cfg: DataConfig,
                 seed: int = 0, device: Optional[torch.device] = None, augment: bool = True):
        self.ds, self.domains, self.split, self.batch_size, self.cfg = ds, list(domains), split, batch_size, cfg
        self.device = device or torch.device("cpu")
        self.augment = augment
        self.crop = cfg.crop
        if self.crop > ds.size:
            raise DatasetError(f"data.crop={self.crop} exceeds the prepared size {ds.size} of {ds.root}")
        self.images = {d: ds.images(d, split) for d in self.domains}
        self.labels = {d: np.asarray(ds.labels(d, split)) for d in self.domains}
        for d in self.domains:
            if len(self.labels[d]) == 0:
                raise DatasetError(f"{ds.root}: domain {d!r} has an empty {split!r} split")
            if (self.labels[d] < 0).any():
                raise DatasetError(f"{ds.root}: domain {d!r} split {split!r} has no labels; cannot train on it")
        self.streams = {d: DomainStream(self.labels[d], seed * 1000 + i, cfg.sampling.class_balanced)
                        for i, d in enumerate(self.domains)}
        self.norm = {d: Normalizer(ds.info(d).mean, ds.info(d).std, self.device) for d in self.domains}
        self.probs = domain_probabilities({d: len(self.labels[d]) for d in self.domains}, cfg.sampling)
        self.rng = np.random.default_rng(seed + 7)
        self.gen = torch.Generator().manual_seed(seed + 11)
        self.step = 0
        # without augmentation a batch is the centre crop: no padding, no flip, no generator draws
        self.augs = {d: cfg.augment_for(d) if augment else CENTRE_CROP for d in self.domains}
        self.sources = {d: CropSource(self.images[d], self.crop) for d in self.domains}

    def _counts(self) -> dict[str, int]:
        if self.cfg.sampling.strategy == "uniform":
            return {d: self.batch_size for d in self.domains}
        total = self.batch_size * len(self.domains)
        draws = self.rng.multinomial(total, [self.probs[d] for d in self.domains])
        return {d: int(k) for d, k in zip(self.domains, draws) if k > 0}

    def domain_batch(self, domain: str, k: int, out: Optional[np.ndarray] = None
                     ) -> tuple[torch.Tensor, torch.Tensor]:
        """k images of `domain`; on the CPU written into `out` (float32 (k, 3, crop, crop)) when given."""
        idx = self.streams[domain].take(k)
        x = augment_uint8(self.sources[domain], idx, self.crop, self.augs[domain], self.gen)
        y = torch.from_numpy(self.labels[domain][idx]).to(self.device)
        if self.device.type == "cpu":
            return self.norm[domain].numpy_nchw(x, out), y
        return self.norm[domain].nchw(torch.from_numpy(x).to(self.device, non_blocking=True)), y

    def next_batch(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        self.step += 1
        counts = self._counts()
        if self.kind != "host" or self.device.type != "cpu":  # device-resident (mpnas.data.device) or GPU host path
            return {d: self.domain_batch(d, k) for d, k in counts.items()}
        return self._cpu_step(counts)

    def _cpu_step(self, counts: dict[str, int]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """All domains' images of a step in one new float32 array, each domain a contiguous slice of it.

        Why one array: the allocator keeps one freed step-sized block for the next step, while ten smaller blocks
        freed together are handed back to the OS and every page of the next step's batch faults in again (about
        a third of a step's time on a 2-core machine). Batches of different steps never share memory.
        """
        out = np.empty((sum(counts.values()), 3, self.crop, self.crop), np.float32)
        batch, at = {}, 0
        for d, k in counts.items():
            batch[d] = self.domain_batch(d, k, out[at:at + k])
            at += k
        return batch

    def __iter__(self) -> Iterator[dict[str, tuple[torch.Tensor, torch.Tensor]]]:
        while True:
            yield self.next_batch()

    def state_dict(self) -> dict:
        return {"streams": {d: s.state_dict() for d, s in self.streams.items()}, "rng": self.rng.bit_generator.state,
                "gen": self.gen.get_state(), "step": self.step}

    def load_state_dict(self, s: dict) -> None:
        if s.get("kind", "host") != self.kind:  # mpnas.data.device writes kind=device_resident; its state differs
            resolved = {"host": "off", "device_resident": "on"}
            raise ValueError(f"the checkpoint's batches came with data.device_resident resolved to "
                             f"{resolved.get(s.get('kind', 'host'), '?')}, this run resolves it to "
                             f"{resolved[self.kind]}; resume with the same setting on the same kind of device")
        for d, st in s["streams"].items():
            self.streams[d].load_state_dict(st)
        self.rng.bit_generator.state = s["rng"]
        self.gen.set_state(s["gen"])
        self.step = int(s["step"])


def iterate_split(ds: PreparedDataset, domain: str, split: str, batch_size: int, crop: int,
                  device: Optional[torch.device] = None, limit: Optional[int] = None
                  ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Deterministic evaluation batches (centre crop, no augmentation) over one domain/split, in order."""
    device = device or torch.device("cpu")
    images, labels = ds.images(domain, split), np.asarray(ds.labels(domain, split))
    norm = Normalizer(ds.info(domain).mean, ds.info(domain).std, device)
    n = len(labels) if limit is None else min(limit, len(labels))
    for i in range(0, n, batch_size):
        j = min(n, i + batch_size)
        x = torch.from_numpy(np.array(images[i:j])).to(device)
        yield center_crop(norm(x), crop).contiguous(), torch.from_numpy(np.array(labels[i:j])).to(device)
