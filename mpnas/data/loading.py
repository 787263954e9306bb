"""Fast multi-domain batches from a prepared dataset: index the memory-mapped arrays, augment on tensors.

No per-image decoding happens in the training loop: a batch is one fancy-index into a uint8 array, then crop,
flip and normalisation run vectorised in torch (on the training device when it is a GPU).
"""

from __future__ import annotations

from typing import Iterator, Optional

import numpy as np
import torch

from mpnas.config import AugmentConfig, DataConfig, SamplingConfig
from mpnas.data.prepared import DatasetError, PreparedDataset

Batch = dict[str, tuple[torch.Tensor, torch.Tensor]]


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

    def numpy(self, x_uint8_nhwc: np.ndarray) -> torch.Tensor:
        """The same on the CPU, in single-threaded numpy: small-batch torch ops pay for thread hand-offs, which on a
        busy 2-core machine cost milliseconds each."""
        x = x_uint8_nhwc.transpose(0, 3, 1, 2).astype(np.float32)
        return torch.from_numpy(np.ascontiguousarray(x * self.np_scale + self.np_bias))


def center_crop(x: torch.Tensor, crop: int) -> torch.Tensor:
    """x: (N, C, H, W)."""
    h, w = x.shape[-2:]
    top, left = (h - crop) // 2, (w - crop) // 2
    return x[..., top:top + crop, left:left + crop]


def augment_uint8(x: np.ndarray, crop: int, aug: AugmentConfig, gen: torch.Generator) -> np.ndarray:
    """Per-sample random crop (after optional reflect padding) and horizontal flip of uint8 NHWC images.

    Runs before normalisation, on uint8, with one gather for all crops: cheaper than float ops on the batch, and
    the result is the same because crop, flip and padding commute with the per-channel normalisation.
    """
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
            x = augment_uint8(x, self.crop, self.cfg.augment_for(domain), self.gen)
        else:
            top = (x.shape[1] - self.crop) // 2
            x = x[:, top:top + self.crop, top:top + self.crop]
        y = torch.from_numpy(self.labels[domain][idx]).to(self.device)
        if self.device.type == "cpu":
            return self.norm[domain].numpy(x), y
        return self.norm[domain](torch.from_numpy(np.ascontiguousarray(x)).to(self.device, non_blocking=True)), y

    def next_batch(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        self.step += 1
        return {d: self.domain_batch(d, k) for d, k in self._counts().items()}

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
