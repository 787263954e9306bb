"""Does the search learn? Real search against its no-signal control, trained and tested on real data.

For every seed: a multi_path search with the given settings and its `search.null_control=true` twin (same budget,
same seed, architecture-independent rewards), then the merged model of each search's final genotypes trained at the
config's training budget and evaluated on the test split. Each stage is skipped when its output exists, so an
interrupted study continues where it stopped. Writes OUT/<variant>/seed<k>/{search,model,eval}/ and, with
--collect, the evidence file results/mini_real/search_signal.json.

    python -m benchmarks.search_signal -c configs/mini_real.yaml --data data/prepared/mini_real \
        --out runs/signal --seeds 0 1 2 --variant real     # and --variant null (another process), then --collect
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from mpnas.cli._common import load_any_config
from mpnas.evaluation.evaluate import evaluate_model
from mpnas.nas.search import run_search
from mpnas.space import genotypes_from_json
from mpnas.training.trainer import train_model
from mpnas.utils.io import atomic_write_json


def run_one(args, seed: int) -> dict:
    null = args.variant == "null"
    cfg = load_any_config(args.config, [*args.set, f"seed={seed}", f"search.null_control={str(null).lower()}",
                                "evaluate.latency_repeats=3", "evaluate.latency_warmup=1"])
    base = Path(args.out) / args.variant / f"seed{seed}"
    t0 = time.perf_counter()
    if not (base / "search" / "summary.json").is_file():
        run_search(cfg, args.data, base / "search", resume=True, progress=True)
    t_search = time.perf_counter() - t0
    genos = genotypes_from_json((base / "search" / "genotypes.json").read_text())
    if not (base / "model" / "architecture.json").is_file():
        train_model(cfg, args.data, genos, base / "model", resume=True, progress=True)
    if not (base / "eval" / "metrics.json").is_file():
        evaluate_model(base / "model", args.data, base / "eval", cfg.evaluate, method=f"mpnas_{args.variant}")
    return {"seed": seed, "seconds": time.perf_counter() - t0, "search_seconds": t_search}


def collect(args) -> dict:
    out: dict = {"seeds": args.seeds, "config": args.config, "overrides": args.set}
    for variant in ("real", "null"):
        rows = {"p_argmax_mean": [], "nodes": [], "shared_nodes": [], "mean_test": [], "params_total": [],
                "flops_mean_path": [], "flops_prefix_tree": [], "search_wall_s": []}
        for seed in args.seeds:
            base = Path(args.out) / variant / f"seed{seed}"
            summ = json.loads((base / "search" / "summary.json").read_text())
            met = json.loads((base / "eval" / "metrics.json").read_text())
            rows["p_argmax_mean"].append(summ["p_argmax_mean"])
            rows["nodes"].append(summ["nodes"])
            rows["shared_nodes"].append(summ["shared_nodes"])
            rows["search_wall_s"].append(summ["wall_time_s"])
            rows["mean_test"].append(met["mean_top1_test"])
            rows["params_total"].append(met["params_total"])
            rows["flops_mean_path"].append(met["flops_mean_path"])
            rows["flops_prefix_tree"].append(met.get("flops_prefix_tree"))
        out[variant] = rows
    real, null = np.array(out["real"]["mean_test"]), np.array(out["null"]["mean_test"])
    out["searched_vs_null"] = {"searched_mean_test": out["real"]["mean_test"], "null_mean_test": out["null"]["mean_test"],
                               "difference_mean": float((real - null).mean()),
                               "difference_std": float((real - null).std(ddof=1)) if len(real) > 1 else None}
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-c", "--config", required=True, help="mpnas config or run config (parameters.config)")
    ap.add_argument("--data", required=True, help="prepared data directory")
    ap.add_argument("--out", default="runs/signal", help="study directory (stages resume from it)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--variant", choices=["real", "null"], default="real")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override (repeatable)")
    ap.add_argument("--collect", metavar="JSON", help="write the study's evidence file instead of running")
    args = ap.parse_args(argv)
    if args.collect:
        atomic_write_json(Path(args.collect), collect(args))
        print(f"wrote {args.collect}")
        return
    for seed in args.seeds:
        print(json.dumps(run_one(args, seed)), flush=True)


if __name__ == "__main__":
    main()
