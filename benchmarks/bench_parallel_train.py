"""How to spend two CPU cores on trainings: one process with two threads (what the pipeline does today), two
trainings at once with one thread each (what an orchestrator running two steps at a time would do), or one
data-parallel training under torchrun with two one-thread ranks (`mpnas/distributed.py`).

    python -m benchmarks.bench_parallel_train -c configs/mini_real_2h.yaml --data data/prepared/run_mini_real \
        --genotypes comparison:results/mini_real_2h/partial_comparison.json:mpnas_uniform --steps 60

Every mode trains the same genotypes (seed 0, and seed 1 for the second concurrent training) for --steps steps with
`mpnas train`, validation and checkpoints out of the way; throughput is training steps per wall second, counted from
each process's own first to last step (the trainer's `steps_per_s`), so Python start-up and data loading are not in
it. The figures come from one run, mode after mode, on whatever else the machine is doing: read the ratios.
Writes benchmarks/parallel_train.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.train_variants import genotypes_from_comparison
from mpnas.space import genotypes_to_json
from mpnas.utils.io import atomic_write_json

MPNAS = str(Path(sys.executable).parent / "mpnas")
TORCHRUN = str(Path(sys.executable).parent / "torchrun")


def _train_cmd(a: argparse.Namespace, genos: Path, out: Path, seed: int) -> list[str]:
    return [MPNAS, "train", "-c", a.config, "--data", a.data, "--genotypes", str(genos), "--out", str(out), "--quiet",
            "--set", f"seed={seed}", "--set", f"train.steps={a.steps}", "--set", f"train.eval_every={a.steps}",
            "--set", f"train.checkpoint_every={a.steps}", "--set", "train.loss_weighting.name=uniform"]


def _env(threads: int) -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}


def _steps_per_s(model_dir: Path) -> float:
    arch = json.loads((model_dir / "architecture.json").read_text())
    return float(arch["train"]["steps_per_s"])


def _run(cmds: list[list[str]], threads: int, label: str) -> float:
    print(f"[bench] {label}: {len(cmds)} process(es), {threads} thread(s) each", flush=True)
    t = time.perf_counter()
    procs = [subprocess.Popen(c, env=_env(threads)) for c in cmds]
    codes = [p.wait() for p in procs]
    if any(codes):
        raise SystemExit(f"{label}: a training failed (exit codes {codes})")
    return time.perf_counter() - t


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-c", "--config", required=True, help="mpnas config or run config (parameters.config)")
    ap.add_argument("--data", required=True, help="prepared data directory")
    ap.add_argument("--genotypes", required=True, help="genotypes.json, or comparison:PATH:METHOD (seed 0's)")
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--out", default="benchmarks/parallel_train.json")
    a = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench_parallel_") as tmp:
        work = Path(tmp)
        genos = work / "genotypes.json"
        if a.genotypes.startswith("comparison:"):
            genos.write_text(genotypes_to_json(genotypes_from_comparison(a.genotypes, 0)))
        else:
            genos = Path(a.genotypes)
        one = work / "one"
        wall_one = _run([_train_cmd(a, genos, one, 0)], 2, "one training, 2 threads")
        pair = [work / "pair0", work / "pair1"]
        wall_pair = _run([_train_cmd(a, genos, pair[i], i) for i in range(2)], 1, "two trainings at once, 1 thread")
        ddp = work / "ddp"
        wall_ddp = _run([[TORCHRUN, "--standalone", "--nproc_per_node=2", MPNAS, *_train_cmd(a, genos, ddp, 0)[1:]]],
                        1, "one training, torchrun 2 ranks x 1 thread")
        one_sps, ddp_sps = _steps_per_s(one), _steps_per_s(ddp)
        pair_sps = [_steps_per_s(p) for p in pair]
    result = {
        "steps": a.steps, "config": a.config, "genotypes": a.genotypes, "cpu_count": os.cpu_count(),
        "load_average_1min_end": os.getloadavg()[0],
        "one_process_2_threads": {"steps_per_s": one_sps, "wall_s": wall_one},
        "two_processes_1_thread": {"steps_per_s_each": pair_sps, "steps_per_s_total": sum(pair_sps),
                                   "wall_s": wall_pair},
        "torchrun_2x1": {"steps_per_s": ddp_sps, "wall_s": wall_ddp},
        "ratio_two_processes_vs_one": sum(pair_sps) / one_sps,
        "ratio_torchrun_vs_one": ddp_sps / one_sps,
    }
    atomic_write_json(Path(a.out), result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
