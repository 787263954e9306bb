"""mpnas: multi-path neural architecture search for on-device multi-domain image classification."""

import os

# Before torch loads libgomp: its default busy-wait at every parallel-region barrier makes the many small kernels of
# a search/training step 5-10x slower when the cores are shared with other processes (BENCHMARKS.md, search
# section); waiting passively avoids that. An OMP_WAIT_POLICY set by the user wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
