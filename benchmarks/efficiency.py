"""Search-step efficiency against a plain torchvision mobilenet_v3_small training step of the same FLOPs, one run.

Called by `benchmarks.bench_search` (so `make bench BENCH=search` writes benchmarks/search_efficiency.json and the
`search_efficiency` section of BENCHMARKS.md). The search step runs at the mini_real settings (configs/mini_real.yaml:
its space and search section) on the embedded data; the mobilenet step trains on fixed random tensors at 32 px with a
batch chosen so that its FLOPs per step match the search step's. Steps of the two alternate, so load from other
processes hits both alike; each side's figure is the median over its timed steps. Both are then profiled with
torch.profiler (self CPU time per op).

FLOPs: 2 per multiply-add; a training pass counts 3x its forward (forward, input and weight gradients), a reward
pass 1x. Search: the analytic FLOPs of the sampled paths (`CostModel`), x (3 x train images + val images) per domain.
mobilenet: torch.utils.flop_counter on its forward, x 3 x batch.
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
JSON_OUT = ROOT / "benchmarks" / "search_efficiency.json"
MINI_REAL = ROOT / "configs" / "mini_real.yaml"
TOP_OPS = 10
REFERENCE_BATCH = 64  # the reference mobilenet step (470 img/s, 40 GFLOP/s on a quiet box)


def mini_real_config():
    """configs/mini_real.yaml's mpnas config (pipeline run config: its parameters.config)."""
    from mpnas.cli._common import load_any_config

    return load_any_config(MINI_REAL, [])


def mnv3_forward_flops(res: int, classes: int) -> float:
    """FLOPs of one mobilenet_v3_small forward per image (torch's flop counter, 2 per multiply-add)."""
    from torch.utils.flop_counter import FlopCounterMode
    from torchvision.models import mobilenet_v3_small

    model = mobilenet_v3_small(num_classes=classes).eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.randn(2, 3, res, res))
    return counter.get_total_flops() / 2


def mnv3_step(batch: int, res: int, classes: int) -> Callable[[], None]:
    """One plain training step (SGD momentum, cross-entropy) of torchvision's mobilenet_v3_small on fixed tensors."""
    from torchvision.models import mobilenet_v3_small

    torch.manual_seed(0)
    model = mobilenet_v3_small(num_classes=classes).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x, y = torch.randn(batch, 3, res, res), torch.randint(0, classes, (batch,))

    def step() -> None:
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return step


