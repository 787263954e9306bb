"""Export benchmark: .pte / ONNX / int8 sizes, weight sharing, parity and batch-1 latency per runtime.

    python -m benchmarks.bench_export [--model MODEL_DIR] [--data PREPARED_DIR] [--domains N] [--out DIR]

Without --model it trains a default-space model for --train-steps steps on the first --domains embedded domains
(even-indexed domains on the reference genotype, odd ones with a different last stage, so some nodes are shared and
some not): sizes, sharing, parity and latency are meaningful, accuracies are those of a barely trained model. Prints a JSON summary and rewrites the
`export` section of BENCHMARKS.md (unless --no-write).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from mpnas.config import load_config
from mpnas.data.prepared import PreparedDataset
from mpnas.export import export_model
from mpnas.space import Choice, Genotype


def _quick_model_dir(data: Path, n_domains: int, steps: int, root: Path) -> Path:
    """Train a default-space model briefly on the first `n_domains` domains (even-indexed ones on the reference
    genotype, odd ones with a different last stage). A few steps give real activation ranges and non-degenerate
    logits (a freshly initialised model's logits are ~1e-10, which makes parity trivial and int8 meaningless)."""
    from mpnas.training.trainer import resolve_space, train_model

    ds = PreparedDataset(data)
    domains = ds.domains[:n_domains]
    cfg = load_config(None, [f"train.steps={steps}", f"train.eval_every={steps}", f"train.checkpoint_every={steps}",
                             f"data.domains={json.dumps(domains)}"])
    space = resolve_space(cfg)
    ref = space.reference_genotype()
    alt = list(ref.choices)
    for i in range(len(alt) - 3, len(alt)):
        layer = space.layers[i]
        alt[i] = Choice("ir", min(layer.kernels), 3.0 if 3.0 in layer.expansions else layer.expansions[0], False)
    genotypes = {d: ref if i % 2 == 0 else Genotype(tuple(alt)) for i, d in enumerate(domains)}
    train_model(cfg, data, genotypes, root / "model", progress=False)
    return root / "model"


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="trained model directory (default: a freshly initialised default-space model)")
    ap.add_argument("--data", default="data/prepared/embedded", help="prepared dataset for parity and calibration")
    ap.add_argument("--domains", type=int, default=4, help="domains of the quick model (the first N of the data)")
    ap.add_argument("--train-steps", type=int, default=60, help="training steps of the quick model")
    ap.add_argument("--out", help="keep the export here (default: a temp dir)")
    ap.add_argument("--no-write", action="store_true", help="do not update BENCHMARKS.md")
    args = ap.parse_args(argv or [])
    # measure_sharing: the benchmark lowers the single-method programs too, to check the constant-table saving
    cfg = load_config().export.model_copy(update={"measure_sharing": True})
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = (Path(args.model) if args.model
                     else _quick_model_dir(Path(args.data), args.domains, args.train_steps, Path(tmp)))
        out = Path(args.out) if args.out else Path(tmp) / "export"
        t0 = time.perf_counter()
        report = export_model(model_dir, out, cfg, data_dir=args.data, overwrite=True)
        wall = time.perf_counter() - t0
    rows = report["domains"]
    lat = {rt: sorted(r["latency_ms"][rt] for r in rows.values()) for rt in next(iter(rows.values()))["latency_ms"]}
    summary = {
        "model": args.model or f"default space trained {args.train_steps} steps on {len(rows)} embedded domains",
        "export_wall_s": round(wall, 1), "parity_ok": report["parity_ok"],
        "worst_agreement": {rt: min(r["parity"][rt]["agreement"] for r in rows.values()) for rt in ("executorch", "onnx")},
        "worst_max_abs_diff": {rt: max(r["parity"][rt]["max_abs_diff"] for r in rows.values())
                               for rt in ("executorch", "onnx")},
        "int8_agreement_with_fp32": {rt: min(r["parity"][rt]["agreement"] for r in rows.values())
                                     for rt in ("executorch_int8", "onnx_int8")},
        "median_latency_ms": {rt: v[len(v) // 2] for rt, v in lat.items()},
        "sharing": report["sharing"], "file_bytes": report["file_bytes"],
        "onnx_fp32_total_bytes": sum(b for f, b in report["file_bytes"].items()
                                     if f.endswith(".onnx") and ".int8." not in f),
    }
    print(json.dumps(summary, indent=2))
    if not args.no_write:
        from benchmarks.bench_data import update_section

        update_section(render_section(summary, report, argv or []), area="export")
    return 0 if report["parity_ok"] else 1


def render_section(s: dict, report: dict, argv: list[str]) -> str:
    cmd = " ".join(["python -m benchmarks.bench_export", *argv])
    lat = s["median_latency_ms"]
    sh = s["sharing"]
    fb = s["file_bytes"]
    lines = [
        "## Export (ExecuTorch .pte, ONNX, int8)", "",
        f"Reproduce: `{cmd}` (model: {s['model']}; parity on each domain's test split; 2-core x86_64 CPU shared "
        f"with other jobs, so latencies are upper bounds; export took {s['export_wall_s']} s).", "",
        "| measurement | value |", "|---|---:|",
        f"| one .pte, {len(sh['single_method_pte_bytes'])} methods (fp32) | {sh['combined_pte_bytes']:,} B |",
        f"| sum of single-method .pte files | {sh['sum_single_bytes']:,} B |",
        f"| **combined / sum** (sharing survives lowering) | **{sh['combined_over_sum']:.3f}** |",
        f"| saved by the combined file / fp32 bytes of shared weights stored once | {sh['saved_bytes']:,} B / "
        f"{sh['shared_weight_bytes']:,} B |",
        f"| saved, read from the combined program's constant tables (what `make run` reports) | "
        f"{sh['constant_tables']['saved_bytes']:,} B |",
        f"| one .pte int8 | {fb.get('model.int8.pte', 0):,} B |",
        f"| all per-domain ONNX graphs (fp32) | {s['onnx_fp32_total_bytes']:,} B |",
        f"| parity ok (agreement >= {report['thresholds']['parity_min_agreement']}, "
        f"max diff <= {report['thresholds']['parity_atol']}) | {s['parity_ok']} |",
        f"| worst top-1 agreement ExecuTorch / ONNX | {s['worst_agreement']['executorch']:.4f} / "
        f"{s['worst_agreement']['onnx']:.4f} |",
        f"| worst max abs logit diff ExecuTorch / ONNX | {s['worst_max_abs_diff']['executorch']:.1e} / "
        f"{s['worst_max_abs_diff']['onnx']:.1e} |",
        f"| worst int8 top-1 agreement with fp32, ExecuTorch / ONNX | "
        f"{s['int8_agreement_with_fp32']['executorch_int8']:.4f} / {s['int8_agreement_with_fp32']['onnx_int8']:.4f} |",
    ]
    lines += [f"| median over domains of batch-1 latency, {rt} | {v:.3f} ms |" for rt, v in lat.items()]
    lines += [f"| **speed-up vs eager PyTorch, {rt}** | **{lat['eager'] / v:.1f}x** |"
              for rt, v in lat.items() if rt != "eager"]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
