"""Latency measurement shared by evaluation (eager PyTorch) and export (ExecuTorch, onnxruntime)."""

from __future__ import annotations

import statistics
import time
from typing import Callable


def median_latency_ms(run: Callable[[], object], repeats: int, warmup: int) -> float:
    """Median wall time of `run()` in milliseconds over `repeats` calls after `warmup` untimed calls."""
    for _ in range(warmup):
        run()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        run()
        times.append(time.perf_counter() - t)
    return 1e3 * statistics.median(times)