def top_ops(fn: Callable[[], object], steps: int = 2) -> list[dict]:
    """The ops with the most self CPU time over `steps` calls of `fn`: name, ms per step, share of all op time."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            fn()
    events = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
    total = sum(e.self_cpu_time_total for e in events)
    events.sort(key=lambda e: e.self_cpu_time_total, reverse=True)
    return [{"op": e.key, "ms_per_step": e.self_cpu_time_total / 1e3 / steps, "share": e.self_cpu_time_total / total,
             "calls_per_step": e.count / steps} for e in events[:TOP_OPS]]


def measure(ds_path: Path, data_label: str, matmul_gflops: float, rounds: int = 5) -> dict:
    """Alternate search and mobilenet steps for `rounds` timed rounds (after one untimed round); profile both."""
    from mpnas.data.prepared import PreparedDataset
    from mpnas.nas.search import SearchEngine, build_space, val_batch_size

    load_start = os.getloadavg()[0]
    cfg = mini_real_config()
    ds = PreparedDataset(ds_path)
    domains = ds.subset(cfg.data.domains)
    engine = SearchEngine(cfg, ds, domains, build_space(cfg))
    # time steps after the RL delay, where the search spends most of its steps
    engine.step = int(cfg.search.rl_delay_fraction * cfg.search.steps) + 1
    imgs = len(domains) * (3 * cfg.search.batch_size + val_batch_size(cfg))

    def search_step() -> float:
        rows = engine.run_step()
        engine.step += 1
        return engine.costs.flops_target * float(np.mean([r["cost_ratio"] for r in rows])) * imgs

    res, classes = cfg.data.crop, 10
    fwd = mnv3_forward_flops(res, classes)
    search_step()  # untimed: first-call costs
    probe = [search_step() for _ in range(2)]  # untimed: the FLOPs per step the mobilenet batch must match
    batch = max(2, round(statistics.mean(probe) / (3 * fwd)))
    mnv3 = mnv3_step(batch, res, classes)
    mnv3()
    mnv3_ref = mnv3_step(REFERENCE_BATCH, res, classes)
    mnv3_ref()
    search_rates, mnv3_rates, search_s, mnv3_s, search_flops, ref_rates = [], [], [], [], [], []
    for _ in range(rounds):
        t = time.perf_counter()
        flops = search_step()
        search_s.append(time.perf_counter() - t)
        search_flops.append(flops)
        search_rates.append(flops / search_s[-1] / 1e9)
        t = time.perf_counter()
        mnv3()
        mnv3_s.append(time.perf_counter() - t)
        mnv3_rates.append(3 * fwd * batch / mnv3_s[-1] / 1e9)
        t = time.perf_counter()
        mnv3_ref()
        ref_rates.append(3 * fwd * REFERENCE_BATCH / (time.perf_counter() - t) / 1e9)
    search_ops = top_ops(search_step)
    mnv3_ops = top_ops(mnv3)
    search_g, mnv3_g = statistics.median(search_rates), statistics.median(mnv3_rates)
    return {
        "search_gflops": search_g, "mnv3_train_gflops": mnv3_g, "ratio": search_g / mnv3_g,
        "matmul_gflops": matmul_gflops,
        "search_step_s": statistics.median(search_s), "search_step_gflop": statistics.mean(search_flops) / 1e9,
        "mnv3_step_s": statistics.median(mnv3_s), "mnv3_step_gflop": 3 * fwd * batch / 1e9, "mnv3_batch": batch,
        "mnv3_forward_mflop_per_image": fwd / 1e6, "timed_rounds": rounds,
        "mnv3_batch64_train_gflops": statistics.median(ref_rates),
        "settings": {"config": "configs/mini_real.yaml", "data": data_label, "domains": len(domains),
                     "crop": res, "search_batch": cfg.search.batch_size, "val_batch": val_batch_size(cfg),
                     "grouped": cfg.search.grouped, "paths_per_domain": cfg.search.paths_per_domain,
                     "search_step_index": engine.step},
        "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
        "load_average_1min": {"start": load_start, "end": os.getloadavg()[0]},
        "top_ops": {"search": search_ops, "mnv3": mnv3_ops},
    }


def render(r: dict) -> str:
    s = r["settings"]
    load = r["load_average_1min"]
    lines = [
        "## Search step vs a plain mobilenet_v3_small training step (same FLOPs per step)", "",
        "Reproduce: `make bench BENCH=search` (writes `benchmarks/search_efficiency.json`). One run: search steps at "
        f"the mini_real settings ({s['domains']} {s['data']} domains, {s['crop']} px, "
        f"batch {s['search_batch']}/domain, "
        f"val {s['val_batch']}/domain, grouped={s['grouped']}, steps after the RL delay) alternate with "
        f"torchvision mobilenet_v3_small training steps at {s['crop']} px, batch {r['mnv3_batch']} (chosen so a step "
        f"has the search step's FLOPs); medians over {r['timed_rounds']} rounds. {r['torch_threads']} torch threads, "
        f"{r['cpu_count']} cores, 1-min load average {load['start']:.1f} at the start and {load['end']:.1f} at the "
        f"end (the benchmark itself keeps {r['torch_threads']} threads busy, so a load well above that means other "
        "jobs shared the machine and absolute GFLOP/s are low); the ratio compares steps that alternated under the "
        "same load.", "",
        "| measurement | value |", "|---|---:|",
        f"| search step | {r['search_step_s']:.3f} s, {r['search_step_gflop']:.2f} GFLOP |",
        f"| mobilenet_v3_small step (batch {r['mnv3_batch']}, {r['mnv3_forward_mflop_per_image']:.2f} MFLOP/image "
        f"forward) | {r['mnv3_step_s']:.3f} s, {r['mnv3_step_gflop']:.2f} GFLOP |",
        f"| search GFLOP/s | {r['search_gflops']:.2f} |",
        f"| mobilenet_v3_small training GFLOP/s | {r['mnv3_train_gflops']:.2f} |",
        f"| **ratio search / mobilenet** (target >= 0.9) | **{r['ratio']:.2f}** |",
        f"| mobilenet_v3_small training GFLOP/s at batch {REFERENCE_BATCH} (the issue's reference step; not FLOP-"
        f"matched) | {r['mnv3_batch64_train_gflops']:.2f} |",
        f"| 2048x2048 fp32 matmul GFLOP/s | {r['matmul_gflops']:.1f} |", ""]
    for side, title in (("search", "search step"), ("mnv3", "mobilenet_v3_small step")):
        lines += [f"Top ops by self CPU time, {title} (torch.profiler, 2 steps):", "",
                  "| op | ms/step | share | calls/step |", "|---|---:|---:|---:|"]
        lines += [f"| `{o['op']}` | {o['ms_per_step']:.1f} | {o['share']:.1%} | {o['calls_per_step']:.0f} |"
                  for o in r["top_ops"][side]]
        lines.append("")
    return "\n".join(lines)


def write(r: dict) -> None:
    import json

    from benchmarks.bench_data import update_section
    from mpnas.utils.io import atomic_write_text

    atomic_write_text(JSON_OUT, json.dumps(r, indent=2) + "\n")
    update_section(render(r), area="search_efficiency")
