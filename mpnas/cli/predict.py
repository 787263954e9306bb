"""`mpnas predict`: classify image files with an export (.pte via the ExecuTorch runtime, or ONNX)."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="classify images with an exported model",
                       description="Print the top-k classes and probabilities of each image for one domain, "
                                   "preprocessed exactly like training (see the export's manifest.json).")
    p.add_argument("--model", required=True, help="export directory (from `mpnas export`) or one of its files")
    p.add_argument("--domain", required=True, help="domain whose classifier to use")
    p.add_argument("--top-k", type=int, default=3)
    p.add_argument("--runtime", choices=["auto", "executorch", "onnx"], default="auto")
    p.add_argument("--int8", action="store_true", help="use the int8 variant")
    p.add_argument("--json", action="store_true", help="print one JSON document instead of text")
    p.add_argument("--verbose", action="store_true",
                   help="let the runtimes' own log lines (ExecuTorch/cpuinfo, onnxruntime) through to stderr")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from mpnas.export import runtimes
    from mpnas.export.predict import Predictor

    runtimes.set_verbose(args.verbose)
    predictor = Predictor.load(args.model, runtime=args.runtime, int8=args.int8 or None)
    results = {str(img): predictor.predict(img, args.domain, args.top_k) for img in args.images}
    if args.json:
        print(json.dumps({"domain": args.domain, "runtime": predictor.runtime,
                          "predictions": {img: [{"class": c, "score": s} for c, s in top]
                                          for img, top in results.items()}}, indent=2))
    else:
        for img, top in results.items():
            print(f"{img}: " + ", ".join(f"{c} {s:.3f}" for c, s in top))
    return 0
