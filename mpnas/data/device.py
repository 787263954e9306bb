"""Device-resident batches (data.device_resident): the prepared uint8 arrays live on the training device.

Why: on a GPU the host loader copies every batch's images to the device (and a copy from pageable memory waits for
the device's queue). Here each split's uint8 array and labels are uploaded once, at construction; a step then draws
indices, crop offsets and flips with a generator on the device and gathers the augmented crop of every image with one
index operation, so a step copies no image (and reads nothing back) between host and device.

What it computes matches the host loader (mpnas.data.loading): per-domain shuffled epochs (or class-balanced draws),
reflect padding, a random crop and a horizontal flip per image, the domain's normalisation, NCHW float32 batches.
The random draws come from the device's generator, so the batches are the host loader's in distribution, not bit for
bit; the same seed on the same device gives the same batches.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from mpnas.config import AugmentConfig, DataConfig
from mpnas.data.loading import EpochCycle, MultiDomainLoader
from mpnas.data.prepared import DatasetError, PreparedDataset

KIND = "device_resident"
FREE_MEMORY_SHARE = 0.5  # auto uploads only what fits in this share of the free device memory


def split_bytes(ds: PreparedDataset, domains: list[str], split: str) -> int:
    """Bytes the images and labels of `split` take once uploaded."""
    return sum(ds.split_size(d, split) * (ds.size * ds.size * 3 + 8) for d in domains)


def use_device_resident(setting: str, device: torch.device, nbytes: int) -> bool:
    """data.device_resident resolved: on/off as given; auto = on CUDA when `nbytes` fit in half the free memory."""
    if setting != "auto":
        return setting == "on"
    if device.type != "cuda":
        return False
    free, _ = torch.cuda.mem_get_info(device)
    return nbytes <= FREE_MEMORY_SHARE * free


def make_loader(ds: PreparedDataset, domains: list[str], split: str, batch_size: int, cfg: DataConfig,
                seed: int = 0, device: Optional[torch.device] = None, augment: bool = True) -> MultiDomainLoader:
    """The device-resident loader when data.device_resident resolves to on for `device`, else the host loader."""
    device = device or torch.device("cpu")
    if use_device_resident(cfg.device_resident, device, split_bytes(ds, domains, split)):
        return DeviceResidentLoader(ds, domains, split, batch_size, cfg, seed, device, augment)
    return MultiDomainLoader(ds, domains, split, batch_size, cfg, seed, device, augment)


def _reflect(i: torch.Tensor, size: int) -> torch.Tensor:
    """Indices into the reflect-padded image mapped to the stored one (numpy's `reflect`, also for pads > size)."""
    period = 2 * (size - 1)
    i = torch.remainder(i, period)
    return torch.where(i >= size, period - i, i)


def crop_indices(n: int, size: int, crop: int, aug: AugmentConfig, gen: torch.Generator, device: torch.device
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image the source rows and columns (n, crop) of its padded, cropped and flipped view.

    Same choices as mpnas.data.loading.augment_uint8: reflect pad, a uniform random crop (else the centre), a flip
    with probability 1/2; the flip is the columns reversed, so one gather applies all three.
    """
    padded = size + 2 * aug.pad
    if aug.random_crop and padded > crop:
        tops = torch.randint(0, padded - crop + 1, (n,), generator=gen, device=device)
        lefts = torch.randint(0, padded - crop + 1, (n,), generator=gen, device=device)
    else:
        tops = lefts = torch.full((n,), (padded - crop) // 2, device=device)
    ar = torch.arange(crop, device=device)
    rows = _reflect(tops[:, None] + ar - aug.pad, size)
    cols = _reflect(lefts[:, None] + ar - aug.pad, size)
    if aug.flip:
        flip = torch.rand(n, generator=gen, device=device) < 0.5
        cols = torch.where(flip[:, None], cols.flip(1), cols)
    return rows, cols


class DeviceStream(EpochCycle):
    """DomainStream on the device: shuffled epochs (or class-balanced draws) drawn by a device generator."""

    def __init__(self, labels: np.ndarray, seed: int, class_balanced: bool, device: torch.device):
        self.n, self.device = len(labels), device
        if self.n == 0:
            raise DatasetError("cannot sample batches from an empty split")
        self.gen = torch.Generator(device=device).manual_seed(seed)
        self.weights = None
        if class_balanced:
            _, inv = np.unique(labels, return_inverse=True)
            self.weights = torch.as_tensor(1.0 / np.bincount(inv)[inv], dtype=torch.float32, device=device)
        self.order = self._new_order()
        self.pos = 0

    def _new_order(self) -> torch.Tensor:
        if self.weights is None:
            return torch.randperm(self.n, generator=self.gen, device=self.device)
        return torch.multinomial(self.weights, self.n, replacement=True, generator=self.gen)

    def take(self, k: int) -> torch.Tensor:
        """The next k indices (a device tensor); positions are host integers, so no value is read back."""
        out = self._chunks(k)
        return out[0] if len(out) == 1 else torch.cat(out)

    def state_dict(self) -> dict:
        # `order` is replaced, never written in place, so the state can hold it without a copy (or a device read)
        return {"gen": self.gen.get_state(), "order": self.order, "pos": self.pos}

    def load_state_dict(self, s: dict) -> None:
        self.gen.set_state(s["gen"].cpu())
        self.order, self.pos = torch.as_tensor(s["order"]).to(self.device), int(s["pos"])


class DeviceResidentLoader(MultiDomainLoader):
    """MultiDomainLoader whose arrays were uploaded once to `device`; steps run on the device alone."""

    kind = KIND

    def __init__(self, ds: PreparedDataset, domains: list[str], split: str, batch_size: int, cfg: DataConfig,
                 seed: int = 0, device: Optional[torch.device] = None, augment: bool = True):
        super().__init__(ds, domains, split, batch_size, cfg, seed, device, augment)
        dev = self.device
        # np.array: one read of each (read-only, memory-mapped) array into memory we own, then one upload
        self.resident = {d: torch.from_numpy(np.array(self.images[d])).to(dev) for d in self.domains}
        self.resident_labels = {d: torch.from_numpy(np.array(self.labels[d])).to(dev) for d in self.domains}
        self.streams = {d: DeviceStream(self.labels[d], seed * 1000 + i, cfg.sampling.class_balanced, dev)
                        for i, d in enumerate(self.domains)}
        self.gen = torch.Generator(device=dev).manual_seed(seed + 11)
        self.last_index: dict[str, torch.Tensor] = {}  # the indices of the last batch per domain (for checks)

    @property
    def resident_bytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in [*self.resident.values(), *self.resident_labels.values()])

    def domain_batch(self, domain: str, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        idx = self.streams[domain].take(k)
        rows, cols = crop_indices(k, self.ds.size, self.crop, self.augs[domain], self.gen, self.device)
        x = self.resident[domain][idx[:, None, None], rows[:, :, None], cols[:, None, :]]  # (k, crop, crop, 3)
        self.last_index[domain] = idx
        return self.norm[domain](x), self.resident_labels[domain][idx]

    def state_dict(self) -> dict:
        return {**super().state_dict(), "kind": self.kind}
