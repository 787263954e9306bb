"""Merge comparison.json files of the same data (e.g. one comparison-pipeline run per seed, run in parallel or on
different machines) into one multi-seed comparison: comparison.json, comparison.md and the accuracy-vs-cost figure.

    python -m benchmarks.merge_comparisons --out results/mini_real reports/run_seed0/comparison.json ...
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from mpnas.evaluation.comparison import accuracy_cost_figure, comparison_markdown, merge_results
from mpnas.evaluation.curves import learning_curves_figure


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="+", type=Path, help="comparison.json files (reports/<run>/comparison.json)")
    p.add_argument("--out", type=Path, required=True, help="directory for comparison.{json,md} and "
                   "accuracy_vs_cost.png (must not be one of the inputs' directories)")
    p.add_argument("--note", default="", help="one line saying what was run (budget, config, machine); goes into "
                   "comparison.md under the title and into comparison.json as `note`")
    args = p.parse_args(argv)
    if any(i.resolve().parent == args.out.resolve() for i in args.inputs):
        p.error("--out is the directory of an input; write the merge somewhere else (inputs are never overwritten)")
    try:
        results = [json.loads(i.read_text()) for i in args.inputs]
        merged = merge_results(results, [str(i) for i in args.inputs])
    except (OSError, json.JSONDecodeError, KeyError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    merged["sources"] = [str(i) for i in args.inputs]
    merged["note"] = args.note
    data = merged.get("data") or {}
    md = (f"# Method comparison (data `{str(data.get('content_hash', '?'))[:16]}`, seeds "
          f"{', '.join(map(str, merged['seeds']))})\n\n" + (f"{args.note}\n\n" if args.note else "") + "Merged from: " + ", ".join(f"`{i}`" for i in args.inputs)
          + "\n\n" + comparison_markdown(merged["summary"]) + "\n![accuracy against cost](accuracy_vs_cost.png)\n"
          + ("\n![val top-1 against training steps](val_top1_vs_steps.png)\n" if "val_curves" in merged else ""))
    for name, text in (("comparison.json", json.dumps(merged, indent=1, default=str)), ("comparison.md", md)):
        tmp = args.out / f".{name}.tmp"
        tmp.write_text(text)
        os.replace(tmp, args.out / name)
    accuracy_cost_figure(merged["summary"], args.out / "accuracy_vs_cost.png")
    if "val_curves" in merged:
        learning_curves_figure(merged["val_curves"], args.out / "val_top1_vs_steps.png")
    print(f"merged {len(args.inputs)} results, seeds {merged['seeds']}, methods {', '.join(merged['methods'])} "
          f"-> {args.out}/comparison.{{json,md}}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
