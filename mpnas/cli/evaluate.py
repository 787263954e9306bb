"""`mpnas evaluate`: accuracy, parameters, FLOPs, latency, sharing and the decathlon score of a model directory."""

from __future__ import annotations

import argparse

from mpnas.cli._common import add_config_args, config_from_args, writing


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="evaluate a trained model directory",
                       description="Write REPORT_DIR/metrics.json, report.md, architecture.png and jaccard.png for "
                                   "a model trained by `mpnas train`.")
    add_config_args(p)
    p.add_argument("--model", required=True, help="model directory")
    p.add_argument("--data", required=True, help="prepared dataset directory")
    p.add_argument("--out", required=True, help="report directory to write")
    p.add_argument("--method", default="mpnas", help="method name recorded in metrics.json (default: mpnas)")
    p.add_argument("--dataset", default=None, help="dataset name recorded in metrics.json (default: data dir name)")
    p.add_argument("--reference", default=None, metavar="METRICS_JSON",
                   help="metrics.json whose test errors define E_max of the decathlon score (non-decathlon data)")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from mpnas.evaluation.evaluate import evaluate_model

    cfg = config_from_args(args).evaluate
    if args.reference:
        cfg = cfg.model_copy(update={"reference_metrics": args.reference})
    with writing(args.out, model=args.model, data=args.data, reference=args.reference):
        m = evaluate_model(args.model, args.data, args.out, cfg, method=args.method, dataset_name=args.dataset)
    score = "n/a" if m["decathlon_score"] is None else f"{m['decathlon_score']:.1f}"
    test = "n/a" if m["mean_top1_test"] is None else f"{100 * m['mean_top1_test']:.2f}%"
    print(f"mean top-1 val {100 * m['mean_top1_val']:.2f}%, test {test}; params {m['params_total']:,}; "
          f"decathlon score {score}; report in {args.out}")
    return 0
