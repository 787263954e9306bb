"""`prepare`: turn a source dataset (embedded, Visual Decathlon, ImageFolder) into the canonical prepared format.

Steps per domain: list and validate the source (the readers), cap train (smoke runs), hold out a stratified
`searchval` split from train, decode every image once (any mode -> RGB, shorter side -> N, centre crop), and write
uint8 arrays, manifest.parquet, stats.json and meta.json. The whole directory is built in a temp dir and renamed at
the end, so an error or Ctrl-C leaves nothing behind. Bad input stops with an error naming the file and entry;
`on_bad_image="skip"` skips only broken images (absent, unreadable, truncated) and path escapes (never opened), and
lists them in stats.json.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import tempfile
import time
import zlib
from concurrent.futures import Executor, ProcessPoolExecutor
from pathlib import Path
from typing import Callable, Iterator, Literal, Optional, Sequence

import numpy as np

from mpnas.config import DataConfig
from mpnas.data.decathlon import read_decathlon
from mpnas.data.embedded import generate_embedded
from mpnas.data.imagefolder import read_imagefolder
from mpnas.data.images import DecodeResult, decode_many
from mpnas.data.prepared import DatasetError, channel_stats, write_meta
from mpnas.data.sources import SourceDomain, SourceItem
from mpnas.utils.io import DiskFullError, atomic_dir, atomic_write_json, disk_full, is_disk_full, refuse_overlap

Source = Literal["embedded", "decathlon", "imagefolder"]
OUT_SPLITS = ("train", "searchval", "val", "test")
CHUNK = 256
PARALLEL_MIN_ITEMS = 1500  # below this, a process pool costs more than it saves


# ------------------------------------------------------------------------------------------------- split logic
def _domain_rng(seed: int, domain: str, purpose: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(domain.encode()), zlib.crc32(purpose.encode())])


def cap_train(items: list[SourceItem], limit: Optional[int], seed: int, domain: str) -> list[SourceItem]:
    """Keep `limit` train items spread evenly over classes (a seeded choice), in their original order."""
    if limit is None or len(items) <= limit:
        return items
    rng = _domain_rng(seed, domain, "cap")
    perm = rng.permutation(len(items))
    labels = np.array([items[i].label for i in perm])
    rank = np.zeros(len(perm), np.int64)
    seen: dict[int, int] = {}
    for j, y in enumerate(labels.tolist()):
        rank[j] = seen.get(y, 0)
        seen[y] = rank[j] + 1
    keep = np.sort(perm[np.lexsort((np.arange(len(perm)), rank))[:limit]])
    return [items[i] for i in keep]


def split_searchval(items: list[SourceItem], fraction: float, seed: int, domain: str
                    ) -> tuple[list[SourceItem], list[SourceItem]]:
    """Stratified, seeded hold-out of round(fraction * n) items: each class gives floor(fraction * n_c), the rest
    goes to the classes with the largest remainders; every class keeps at least one training item."""
    rng = _domain_rng(seed, domain, "searchval")
    by_class: dict[int, list[int]] = {}
    for i, it in enumerate(items):
        by_class.setdefault(it.label, []).append(i)
    labels = sorted(by_class)
    exact = np.array([fraction * len(by_class[c]) for c in labels])
    take = np.floor(exact).astype(int)
    extra = int(round(fraction * len(items))) - int(take.sum())
    for j in np.argsort(-(exact - take), kind="stable")[:max(0, extra)]:
        take[j] += 1
    held: set[int] = set()
    for c, k in zip(labels, take):
        idx = by_class[c]
        k = min(int(k), len(idx) - 1)
        if k > 0:
            held.update(np.asarray(idx)[rng.choice(len(idx), size=k, replace=False)].tolist())
    train = [it for i, it in enumerate(items) if i not in held]
    searchval = [it for i, it in enumerate(items) if i in held]
    return train, searchval


# ---------------------------------------------------------------------------------------------------- decoding
def _decode(items: list[SourceItem], size: int, pool: Optional[Executor]) -> Iterator[DecodeResult]:
    chunks = [([str(it.path) for it in items[i:i + CHUNK]], size) for i in range(0, len(items), CHUNK)]
    results = pool.map(decode_many, chunks) if pool is not None else map(decode_many, chunks)
    for chunk in results:
        yield from chunk


def _reserved_memmap(path: Path, shape: tuple[int, ...]) -> np.ndarray:
    """A writable .npy memmap whose blocks are allocated up front: a full disk then fails here with ENOSPC (an
    error we can report) instead of killing the process with SIGBUS when a page of a sparse file is written."""
    try:
        array = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=shape)
    except OSError as exc:
        raise disk_full(exc, path) if is_disk_full(exc) else exc
    nbytes = os.path.getsize(path)
    if nbytes:
        fd = os.open(path, os.O_RDWR)
        try:
            os.posix_fallocate(fd, 0, nbytes)
        except OSError as exc:
            del array
            raise disk_full(exc, path) if is_disk_full(exc) else exc
        finally:
            os.close(fd)
    return array


def _check_free_space(out: Path, needed: int) -> None:
    """Refuse before writing when the arrays alone cannot fit on the output's file system."""
    probe = out.absolute()
    while not probe.exists():
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if needed > free:
        raise DiskFullError(28, f"{out}: the prepared arrays need about {needed / 2**20:,.0f} MiB but "
                                f"{probe} has {free / 2**20:,.0f} MiB free; free some space, lower --size or "
                                f"choose another --out")


