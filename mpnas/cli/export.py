"""`mpnas export`: a trained model directory -> .pte / ONNX / int8 exports with manifest and parity report."""

from __future__ import annotations

import argparse
import sys

from mpnas.cli._common import add_config_args, config_from_args, writing


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export a trained model for mobile (ExecuTorch .pte, ONNX, int8)",
                       description="Export every domain of a trained model: one ExecuTorch .pte with a method per "
                                   "domain over shared weights, one ONNX graph per domain, optional int8 variants; "
                                   "check parity with eager PyTorch and measure sizes and batch-1 latency. Exits "
                                   "non-zero when parity fails (the export and its report are still written).")
    p.add_argument("--model", required=True, help="model directory (from `mpnas train`)")
    p.add_argument("--out", required=True, help="export directory to create")
    p.add_argument("--data", help="prepared dataset for parity and int8 calibration "
                                  "(default: the model's own data.prepared_dir if it exists)")
    p.add_argument("--int8", dest="int8", action=argparse.BooleanOptionalAction, default=None,
                   help="also write int8 variants (default: export.int8 of the config)")
    p.add_argument("--formats", help="comma-separated subset of executorch,onnx (default: export.formats)")
    p.add_argument("--measure-sharing", dest="measure_sharing", action=argparse.BooleanOptionalAction, default=None,
                   help="also lower one single-method .pte per domain in memory to measure the combined file's "
                        "saving exactly (slow; default: export.measure_sharing, else the saving is read from the "
                        "combined program's constant tables)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing export directory")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    add_config_args(p)
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from mpnas.export import export_model

    cfg = config_from_args(args).export
    update = {}
    if args.int8 is not None:
        update["int8"] = args.int8
    if args.measure_sharing is not None:
        update["measure_sharing"] = args.measure_sharing
    if args.formats:
        formats = [f.strip() for f in args.formats.split(",") if f.strip()]
        unknown = sorted(set(formats) - {"executorch", "onnx"})
        if unknown or not formats:
            raise ValueError(f"--formats {args.formats!r}: expected a comma-separated subset of executorch,onnx")
        update["formats"] = formats
    if update:
        cfg = type(cfg).model_validate({**cfg.model_dump(), **update})
    with writing(args.out, model=args.model, data=args.data):
        report = export_model(args.model, args.out, cfg, data_dir=args.data, progress=not args.quiet,
                              overwrite=args.overwrite)
    for d, row in report["domains"].items():
        parts = [f"{n} agree={p['agreement']:.4f} maxdiff={p['max_abs_diff']:.1e}" for n, p in row["parity"].items()]
        print(f"{d}: " + "; ".join(parts))
    if not report["parity_ok"]:
        print(f"error: parity check failed (see {args.out}/export_report.md)", file=sys.stderr)
        return 3
    print(f"ok: export written to {args.out}")
    return 0
