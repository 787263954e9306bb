"""The canonical prepared dataset: one uint8 array per domain and split, read memory-mapped.

Every source (embedded generator, Visual Decathlon, ImageFolder) is written to this one layout, so everything after
ingestion reads one format:

    <dir>/meta.json                      format, size, source, domains -> classes, split sizes, mean/std
    <dir>/stats.json                     counts, class histograms, skipped items
    <dir>/manifest.parquet               one row per image: domain, split, index, label, class_name, source_file, sha1
    <dir>/<domain>/<split>.images.npy    uint8 (N, S, S, 3)
    <dir>/<domain>/<split>.labels.npy    int64 (N,), -1 where the split has no labels

Splits: `train` (what the weights learn from), `searchval` (held out of the original train split for the
controllers' reward), `val`, `test`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional

import numpy as np

FORMAT = "mpnas.prepared/1"
SPLITS = ("train", "searchval", "val", "test")


class DatasetError(ValueError):
    """A prepared dataset (or an input to `prepare`) is missing or malformed; the message names the file/entry."""


@dataclass(frozen=True)
class DomainInfo:
    name: str
    classes: tuple[str, ...]
    split_sizes: dict[str, int]
    labeled: dict[str, bool]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    @property
    def num_classes(self) -> int:
        return len(self.classes)


class PreparedDataset:
    """Read access to a prepared dataset directory (arrays are memory-mapped, never decoded per image)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        meta_path = self.root / "meta.json"
        if not meta_path.is_file():
            raise DatasetError(f"{self.root}: not a prepared dataset (no meta.json). "
                               f"Create one with `mpnas data prepare --source embedded --out {self.root}`.")
        try:
            self.meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise DatasetError(f"{meta_path}: not valid JSON ({exc})") from None
        if not isinstance(self.meta, dict) or self.meta.get("format") != FORMAT:
            found = self.meta.get("format") if isinstance(self.meta, dict) else type(self.meta).__name__
            raise DatasetError(f"{meta_path}: format {found!r}, expected {FORMAT!r}")
        try:
            self.size: int = int(self.meta["size"])
            self.domains_info: dict[str, DomainInfo] = {
                name: DomainInfo(name, tuple(d["classes"]), dict(d["splits"]), dict(d["labeled"]),
                                 tuple(d["mean"]), tuple(d["std"]))
                for name, d in self.meta["domains"].items()
            }
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise DatasetError(f"{meta_path}: malformed ({type(exc).__name__}: {exc}); re-create the dataset with "
                               f"`mpnas data prepare --overwrite`") from None
        self._cache: dict[tuple[str, str, str], np.ndarray] = {}

    @property
    def domains(self) -> list[str]:
        return list(self.domains_info)

    @property
    def content_hash(self) -> str:
        return str(self.meta.get("content_hash", ""))

    def info(self, domain: str) -> DomainInfo:
        try:
            return self.domains_info[domain]
        except KeyError:
            raise DatasetError(f"{self.root}: unknown domain {domain!r}; available: {', '.join(self.domains)}") from None

    def num_classes(self, domain: str) -> int:
        return self.info(domain).num_classes

    def has_labels(self, domain: str, split: str) -> bool:
        return bool(self.info(domain).labeled.get(split, False)) and self.split_size(domain, split) > 0

    def split_size(self, domain: str, split: str) -> int:
        return int(self.info(domain).split_sizes.get(split, 0))

    def _array(self, domain: str, split: str, what: str) -> np.ndarray:
        key = (domain, split, what)
        if key not in self._cache:
            self._cache[key] = self._open_checked(domain, split, what)
        return self._cache[key]

    def _open_checked(self, domain: str, split: str, what: str) -> np.ndarray:
        """Open one array memory-mapped and check it against meta.json: a truncated or tampered file is an error
        naming it, not a crash (or a label index out of range) deep inside training."""
        info = self.info(domain)
        path = self.root / domain / f"{split}.{what}.npy"
        hint = "re-create the dataset with `mpnas data prepare --overwrite`"
        if not path.is_file():
            raise DatasetError(f"{path}: missing array for domain {domain!r} split {split!r}; {hint}")
        try:
            arr = np.load(path, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise DatasetError(f"{path}: unreadable or truncated array ({exc}); {hint}") from None
        n = self.split_size(domain, split)
        if what == "images":
            expected = (n, self.size, self.size, 3)
            if arr.dtype != np.uint8 or arr.shape != expected:
                raise DatasetError(f"{path}: expected uint8 {expected}, found {arr.dtype} {arr.shape}; {hint}")
        else:
            if arr.dtype != np.int64 or arr.shape != (n,):
                raise DatasetError(f"{path}: expected int64 ({n},), found {arr.dtype} {arr.shape}; {hint}")
            lo = -1 if not info.labeled.get(split, False) else 0
            if n and (int(arr.min()) < lo or int(arr.max()) >= info.num_classes):
                raise DatasetError(f"{path}: labels must lie in [{lo}, {info.num_classes - 1}] (domain {domain!r} "
                                   f"has {info.num_classes} classes), found {int(arr.min())}..{int(arr.max())}; "
                                   f"{hint}")
        return arr

    def problems(self) -> list[str]:
        """Every array that is missing, truncated or inconsistent with meta.json (empty when healthy)."""
        found = []
        for d in self.domains:
            for split in SPLITS:
                if split not in self.info(d).split_sizes:
                    continue
                for what in ("images", "labels"):
                    try:
                        self._array(d, split, what)
                    except DatasetError as exc:
                        found.append(str(exc))
        return found

    def images(self, domain: str, split: str) -> np.ndarray:
        """uint8 (N, S, S, 3), memory-mapped."""
        return self._array(domain, split, "images")

    def labels(self, domain: str, split: str) -> np.ndarray:
        """int64 (N,); -1 where the split carries no labels."""
        return self._array(domain, split, "labels")

    def require_domains(self, domains: Iterable[str], owner: str) -> None:
        """Refuse domains that `owner` (data.domains, a model directory, a genotypes file) needs and the data lacks."""
        missing = [d for d in domains if d not in self.domains_info]
        if missing:
            raise DatasetError(f"{owner}: domain(s) {missing} are not in the prepared data {self.root} "
                               f"(it has {', '.join(self.domains)})")

    def subset(self, domains: Optional[list[str]]) -> list[str]:
        """Validate a domain selection (None = all) and return it in dataset order."""
        if domains is None:
            return self.domains
        self.require_domains(domains, "data.domains")
        return [d for d in self.domains if d in domains]


# ------------------------------------------------------------------------------------------------ writing
def channel_stats(images: np.ndarray, chunk: int = 4096) -> tuple[list[float], list[float]]:
    """Per-channel mean/std in [0, 1] units, computed in chunks (float64 accumulators)."""
    n = len(images)
    if n == 0:
        return [0.5, 0.5, 0.5], [0.25, 0.25, 0.25]
    s = np.zeros(3)
    ss = np.zeros(3)
    count = 0
    for i in range(0, n, chunk):
        x = np.asarray(images[i:i + chunk], dtype=np.float64) / 255.0
        s += x.sum(axis=(0, 1, 2))
        ss += (x * x).sum(axis=(0, 1, 2))
        count += x.shape[0] * x.shape[1] * x.shape[2]
    mean = s / count
    std = np.sqrt(np.maximum(ss / count - mean * mean, 1e-12))
    return [float(v) for v in mean], [float(max(v, 1e-3)) for v in std]


def write_split(root: Path, domain: str, split: str, images: np.ndarray, labels: np.ndarray) -> None:
    """Write one domain/split pair of arrays (call inside an atomic_dir)."""
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise DatasetError(f"{domain}/{split}: images must be uint8 (N,S,S,3), got {images.dtype} {images.shape}")
    if len(images) != len(labels):
        raise DatasetError(f"{domain}/{split}: {len(images)} images but {len(labels)} labels")
    (root / domain).mkdir(parents=True, exist_ok=True)
    np.save(root / domain / f"{split}.images.npy", np.ascontiguousarray(images))
    np.save(root / domain / f"{split}.labels.npy", np.asarray(labels, dtype=np.int64))


def hash_arrays(root: Path) -> str:
    """Content hash over every array file (sorted), the dataset's version for lineage."""
    h = hashlib.sha256()
    for p in sorted(root.glob("*/*.npy")):
        h.update(str(p.relative_to(root)).encode())
        with open(p, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def write_meta(root: Path, size: int, source: str, domains: dict[str, dict], extra: Optional[dict] = None) -> dict:
    """Write meta.json. `domains[name]` needs: classes, splits (name->count), labeled (name->bool), mean, std."""
    meta = {"format": FORMAT, "size": int(size), "source": source, "domains": domains,
            "content_hash": hash_arrays(root)}
    if extra:
        meta.update(extra)
    (root / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    return meta
