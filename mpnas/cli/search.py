"""`mpnas search`: find one path per domain in the supernet (or a shared one), resumable."""

from __future__ import annotations

import argparse

from mpnas.cli._common import add_config_args, check_step_memory, config_from_args, writing


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("search", help="search one architecture path per domain",
                       description="Run the multi-path search (search.mode: multi_path, multi_head, independent or "
                                   "fixed) on a prepared dataset. Writes genotypes.json, history.parquet, "
                                   "summary.json and checkpoint.pt to --out. Ctrl-C leaves a checkpoint that "
                                   "--resume continues from.")
    add_config_args(p)
    p.add_argument("--data", help="prepared dataset directory (default: data.prepared_dir of the config)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt if present (the same "
                                                         "config and data are required)")
    p.add_argument("--overwrite", action="store_true",
                   help="start a new search in a non-empty OUT, replacing its files (refused otherwise)")
    p.add_argument("--quiet", action="store_true", help="no per-step progress lines")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from mpnas.data.prepared import PreparedDataset
    from mpnas.nas.search import run_search

    cfg = config_from_args(args)
    data = args.data or cfg.data.prepared_dir
    sc = cfg.search
    check_step_memory("search.batch_size", sc.batch_size, cfg.data.crop,
                      len(PreparedDataset(data).subset(cfg.data.domains)), 1 + sc.val_batch_multiplier)
    with writing(args.out, args.overwrite, args.resume, data=data):
        result = run_search(cfg, data, args.out, resume=args.resume, progress=not args.quiet)
    s = result.summary
    rate = f", {s['steps_per_s']:.2f} step/s" if s.get("steps_per_s") else ""
    print(f"{s['mode']}: {s['steps']} steps{rate}, {s['distinct_paths']} distinct path(s) -> {args.out}")
    width = max(len(d) for d in result.genotypes)
    for d, g in result.genotypes.items():
        info = s["domains"][d]
        acc = f" acc {info['accuracy']:.3f}" if "accuracy" in info else ""
        print(f"  {d:{width}s} {info['flops'] / 1e6:7.2f} MFLOPs{acc}  {g}")
    return 0
