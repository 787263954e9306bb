"""Mean ± std over seeds of trained-and-tested studies, per method and per domain, from their metrics.json files.

    python -m benchmarks.summarize_studies --out results/mini_real/quick_studies.json \
        mpnas_tied=runs/signal/real mpnas_null=runs/signal/null shared_domain_bn=runs/train_variants/shared_domain_bn

Each NAME=DIR reads DIR/seed*/eval/metrics.json (and DIR/seed*/search/summary.json when present). The per-domain
std over seeds of one fixed architecture (e.g. shared_domain_bn) is the training recipe's own noise; compare it with
the spread across searched architectures before reading anything into a per-domain difference.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Optional

import numpy as np

from mpnas.utils.io import atomic_write_json


def stats(values: list[Optional[float]]) -> Optional[dict[str, Any]]:
    """mean, sample std (None for one value) and the values; None when any value is missing."""
    if not values or any(v is None for v in values):
        return None
    a = np.asarray(values, dtype=float)
    return {"mean": float(a.mean()), "std": float(a.std(ddof=1)) if len(a) > 1 else None, "values": a.tolist()}


def summarize(study_dir: Path) -> dict:
    seeds = sorted(study_dir.glob("seed*/eval/metrics.json"))
    if not seeds:
        raise FileNotFoundError(f"{study_dir}: no seed*/eval/metrics.json")
    metrics = [json.loads(p.read_text()) for p in seeds]
    out = {"seeds": [int(p.parent.parent.name[4:]) for p in seeds]}
    for key in ("mean_top1_test", "params_total", "flops_sum_paths", "flops_prefix_tree", "flops_union"):
        if all(m.get(key) is not None for m in metrics):
            out[key] = stats([m[key] for m in metrics])
    out["nodes_shared"] = stats([m["sharing"]["nodes_shared"] for m in metrics])
    out["nodes_total"] = stats([m["sharing"]["nodes_total"] for m in metrics])
    out["domains"] = {d: stats([m["domains"][d]["top1_test"] for m in metrics]) for d in metrics[0]["domains"]}
    searches = [p.parent.parent / "search" / "summary.json" for p in seeds]
    if all(p.is_file() for p in searches):
        summ = [json.loads(p.read_text()) for p in searches]
        out["search"] = {k: stats([s[k] for s in summ]) for k in ("p_argmax_mean", "nodes", "shared_nodes",
                                                                     "wall_time_s") if all(k in s for s in summ)}
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("studies", nargs="+", metavar="NAME=DIR")
    ap.add_argument("--out", required=True, help="JSON file to write")
    a = ap.parse_args(argv)
    result = {}
    for item in a.studies:
        name, _, path = item.partition("=")
        result[name] = summarize(Path(path))
    atomic_write_json(Path(a.out), result)
    for name, r in result.items():
        t = r["mean_top1_test"]
        print(f"{name:22s} test {100 * t['mean']:.1f} ± {100 * (t['std'] or 0):.1f}  params "
              f"{r['params_total']['mean'] / 1e6:.2f} M  seeds {r['seeds']}")


if __name__ == "__main__":
    main()
