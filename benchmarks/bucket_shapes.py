"""Distinct convolution input shapes over N search steps at the mini_real settings, search.bucket_shapes off vs on.

    python -m benchmarks.bucket_shapes [N]      (default 6; about 1 min per step on a loaded 2-core CPU)

The count is the same on any device (shapes do not depend on speed): it says how many shapes a shape-planning
backend such as cuDNN would meet (docs/gpu.md). Random uint8 data with the mini-decathlon's ten domains.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from benchmarks.bench_gpu import (MINI_DECATHLON_CLASSES, base_config, random_prepared, search_step_fn,
                                  with_gpu_options)


class ConvShapes(TorchFunctionMode):
    """Records the input shape of every conv2d call."""

    def __init__(self):
        super().__init__()
        self.shapes: set[tuple[int, ...]] = set()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func is F.conv2d or func is torch.conv2d:
            self.shapes.add(tuple(args[0].shape))
        return func(*args, **(kwargs or {}))


def main(argv: list[str]) -> int:
    from mpnas.data.prepared import PreparedDataset

    n = int(argv[0]) if argv else 6
    cfg = base_config(False)
    with tempfile.TemporaryDirectory(prefix="mpnas-shapes-") as tmp:
        ds = PreparedDataset(random_prepared(Path(tmp) / "r", MINI_DECATHLON_CLASSES, cfg.data.size,
                                             {"train": 128, "searchval": 64, "val": 8, "test": 8}))
        for mode in ("off", "on"):
            step = search_step_fn(with_gpu_options(cfg, mode, "off"), ds, torch.device("cpu"))
            with ConvShapes() as seen:
                for _ in range(n):
                    step()
            sizes = sorted({s[0] for s in seen.shapes})
            print(f"bucket_shapes={mode}: {len(seen.shapes)} distinct conv input shapes over {n} steps, "
                  f"{len(sizes)} batch sizes {sizes}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
