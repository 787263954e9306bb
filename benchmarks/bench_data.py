"""Data benchmark: prepare times (embedded default, real mini-decathlon) and training-batch throughput of
MultiDomainLoader vs a per-image PIL torchvision ImageFolder DataLoader, measured in one run.

Run: `make bench BENCH=data` (or `python -m benchmarks.run data`). Writes the `data` section of BENCHMARKS.md.
The mini-decathlon archive is read from $MPNAS_MINI_DECATHLON (default ../shared/data/mini_decathlon_real.tar.xz
next to the repository) and unpacked into a temp dir; without it that part is skipped with a message.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MINI_DEFAULT = ROOT.parent / "shared" / "data" / "mini_decathlon_real.tar.xz"
LOADER_IMAGES = 30_000  # per ImageFolder configuration
FAST_LOADER_IMAGES = 200_000  # MultiDomainLoader: ~0.2 s for 30k images is too short a window on a shared machine


def _cpu_seconds() -> float:
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def timed(fn: Callable[[], object]) -> tuple[float, float]:
    """(wall seconds, CPU seconds incl. finished child processes)."""
    c0, t0 = _cpu_seconds(), time.perf_counter()
    fn()
    return time.perf_counter() - t0, _cpu_seconds() - c0


def check_counts(prepared: Path, raw: Path) -> list[str]:
    """Differences between prepared split sizes and the annotation files (empty list = all equal)."""
    from mpnas.data.prepared import PreparedDataset

    ds = PreparedDataset(prepared)
    bad = []
    for d in ds.domains:
        n = {s: len(json.loads((raw / "annotations" / f"{d}_{s}.json").read_text())["images"])
             for s in ("train", "val", "test")}
        got = {"train": ds.split_size(d, "train") + ds.split_size(d, "searchval"), "val": ds.split_size(d, "val"),
               "test": ds.split_size(d, "test")}
        if got != n:
            bad.append(f"{d}: prepared {got} vs annotations {n}")
    return bad


def loader_throughput(prepared: Path, batch: int, crop: int) -> float:
    import torch

    from mpnas.config import DataConfig
    from mpnas.data.loading import MultiDomainLoader
    from mpnas.data.prepared import PreparedDataset

    ds = PreparedDataset(prepared)
    loader = MultiDomainLoader(ds, ds.domains, "train", batch, DataConfig(crop=crop), seed=0)
    loader.next_batch()
    n, t0 = 0, time.perf_counter()
    with torch.no_grad():
        while n < FAST_LOADER_IMAGES:
            n += sum(len(y) for _, y in loader.next_batch().values())
    return n / (time.perf_counter() - t0)


def imagefolder_throughput(prepared: Path, work: Path, batch: int, crop: int, workers: int) -> float:
    """The usual baseline: PNG files on disk, one PIL decode + transforms per image, torch DataLoader."""
    import torch
    from torchvision import datasets, transforms

    from mpnas.data.prepared import PreparedDataset

    folder = work / "imagefolder"
    if not folder.exists():
        from PIL import Image

        ds = PreparedDataset(prepared)
        for d in ds.domains:
            x, y = ds.images(d, "train"), ds.labels(d, "train")
            for i in range(len(y)):
                p = folder / f"{d}_{int(y[i]):04d}" / f"{i}.png"
                p.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(np.asarray(x[i])).save(p)
    tf = transforms.Compose([transforms.RandomCrop(crop), transforms.RandomHorizontalFlip(), transforms.ToTensor(),
                             transforms.Normalize((0.5, 0.5, 0.5), (0.25, 0.25, 0.25))])
    dl = torch.utils.data.DataLoader(datasets.ImageFolder(str(folder), transform=tf), batch_size=batch,
                                     shuffle=True, num_workers=workers, persistent_workers=workers > 0)
    n, t0 = 0, None
    while n < LOADER_IMAGES:
        for x, y in dl:
            if t0 is None:  # start after the first batch (worker start-up excluded)
                t0 = time.perf_counter()
                continue
            n += len(y)
            if n >= LOADER_IMAGES:
                break
    return n / (time.perf_counter() - t0)


def update_section(text: str, area: str = "data") -> None:
    path = ROOT / "BENCHMARKS.md"
    start, end = f"<!-- {area} -->", f"<!-- /{area} -->"
    body = f"{start}\n{text.rstrip()}\n{end}"
    old = path.read_text() if path.exists() else "# Benchmarks\n"
    if start in old and end in old:
        new = old[:old.index(start)] + body + old[old.index(end) + len(end):]
    else:
        new = old.rstrip() + "\n\n" + body + "\n"
    from mpnas.utils.io import atomic_write_text

    atomic_write_text(path, new)


def main() -> int:
    from mpnas.config import DataConfig
    from mpnas.data.prepare import prepare

    quiet = lambda s: None  # noqa: E731
    load_start = os.getloadavg()[0]
    rows: list[str] = []
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="mpnas-bench-data-") as tmp:
        work = Path(tmp)
        wall, cpu = timed(lambda: prepare(DataConfig(), work / "embedded", log=quiet))
        rows.append(f"| prepare embedded default (generate + prepare, size 36, 2 workers) | {wall:.1f} s wall, "
                    f"{cpu:.1f} s CPU |")
        print(f"embedded: {wall:.1f} s wall, {cpu:.1f} s CPU", flush=True)

        archive = Path(os.environ.get("MPNAS_MINI_DECATHLON", MINI_DEFAULT))
        if archive.is_file():
            raw = work / "mini_raw"
            t_unpack, _ = timed(lambda: tarfile.open(archive).extractall(raw, filter="data"))
            wall, cpu = timed(lambda: prepare(DataConfig(source="decathlon", root=raw), work / "mini", log=quiet))
            bad = check_counts(work / "mini", raw)
            rows.append(f"| prepare real mini-decathlon (31.7k images, unpacked in {t_unpack:.1f} s) | "
                        f"{wall:.1f} s wall, {cpu:.1f} s CPU |")
            notes.append("mini-decathlon counts equal its annotation files (train+searchval, val, test): "
                         + ("yes" if not bad else "NO: " + "; ".join(bad)))
            print(f"mini-decathlon: {wall:.1f} s wall, {cpu:.1f} s CPU; counts ok: {not bad}", flush=True)
        else:
            notes.append(f"mini-decathlon skipped: {archive} not found (set MPNAS_MINI_DECATHLON)")
            print(notes[-1], flush=True)

        batch, crop = 32, 32
        fast = loader_throughput(work / "embedded", batch, crop)
        slow = {w: imagefolder_throughput(work / "embedded", work, batch * 10, crop, w) for w in (0, 2)}
        best = max(slow.values())
        rows.append(f"| MultiDomainLoader (10 domains x {batch}, crop {crop}, augment; {FAST_LOADER_IMAGES:,} "
                    f"images) | {fast:,.0f} img/s ({batch * 10 / fast * 1e3:.1f} ms per step) |")
        for w, v in slow.items():
            rows.append(f"| torchvision ImageFolder + PIL per image, DataLoader num_workers={w} | {v:,.0f} img/s |")
        rows.append(f"| **ratio** MultiDomainLoader / best ImageFolder | **{fast / best:.1f}x** |")
        print(f"loader {fast:,.0f} img/s vs ImageFolder {slow} -> {fast / best:.1f}x", flush=True)

    load = os.getloadavg()[0]
    busy = load_start >= 1.0  # the end figure includes this benchmark's own prepare and DataLoader workers
    text = "\n".join([
        "## Data", "",
        "Reproduce: `make bench BENCH=data` (= `python -m benchmarks.run data`); every figure below is from one run. "
        f"Measured on {os.cpu_count()} CPU cores ({platform.processor() or platform.machine()}), "
        f"{os.environ.get('OMP_NUM_THREADS', 'default')} OMP threads, 1-min load average {load_start:.1f} at the "
        f"start and {load:.1f} at the end (the end figure includes the benchmark's own workers): "
        + ("**the machine was not quiet** (other jobs shared it), so wall times are upper bounds and the loader "
           "ratio is not the quiet-machine figure the target asks for; " if busy else "a quiet machine; ")
        + "CPU seconds include worker processes.", "",
        "| what | result |", "|---|---|", *rows, "", *[f"- {n}" for n in notes]])
    update_section(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
