"""XNNPACK lowering of several multi-method programs on several CPU cores, byte-identical to lowering in one process.

Why: `to_edge_transform_and_lower` is single-threaded Python (graph passes over fake tensors), about 11 s per method
of the default model on this machine class, so lowering ten fp32 methods and ten int8 ones was most of `make run`.
Methods are lowered independently (each gets its own XNNPACK delegate), so the work splits by method: this process
lowers one share, spawned workers lower the others, each worker sends its lowered methods back in ExecuTorch's own
serialised form (`executorch.exir.serde`, which keeps delegate blobs and their named data), and the methods are
reassembled into one `EdgeProgramManager` per program in the original method order. Emission (`to_executorch`)
then stores each distinct weight once, exactly as before; tests check the .pte bytes are equal to a serial lowering.

A worker pays for its start-up (importing torch and ExecuTorch, about one fp32 method's lowering), so work is only
shared out when there are at least two methods per worker.
"""

from __future__ import annotations

import os
import tempfile
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import nullcontext
from multiprocessing import get_context
from pathlib import Path
from typing import Optional

import torch

# Relative lowering cost per method, measured on the default model (fp32 113 s, int8 378 s for ten methods).
INT8_COST = 3.3
WORKER_START_COST = 1.0  # a spawned worker's imports, in fp32-method units
Item = tuple[str, str]  # (program name, method name)


def available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def plan_shares(costs: dict[Item, float], workers: int, min_per_worker: int = 2) -> list[list[Item]]:
    """Split items into at most `workers` shares of about equal cost, each of at least `min_per_worker` items
    (longest first; share 0 is this process, the others start `WORKER_START_COST` behind). Shares that end up empty
    are dropped; share 0 is always present."""
    workers = max(1, min(workers, len(costs) // min_per_worker))
    loads = [0.0] + [WORKER_START_COST] * (workers - 1)
    shares: list[list[Item]] = [[] for _ in range(workers)]
    for item in sorted(costs, key=lambda i: (-costs[i], i)):
        k = min(range(workers), key=lambda j: (loads[j], -j))  # a tie goes to a worker: this process reassembles
        shares[k].append(item)
        loads[k] += costs[item]
    return [shares[0]] + [s for s in shares[1:] if s]


def processes_for(methods: dict[str, int], workers: int, costs: dict[str, float] | None = None,
                  min_per_worker: int = 2) -> int:
    """How many processes `lower_programs` will use for programs with these method counts (program -> count)."""
    costs = costs or {}
    items = {(p, f"m{k}"): float(costs.get(p, 1.0)) for p, n in methods.items() for k in range(n)}
    return len(plan_shares(items, workers, min_per_worker))


def start_workers(workers: int) -> Optional[ProcessPoolExecutor]:
    """Start `workers - 1` worker processes now (None for one): their imports, a few seconds each, then overlap
    whatever the caller does before `lower_programs` (the exporter traces meanwhile). Shut it down when done."""
    if workers <= 1:
        return None
    pool = ProcessPoolExecutor(workers - 1, mp_context=get_context("spawn"))
    for _ in range(workers - 1):
        pool.submit(_warm_up)
    return pool


def lower_programs(programs: dict[str, dict[str, torch.export.ExportedProgram]], workers: int = 1,
                   costs: dict[str, float] | None = None, min_per_worker: int = 2,
                   pool: Optional[ProcessPoolExecutor] = None) -> dict[str, object]:
    """Lower each named multi-method program (program name -> {method: ExportedProgram}) to XNNPACK.

    Returns program name -> lowered `EdgeProgramManager`, its methods in the given order. `costs` weighs a method of
    each program (default 1; the exporter gives int8 `INT8_COST`) when the work is shared among `workers` processes,
    each with at least `min_per_worker` methods. `pool` (from `start_workers`) is used instead of starting one."""
    costs = costs or {}
    item_costs = {(p, m): float(costs.get(p, 1.0)) for p, methods in programs.items() for m in methods}
    shares = plan_shares(item_costs, workers, min_per_worker)
    if len(shares) == 1:
        return {p: _lower(methods) for p, methods in programs.items()}
    lowered: dict[Item, object] = {}
    with tempfile.TemporaryDirectory(prefix="mpnas-lower-") as tmp, \
            (nullcontext(pool) if pool is not None else start_workers(len(shares))) as workers_pool:
        futures = [_submit(workers_pool, programs, share, Path(tmp) / f"share{k}")
                   for k, share in enumerate(shares[1:], 1)]
        lowered.update(_lower_share(programs, shares[0]))
        for future, share in zip(futures, shares[1:]):
            lowered.update(_load_share(future.result(), share))
    return {p: _assemble({m: lowered[(p, m)] for m in methods}) for p, methods in programs.items()}


# ------------------------------------------------------------------------------------------------------- internals
def _lower(methods: dict[str, torch.export.ExportedProgram]):
    from mpnas.export.pte import lower

    return lower(methods)


def _lower_share(programs: dict[str, dict[str, torch.export.ExportedProgram]], share: list[Item]) -> dict[Item, object]:
    """Lower this share's methods, one `to_edge_transform_and_lower` per program; (program, method) -> edge program."""
    out: dict[Item, object] = {}
    for p in programs:
        names = [m for q, m in share if q == p]
        if names:
            edge = _lower({m: programs[p][m] for m in names})
            out.update({(p, m): edge.exported_program(m) for m in names})
    return out


def _warm_up() -> None:
    """Import what `_worker` needs, so a started worker is ready when its share arrives."""
    from executorch.backends.xnnpack.quantizer import xnnpack_quantizer  # noqa: F401
    from executorch.exir.serde import serialize  # noqa: F401

    from mpnas.export import pte  # noqa: F401


def _submit(pool: ProcessPoolExecutor, programs: dict[str, dict[str, torch.export.ExportedProgram]],
            share: list[Item], folder: Path) -> Future:
    folder.mkdir()
    files = []
    for k, (p, m) in enumerate(share):
        torch.export.save(programs[p][m], folder / f"{k}.in.pt2")
        files.append(str(folder / f"{k}"))
    return pool.submit(_worker, [p for p, _ in share], [m for _, m in share], files)


def _worker(program_names: list[str], method_names: list[str], files: list[str]) -> list[str]:
    """In a spawned process: load the share's exported programs, lower them, write each lowered method serialised."""
    from executorch.backends.xnnpack.quantizer import xnnpack_quantizer  # noqa: F401  (registers int8 ops for load)
    from executorch.exir.serde.serialize import save

    torch.set_num_threads(1)
    programs: dict[str, dict[str, torch.export.ExportedProgram]] = {}
    for p, m, f in zip(program_names, method_names, files):
        programs.setdefault(p, {})[m] = torch.export.load(f"{f}.in.pt2")
    lowered = _lower_share(programs, list(zip(program_names, method_names)))
    for p, m, f in zip(program_names, method_names, files):
        with open(f"{f}.out", "wb") as fh:
            save(lowered[(p, m)], fh)
    return files


def _load_share(files: list[str], share: list[Item]) -> dict[Item, object]:
    from executorch.exir.serde.serialize import load

    out = {}
    for item, f in zip(share, files):
        with open(f"{f}.out", "rb") as fh:
            out[item] = load(fh)
    return out


def _assemble(methods: dict[str, object]):
    from executorch.exir import EdgeProgramManager

    return EdgeProgramManager(dict(methods))