class _SplitWriter:
    """Writes one split's images straight into a .npy memmap (no full copy in RAM), compacting skipped slots."""

    def __init__(self, root: Path, domain: str, split: str, n: int, size: int):
        (root / domain).mkdir(parents=True, exist_ok=True)
        self.path = root / domain / f"{split}.images.npy"
        self.labels_path = root / domain / f"{split}.labels.npy"
        self.size = size
        self.array = _reserved_memmap(self.path, (n, size, size, 3))
        self.count = 0

    def add(self, image: np.ndarray) -> None:
        self.array[self.count] = image
        self.count += 1

    def close(self, labels: list[int]) -> np.ndarray:
        if self.count < len(self.array):
            tmp = self.path.with_suffix(".tmp.npy")
            small = _reserved_memmap(tmp, (self.count, self.size, self.size, 3))
            small[:] = self.array[:self.count]
            small.flush()
            del small
            del self.array
            tmp.replace(self.path)
        else:
            self.array.flush()
            del self.array
        np.save(self.labels_path, np.asarray(labels, dtype=np.int64))
        return np.load(self.path, mmap_mode="r")


# ----------------------------------------------------------------------------------------------------- prepare
def read_source(source: Source, root: Optional[Path], domains: Optional[Sequence[str]]) -> list[SourceDomain]:
    if source == "imagefolder":
        if root is None:
            raise DatasetError("--source imagefolder needs --root (root/<domain>/{train,val}/<class>/<image>)")
        return read_imagefolder(root, domains)
    if root is None:
        raise DatasetError(f"--source {source} needs --root (the directory holding annotations/ and data/)")
    return read_decathlon(root, domains)


def _bad(item: SourceItem, domain: str, split: str, reason: str) -> dict:
    return {"domain": domain, "split": split, "entry": item.entry, "file": item.source_file, "reason": reason}


# The DataConfig fields `prepare` reads besides `prepared_dir` (its default output): the DVC stage of the ingest step
# watches exactly these values, so a change to a training-only field (crop, augment, sampling) does not re-run it.
PREPARE_FIELDS = ("source", "root", "domains", "size", "searchval_fraction", "max_train_per_domain", "on_bad_image",
                  "seed")


def prepare(cfg: DataConfig, out: Optional[str | Path] = None, *, overwrite: bool = False, scale: float = 1.0,
            workers: int = 2, log: Callable[[str], None] = print) -> dict:
    """Build the prepared dataset `cfg` describes at `out` (default `cfg.prepared_dir`); return its meta.json.

    The limits (size, searchval fraction, bad-image policy) are DataConfig's. `source="embedded"` without `root`
    generates the embedded set (cfg.seed, `scale`) into a temp dir first. `scale` and `workers` are not part of
    the config: `scale` only shrinks the generated set, and `workers` does not change the output."""
    out = Path(out if out is not None else cfg.prepared_dir)
    root = cfg.root
    if root is not None:
        refuse_overlap(out, root=root)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} already exists: choose another path or pass --overwrite")
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="mpnas-embedded-") as gen_dir:
        extra: dict = {"seed": cfg.seed, "searchval_fraction": cfg.searchval_fraction,
                       "max_train_per_domain": cfg.max_train_per_domain, "on_bad_image": cfg.on_bad_image}
        if cfg.source == "embedded" and root is None:
            root = Path(gen_dir) / "embedded"
            generate_embedded(root, seed=cfg.seed, size=cfg.size, scale=scale, domains=cfg.domains, workers=workers,
                              log=log)
            extra["generator"] = {"name": "mpnas.data.embedded", "seed": cfg.seed, "scale": scale}
        else:
            extra["source_root"] = str(Path(root).resolve()) if root is not None else None
        listed = read_source(cfg.source, Path(root) if root is not None else None, cfg.domains)
        meta = _prepare_listed(listed, cfg, out, overwrite, workers, extra, log)
    log(f"prepared {len(listed)} domain(s) in {time.perf_counter() - t0:.1f}s -> {out} "
        f"(content hash {meta['content_hash'][:12]})")
    return meta


def _plan(listed: list[SourceDomain], fraction: float, seed: int, cap: Optional[int]
          ) -> dict[str, dict[str, list[SourceItem]]]:
    plan = {}
    for dom in listed:
        train, searchval = split_searchval(cap_train(dom.items["train"], cap, seed, dom.name), fraction, seed,
                                           dom.name)
        plan[dom.name] = {"train": train, "searchval": searchval, "val": dom.items.get("val", []),
                          "test": dom.items.get("test", [])}
    return plan


