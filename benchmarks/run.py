"""`make bench [BENCH=name]`: run benchmarks/bench_<name>.py (or all of them) and let each update BENCHMARKS.md."""

from __future__ import annotations

import importlib
import pkgutil
import sys
import time
from pathlib import Path


def available() -> list[str]:
    here = Path(__file__).parent
    return sorted(m.name[len("bench_"):] for m in pkgutil.iter_modules([str(here)]) if m.name.startswith("bench_"))


def main(argv: list[str]) -> int:
    names = available()
    wanted = argv or ["all"]
    selected = names if "all" in wanted else wanted
    unknown = [n for n in selected if n not in names]
    if unknown:
        print(f"error: unknown benchmark(s) {unknown}; available: {', '.join(names)}", file=sys.stderr)
        return 2
    for name in selected:
        print(f"== bench {name} ==", flush=True)
        t0 = time.perf_counter()
        result = importlib.import_module(f"benchmarks.bench_{name}").main()
        rc = result if isinstance(result, int) else 0  # some benchmarks return their figures
        print(f"== bench {name} done in {time.perf_counter() - t0:.0f} s (rc={rc}) ==", flush=True)
        if rc:
            return int(rc)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
