"""XNNPACK lowering in one process against lowering shared among CPU cores (`mpnas.export.parallel`), in one run.

    python -m benchmarks.bench_lowering [--model MODEL_DIR] [--data PREPARED_DIR] [--int8] [--workers N] [--no-write]

Traces every domain's program of a trained model once (as the exporter does), then lowers the same programs twice:
with one process, and with `--workers` (default: the CPUs available), and checks that both give the same .pte bytes.
Without --model it trains the export benchmark's quick ten-domain model. Rewrites the `lowering` section of
BENCHMARKS.md unless --no-write.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch


def _programs(model_dir: Path, data: Path, int8: bool, calibration_images: int) -> dict[str, dict]:
    """{"fp32": {method: program}, ["int8": ...]} traced exactly as `mpnas export` traces them."""
    from mpnas.data.prepared import PreparedDataset
    from mpnas.export import pte
    from mpnas.export.exporter import _calibration
    from mpnas.export.programs import domain_program, entry_names
    from mpnas.models.multipath import load_model

    model = load_model(model_dir).eval()
    crop = int(model.space.input_size)
    example = torch.zeros(1, 3, crop, crop)
    names = entry_names(model.domains)
    ds = PreparedDataset(data) if int8 else None
    out: dict[str, dict] = {"fp32": {}, **({"int8": {}} if int8 else {})}
    for d in model.domains:
        program = domain_program(model, d)
        out["fp32"][f"forward_{names[d]}"] = pte.export_program(program, example)
        if int8:
            calib = torch.from_numpy(_calibration(ds, d, crop, calibration_images))
            out["int8"][f"forward_{names[d]}"] = pte.quantize_pt2e(program, example, calib)
    return out


def main(argv: list[str] | None = None) -> int:
    from mpnas.export import pte
    from mpnas.export.parallel import INT8_COST, available_cpus, lower_programs

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="trained model directory (default: the export benchmark's quick 10-domain model)")
    ap.add_argument("--data", default="data/prepared/embedded", help="prepared dataset (quick model, calibration)")
    ap.add_argument("--int8", action="store_true", help="also lower the int8 program (about 3.3x the fp32 time)")
    ap.add_argument("--workers", type=int, default=available_cpus(), help="processes of the parallel lowering")
    ap.add_argument("--no-write", action="store_true", help="do not update BENCHMARKS.md")
    args = ap.parse_args(argv or [])
    load_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="mpnas-bench-lowering-") as tmp:
        if args.model:
            model_dir = Path(args.model)
        else:
            from benchmarks.bench_export import _quick_model_dir

            model_dir = _quick_model_dir(Path(args.data), 10, 60, Path(tmp))
        programs = _programs(model_dir, Path(args.data), args.int8, 64)
    costs = {"int8": INT8_COST}
    t0 = time.perf_counter()
    serial = {p: pte.to_pte_bytes(e) for p, e in lower_programs(programs, 1, costs).items()}
    t1 = time.perf_counter()
    parallel = {p: pte.to_pte_bytes(e) for p, e in lower_programs(programs, args.workers, costs).items()}
    t2 = time.perf_counter()
    summary = {"model": args.model or "the export benchmark's quick model, 10 embedded domains",
               "programs": {p: len(m) for p, m in programs.items()}, "workers": args.workers,
               "serial_s": round(t1 - t0, 1), "parallel_s": round(t2 - t1, 1),
               "speedup": round((t1 - t0) / (t2 - t1), 2), "bytes_equal": serial == parallel,
               "pte_bytes": {p: len(b) for p, b in serial.items()},
               "load_start": round(load_start, 2), "load_end": round(os.getloadavg()[0], 2)}
    print(json.dumps(summary, indent=2))
    if not args.no_write:
        from benchmarks.bench_data import update_section

        update_section(render_section(summary, argv or []), area="lowering")
    return 0 if summary["bytes_equal"] else 1


def render_section(s: dict, argv: list[str]) -> str:
    cmd = " ".join(["python -m benchmarks.bench_lowering", *argv])
    progs = ", ".join(f"{p} ({n} methods)" for p, n in s["programs"].items())
    return "\n".join([
        "## .pte lowering: one process against several (issue 18)", "",
        f"Reproduce: `{cmd}` (model: {s['model']}; programs: {progs}; 1-min load {s['load_start']} at the start, "
        f"{s['load_end']} at the end).", "",
        "| lowering | seconds |", "|---|---:|",
        f"| one process | {s['serial_s']} |",
        f"| shared among {s['workers']} processes (`export.lower_workers`, default: the CPUs available) | "
        f"{s['parallel_s']} |",
        f"| **speed-up** | **{s['speedup']}x** |",
        f"| .pte bytes identical | {s['bytes_equal']} |",
    ])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