def _prepare_listed(listed: list[SourceDomain], cfg: DataConfig, out: Path, overwrite: bool, workers: int,
                    extra: dict, log: Callable[[str], None]) -> dict:
    source, size, on_bad_image = cfg.source, cfg.size, cfg.on_bad_image
    plan = _plan(listed, cfg.searchval_fraction, cfg.seed, cfg.max_train_per_domain)
    if on_bad_image == "error":  # listing problems (escapes, absent files) fail fast, before any decoding
        for it in (it for p in plan.values() for items in p.values() for it in items if it.problem):
            raise DatasetError(f"{it.entry}: {it.problem}")
    total = sum(len(v) for p in plan.values() for v in p.values())
    _check_free_space(out, total * size * size * 3)
    use_pool = workers > 1 and total >= PARALLEL_MIN_ITEMS
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) if use_pool else None
    out_rows = _Rows()
    meta_domains: dict[str, dict] = {}
    stats_domains: dict[str, dict] = {}
    try:
        with atomic_dir(out, overwrite=overwrite) as tmp:
            for di, dom in enumerate(listed, 1):
                td = time.perf_counter()
                counts, hist, labeled = {}, {}, {}
                train_arr: Optional[np.ndarray] = None
                for split in OUT_SPLITS:
                    arr, labels = _write_split(tmp, dom, split, plan[dom.name][split], size, pool, on_bad_image,
                                               out_rows)
                    if split == "train":
                        train_arr = arr
                    counts[split] = len(labels)
                    src_split = "train" if split == "searchval" else split
                    labeled[split] = bool(dom.labeled.get(src_split, False))
                    hist[split] = np.bincount([y for y in labels if y >= 0],
                                              minlength=len(dom.classes)).tolist() if labeled[split] else []
                if not counts["train"]:
                    raise DatasetError(f"domain {dom.name!r}: every training image was skipped")
                mean, std = channel_stats(train_arr)
                del train_arr
                meta_domains[dom.name] = {"classes": dom.classes, "splits": counts, "labeled": labeled,
                                          "mean": mean, "std": std}
                stats_domains[dom.name] = {"num_classes": len(dom.classes), "counts": counts,
                                           "class_histogram": hist, "mean": mean, "std": std}
                n = sum(counts.values())
                dt = time.perf_counter() - td
                log(f"[{di}/{len(listed)}] {dom.name:<14s} " + " ".join(f"{s}={counts[s]}" for s in OUT_SPLITS)
                    + f" classes={len(dom.classes)} ({n / max(dt, 1e-9):,.0f} img/s, {dt:.1f}s)")
            _write_tables(tmp, out_rows.manifest, stats_domains, out_rows.skipped, size, source)
            meta = write_meta(tmp, size, source, meta_domains, extra)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    if out_rows.skipped:
        log(f"skipped {len(out_rows.skipped)} bad item(s); listed in {out / 'stats.json'}")
    return meta


class _Rows:
    """What the splits add up: manifest rows (one per stored image) and skipped items (stats.json)."""

    def __init__(self) -> None:
        self.manifest: list[dict] = []
        self.skipped: list[dict] = []


def _write_split(root: Path, dom: SourceDomain, split: str, items: list[SourceItem], size: int,
                 pool: Optional[Executor], on_bad_image: str, rows: _Rows) -> tuple[np.ndarray, list[int]]:
    """Decode and store one split (images memmapped, labels .npy); bad images raise or are skipped and listed."""
    good = [it for it in items if not it.problem]
    rows.skipped.extend(_bad(it, dom.name, split, it.problem) for it in items if it.problem)
    writer = _SplitWriter(root, dom.name, split, len(good), size)
    labels: list[int] = []
    for it, (img, sha1, err) in zip(good, _decode(good, size, pool)):
        if err is not None:
            if on_bad_image == "error":
                raise DatasetError(f"{it.entry}: {err} ({it.path})")
            rows.skipped.append(_bad(it, dom.name, split, err))
            continue
        rows.manifest.append({"domain": dom.name, "split": split, "index": writer.count, "label": it.label,
                              "class_name": dom.classes[it.label] if it.label >= 0 else "",
                              "source_file": it.source_file, "sha1": sha1})
        writer.add(img)
        labels.append(it.label)
    return writer.close(labels), labels


def _write_tables(root: Path, rows: list[dict], stats_domains: dict, skipped: list[dict], size: int,
                  source: str) -> None:
    import pandas as pd

    columns = ["domain", "split", "index", "label", "class_name", "source_file", "sha1"]
    frame = pd.DataFrame(rows, columns=columns).astype({"index": "int64", "label": "int64"})
    frame.to_parquet(root / "manifest.parquet", index=False)
    totals = {s: sum(d["counts"][s] for d in stats_domains.values()) for s in OUT_SPLITS}
    atomic_write_json(root / "stats.json", {"source": source, "size": size, "totals": totals,
                                            "domains": stats_domains, "skipped": skipped})
