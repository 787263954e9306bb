"""Search step speed: grouped vs naive execution on ten domains, in one run, on this machine.

Data: data/prepared/embedded when it exists, else the embedded set generated at 1/10 scale in a temp dir (36 px
images, 32 px crops; ~30 s).
Phases (each timed for --steps steps after one untimed step that warms kernel caches):
  warmup     step 0: every layer runs the op warm-up mixture (all domains group into one call per layer)
  uniform    after warm-up with uniform controllers: domains rarely agree (worst case for grouping)
  converged  after warm-up with partly converged controllers (p_max ~0.5-0.9, domains agreeing on most layers)
Reports s/step, images/s and achieved GFLOP/s (analytic path FLOPs x 3 for train fwd+bwd, x 1 for reward fwd) as a
fraction of a 2048x2048 fp32 matmul's GFLOP/s, checks that grouped and naive steps give the same losses and rewards,
and times the uniform phase (same sampled paths) under other settings: NCHW activations instead of channels-last,
and one intra-op thread.

Then (benchmarks/efficiency.py) the search step at the mini_real settings against a torchvision mobilenet_v3_small
training step of the same FLOPs, profiled, written to benchmarks/search_efficiency.json and BENCHMARKS.md.

    python -m benchmarks.bench_search [--steps 2] [--batch 32] [--val-mult 2] [--rounds 5] [--only-efficiency]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from mpnas.config import DataConfig, load_config
from mpnas.data.prepared import PreparedDataset
from mpnas.data.prepare import prepare
from mpnas.models import blocks
from mpnas.nas.search import SearchEngine, build_space, val_batch_size

EMBEDDED = Path("data/prepared/embedded")


def matmul_gflops(n: int = 2048, repeats: int = 5) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2 * n ** 3 / best / 1e9


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def _dataset(tmp: Path) -> tuple[Path, str]:
    if (EMBEDDED / "meta.json").is_file():
        return EMBEDDED, "embedded"
    prepare(DataConfig(), tmp / "embedded", scale=0.1, log=lambda msg: None)  # step speed needs the images, not many
    return tmp / "embedded", "embedded (1/10 scale)"


def _converge(engine: SearchEngine, rng: np.random.Generator) -> None:
    """Partly converged controllers: a common favourite per decision, each domain keeping its own 30% of layers."""
    with torch.no_grad():
        common = rng.integers(0, 64, engine.controllers[0].logits.shape)
        for c in engine.controllers:
            own = rng.integers(0, 64, common.shape)
            fav = np.where(rng.random(common.shape[0])[:, None] < 0.3, own, common)
            c.logits.zero_()
            for i, n in enumerate(c.sizes):
                c.logits[i, fav[i, 0] % n] = 2.5


def _phase(engine: SearchEngine, start_step: int, steps: int) -> tuple[float, float]:
    """(seconds per step, analytic FLOPs per step) over `steps` timed steps from `start_step`."""
    engine.step = start_step
    engine.run_step()
    engine.step += 1
    rows, t = [], time.perf_counter()
    for _ in range(steps):
        rows += engine.run_step()
        engine.step += 1
    sec = (time.perf_counter() - t) / steps
    return sec, _flops(engine, rows)


def _flops(engine: SearchEngine, rows: list[dict]) -> float:
    per_img = engine.costs.flops_target * np.mean([r["cost_ratio"] for r in rows])
    imgs = 3 * engine.s.batch_size + val_batch_size(engine.cfg)
    return per_img * imgs * len(engine.domains)


def _same_step(engines: list[SearchEngine], step: int) -> float:
    """Largest loss/reward difference of one step run by engines built alike (grouped vs naive)."""
    rows = []
    for e in engines:
        e.step = step
        rows.append(e.run_step())
    return max(abs(a[k] - b[k]) for a, b in zip(*rows) for k in ("loss", "reward", "accuracy"))


def _settings(engine: SearchEngine, step: int, steps: int) -> dict[str, float]:
    """s/step of the same sampled paths under other execution settings (alternated, best of `steps`)."""
    threads = torch.get_num_threads()
    cases = {f"channels-last, {threads} threads": (blocks.MEMORY_FORMAT, threads),
             f"NCHW, {threads} threads": (torch.contiguous_format, threads),
             "channels-last, 1 thread": (blocks.MEMORY_FORMAT, 1)}
    engine.step = step
    state = engine.rng.bit_generator.state
    times: dict[str, list[float]] = {k: [] for k in cases}
    default_format = blocks.MEMORY_FORMAT
    try:
        for _ in range(steps + 1):
            for name, (fmt, n) in cases.items():
                blocks.MEMORY_FORMAT = fmt
                torch.set_num_threads(n)
                engine.rng.bit_generator.state = state
                times[name].append(_timed(engine.run_step))
    finally:
        blocks.MEMORY_FORMAT = default_format
        torch.set_num_threads(threads)
    return {k: min(v[1:]) for k, v in times.items()}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=2, help="timed steps per phase")
    p.add_argument("--batch", type=int, default=32, help="search.batch_size (images per domain)")
    p.add_argument("--val-mult", type=float, default=2.0, help="search.val_batch_multiplier")
    p.add_argument("--rounds", type=int, default=5, help="timed rounds of the search vs mobilenet comparison")
    p.add_argument("--only-efficiency", action="store_true", help="skip the grouped vs naive study")
    args = p.parse_args(argv or [])  # `benchmarks.run` calls main() with defaults
    ref = matmul_gflops()
    with tempfile.TemporaryDirectory() as tmp:
        data, label = _dataset(Path(tmp))
        if not args.only_efficiency:
            _grouped_vs_naive(args, data, label, ref)
        from benchmarks import efficiency

        result = efficiency.measure(data, label, ref, rounds=args.rounds)
        efficiency.write(result)
        print(efficiency.render(result))


def _grouped_vs_naive(args: argparse.Namespace, data: Path, label: str, ref: float) -> None:
    """The grouped vs naive study (three phases, other execution settings); prints its tables."""
    ds = PreparedDataset(data)
    cfg = load_config(None, ["search.steps=400", f"search.batch_size={args.batch}",
                             f"search.val_batch_multiplier={args.val_mult}"])
    domains = ds.subset(cfg.data.domains)
    space = build_space(cfg)
    print(f"data: {label} ({len(domains)} domains), batch {cfg.search.batch_size}/domain, "
          f"val batch {val_batch_size(cfg)}/domain, {cfg.data.crop}px, torch threads {torch.get_num_threads()}, "
          f"2048^2 matmul {ref:.1f} GFLOP/s", flush=True)
    after = int(cfg.search.rl_delay_fraction * cfg.search.steps) + 1
    configs = {g: cfg.model_copy(update={"search": cfg.search.model_copy(update={"grouped": g})})
               for g in (True, False)}
    diff = max(_same_step([SearchEngine(configs[g], ds, domains, space) for g in (True, False)], step)
               for step in (0, after))
    results = {}
    for grouped in (True, False):
        engine = SearchEngine(configs[grouped], ds, domains, space)
        results[(grouped, "warmup")] = _phase(engine, 0, args.steps)
        results[(grouped, "uniform")] = _phase(engine, after, args.steps)
        _converge(engine, np.random.default_rng(0))
        results[(grouped, "converged")] = _phase(engine, after, args.steps)
        print(f"grouped={grouped}: " + ", ".join(f"{k[1]} {v[0]:.2f} s/step" for k, v in results.items()
                                                  if k[0] == grouped), flush=True)
    settings = _settings(SearchEngine(configs[True], ds, domains, space), after, args.steps)
    imgs = len(domains) * (cfg.search.batch_size + val_batch_size(cfg))
    print(f"{'phase':10s} {'grouped s/step':>15s} {'naive s/step':>13s} {'speedup':>8s} {'img/s grouped':>14s} "
          f"{'GFLOP/s':>8s} {'of matmul':>9s}")
    for phase in ("warmup", "uniform", "converged"):
        (g, flops), (n, _) = results[(True, phase)], results[(False, phase)]
        gf = "-" if phase == "warmup" else f"{flops / g / 1e9:8.2f}"
        frac = "-" if phase == "warmup" else f"{flops / g / 1e9 / ref:9.1%}"
        print(f"{phase:10s} {g:15.3f} {n:13.3f} {n / g:7.2f}x {imgs / g:14.0f} {gf:>8s} {frac:>9s}")
    print(f"grouped vs naive, one step from identical state (warm-up and uniform): max |difference| of loss/reward/accuracy {diff:.2e}")
    print("uniform phase, grouped, same paths, other settings (best of alternated steps):")
    for name, sec in settings.items():
        print(f"  {name:30s} {sec:.3f} s/step")


if __name__ == "__main__":
    main(sys.argv[1:])
