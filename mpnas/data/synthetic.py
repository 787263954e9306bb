"""Tiny synthetic multi-domain datasets written in the prepared layout, for tests and smoke runs.

Each domain's classes are oriented stripe patterns of a class-specific frequency and angle, with a domain-specific
colour and noise level, so a small network learns them in a few steps and domains differ visibly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from mpnas.data.prepared import channel_stats, write_meta, write_split
from mpnas.utils.io import atomic_dir


def _pattern(rng: np.random.Generator, label: int, n_classes: int, size: int, domain_seed: int) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    angle = np.pi * label / n_classes + rng.normal(0, 0.05)
    freq = 2 + (label * 3 + domain_seed) % 5
    phase = rng.uniform(0, 2 * np.pi)
    wave = np.sin(2 * np.pi * freq * (xx * np.cos(angle) + yy * np.sin(angle)) + phase)
    colour = np.array([(domain_seed * 53 % 200) + 40, (domain_seed * 97 % 200) + 40, (domain_seed * 31 % 200) + 40])
    img = 127.5 + 90 * wave[..., None] * (colour / 255.0)[None, None, :]
    img += rng.normal(0, 12 + 4 * (domain_seed % 3), img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def make_synthetic(out: str | Path, domains: Optional[dict[str, int]] = None, per_class: int = 24,
                   size: int = 16, seed: int = 0, overwrite: bool = True) -> Path:
    """Write a prepared dataset: `domains` maps name -> number of classes. Split sizes per class:
    train = per_class, searchval/val/test = max(2, per_class // 4)."""
    domains = domains or {"alpha": 3, "beta": 4}
    out = Path(out)
    small = max(2, per_class // 4)
    counts = {"train": per_class, "searchval": small, "val": small, "test": small}
    with atomic_dir(out, overwrite=overwrite) as tmp:
        meta_domains = {}
        for di, (name, k) in enumerate(domains.items()):
            rng = np.random.default_rng(seed * 7919 + di)
            split_sizes = {}
            for split, per in counts.items():
                labels = np.repeat(np.arange(k), per)
                imgs = np.stack([_pattern(rng, int(c), k, size, di + 1) for c in labels])
                write_split(tmp, name, split, imgs, labels)
                split_sizes[split] = len(labels)
                if split == "train":
                    mean, std = channel_stats(imgs)
            meta_domains[name] = {"classes": [f"c{i}" for i in range(k)], "splits": split_sizes,
                                  "labeled": {s: True for s in counts}, "mean": mean, "std": std}
        write_meta(tmp, size, "synthetic", meta_domains)
    return out
