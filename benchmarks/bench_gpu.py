"""GPU benchmark (issue 12): search and training steps/s at the mini_real settings and at 4x the batch, the CPU
figures as a ratio, and the share of step time spent in kernels vs on the host (torch.profiler).

    python -m benchmarks.bench_gpu [--data PREPARED_DIR] [--device auto|cuda|cpu] [--budget-s 200] [--tiny]
                                   [--cudnn on|off] [--bucket-shapes auto|on|off] [--device-data auto|on|off]
                                   [--out PATH] [--cpu-reference PATH]

Settings: configs/mini_real.yaml (mpnas_small, 36 px images, 32 px crops, search batch 16/domain with 2x reward
images, training batch 32/domain) and the same with every batch x4. Without --data it writes random uint8 images in
the prepared layout (the mini-decathlon's ten domains and class counts; step speed does not depend on the pixels).
Search steps start after the RL delay; training steps run the merged model of one genotype per domain, sampled from a
uniform controller (seeded). Each phase runs warm-up steps, then timed steps until `--steps` or its share of
`--budget-s` is used (at least one timed step), synchronising the device around the timed loop; phases left when the
budget is spent are reported as skipped, so a slow path cannot overrun: at most 4 minutes with the default budget.

The CUDA path of docs/gpu.md is what runs: --bucket-shapes sets search.bucket_shapes (grouped calls padded to a few
fixed batch sizes) and --device-data sets data.device_resident (arrays uploaded once, augmentation on the device);
both default to auto, which is on on CUDA and off on the CPU. The JSON records what each phase resolved them to.

Kernel share (1x settings, 2 steps under torch.profiler): on CUDA the summed kernel time over the wall time (the
rest is the GPU waiting for the host: Python, launches, synchronisations); on the CPU the summed self time of
profiled ops over the wall time (the rest is Python and framework work outside ops).

Outputs: on CUDA `benchmarks/gpu.json` (keys device, search_steps_per_s, train_steps_per_s, search_speedup_vs_cpu,
train_speedup_vs_cpu, and the details); on the CPU without --tiny `benchmarks/cpu_steps.json`, the CPU reference the
speed-ups divide by (they are computed only when its settings equal the run's); with --tiny only --out, if given.
Needs torch, pydantic (with the numpy/pyyaml/pandas that mpnas imports) and this package; no ZenML or MLflow.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
MINI_REAL = ROOT / "configs" / "mini_real.yaml"
SMOKE = ROOT / "configs" / "smoke.yaml"
GPU_JSON = ROOT / "benchmarks" / "gpu.json"
CPU_JSON = ROOT / "benchmarks" / "cpu_steps.json"
# The real mini-decathlon's domains and class counts (the classifier sizes depend on them).
MINI_DECATHLON_CLASSES = {"aircraft": 100, "cifar100": 100, "daimlerpedcls": 2, "dtd": 47, "gtsrb": 43,
                          "imagenet12": 1000, "omniglot": 1623, "svhn": 10, "ucf101": 101, "vgg-flowers": 102}
TINY_CLASSES = {"alpha": 3, "beta": 5}
SCALES = (1, 4)


# ------------------------------------------------------------------------------------------------------------ data
def random_prepared(out: Path, classes: dict[str, int], size: int, per_split: dict[str, int], seed: int = 0) -> Path:
    """A prepared dataset of random uint8 images (labels cycle through the classes)."""
    from mpnas.data.prepared import channel_stats, write_meta, write_split

    rng = np.random.default_rng(seed)
    domains = {}
    for name, k in classes.items():
        for split, n in per_split.items():
            images = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
            write_split(out, name, split, images, np.arange(n) % k)
            if split == "train":
                mean, std = channel_stats(images)
        domains[name] = {"classes": [f"c{i}" for i in range(k)], "splits": dict(per_split),
                         "labeled": {s: True for s in per_split}, "mean": mean, "std": std}
    write_meta(out, size, "random", domains)
    return out


# ---------------------------------------------------------------------------------------------------------- config
def base_config(tiny: bool):
    """mini_real's config, or (tiny) the smoke config's space and image size with two domains and small batches."""
    from mpnas.cli._common import load_any_config

    path = SMOKE if tiny else MINI_REAL
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the benchmark reads its settings from this config; run it from a checkout")
    cfg = load_any_config(path, [])
    data = cfg.data.model_copy(update={"domains": None, "max_train_per_domain": None})
    if tiny:
        return cfg.model_copy(update={
            "data": data, "search": cfg.search.model_copy(update={"batch_size": 4, "val_batch_multiplier": 1.0}),
            "train": cfg.train.model_copy(update={"batch_size": 4})})
    return cfg.model_copy(update={"data": data})


def with_gpu_options(cfg, bucket_shapes: str, device_data: str):
    """The config with search.bucket_shapes and data.device_resident set (docs/gpu.md)."""
    return cfg.model_copy(update={"search": cfg.search.model_copy(update={"bucket_shapes": bucket_shapes}),
                                  "data": cfg.data.model_copy(update={"device_resident": device_data})})


def scaled(cfg, k: int):
    """The config with the search and training batches x k (the reward batch follows via its multiplier)."""
    return cfg.model_copy(update={"search": cfg.search.model_copy(update={"batch_size": cfg.search.batch_size * k}),
                                  "train": cfg.train.model_copy(update={"batch_size": cfg.train.batch_size * k})})


# ----------------------------------------------------------------------------------------------------------- steps
def search_step_fn(cfg, ds, device: torch.device) -> Callable[[], None]:
    from mpnas.nas.search import SearchEngine, build_space

    engine = SearchEngine(cfg, ds, ds.subset(cfg.data.domains), build_space(cfg), device=device)
    engine.step = int(cfg.search.rl_delay_fraction * cfg.search.steps) + 1  # past the RL delay, like most steps

    def step() -> None:
        engine.run_step()
        engine.step = min(engine.step + 1, engine.total - 1)
    step.resolved = {"bucket_shapes": engine.bucket,  # type: ignore[attr-defined]
                     "device_resident": engine.train_loader.kind == "device_resident"}
    return step


def train_step_fn(cfg, ds, device: torch.device) -> Callable[[], None]:
    from mpnas.nas.controller import Controller
    from mpnas.training.trainer import _Run, build_model, resolve_space  # _Run: the real training step

    domains = ds.subset(cfg.data.domains)
    controller = Controller(resolve_space(cfg))
    rng = np.random.default_rng(cfg.seed)
    genotypes = {d: controller.genotype(controller.sample(rng, 1)[0]) for d in domains}
    model = build_model(cfg, ds, genotypes, domains).to(device)
    run = _Run(cfg, ds, model, domains, device)

    def step() -> None:
        run.train_step()
    step.resolved = {"device_resident": run.loader.kind == "device_resident"}  # type: ignore[attr-defined]
    return step


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def rate(step: Callable[[], None], device: torch.device, warmup: int, steps: int, seconds: float) -> dict:
    """Steps/s over timed steps after `warmup` untimed ones; stops timing after `seconds` (>= 1 timed step)."""
    t_start = time.perf_counter()
    for _ in range(warmup):
        step()
    _sync(device)
    t0, n = time.perf_counter(), 0
    while n < steps and (n == 0 or time.perf_counter() - t_start < seconds):
        step()
        n += 1
        if n % 4 == 0:
            _sync(device)  # keep the host from queueing far ahead of the clock check
    _sync(device)
    dt = time.perf_counter() - t0
    return {"steps_per_s": n / dt, "s_per_step": dt / n, "timed_steps": n, "warmup_steps": warmup,
            "phase_s": time.perf_counter() - t_start}


def kernel_share(step: Callable[[], None], device: torch.device, steps: int = 2) -> dict:
    """Share of the wall time of `steps` profiled steps spent in device kernels (CUDA) or in op bodies (CPU)."""
    from torch.profiler import ProfilerActivity, profile

    cuda = device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    _sync(device)
    with profile(activities=activities) as prof:
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        _sync(device)
        wall = time.perf_counter() - t0
    events = prof.key_averages()
    if cuda:
        busy = sum(getattr(e, "self_device_time_total", getattr(e, "self_cuda_time_total", 0)) for e in events) / 1e6
        what = "CUDA kernel time / wall time"
    else:
        busy = sum(e.self_cpu_time_total for e in events) / 1e6
        what = "self CPU time of profiled ops / wall time"
    share = min(1.0, busy / wall)
    return {"kernel_share": share, "host_share": 1.0 - share, "profiled_steps": steps, "wall_s": wall,
            "measure": what}


# --------------------------------------------------------------------------------------------------------- report
def settings_of(cfg, n_domains: int, data: str) -> dict:
    from mpnas.nas.search import val_batch_size

    return {"domains": n_domains, "image_size": None, "crop": cfg.data.crop, "space": cfg.space.preset,
            "search_batch": cfg.search.batch_size, "search_val_batch": val_batch_size(cfg),
            "search_grouped": cfg.search.grouped, "train_batch": cfg.train.batch_size, "data": data}


def speedups(result: dict, reference: Optional[dict]) -> tuple[dict, Optional[str]]:
    """Device steps/s over the CPU reference's, per phase, where both measured the same settings."""
    if reference is None:
        return {}, "no CPU reference (run `python -m benchmarks.bench_gpu --device cpu` on the CPU machine)"
    out = {}
    for key, phase in result["phases"].items():
        ref = reference.get("phases", {}).get(key)
        if phase.get("steps_per_s") and ref and ref.get("steps_per_s") and ref["settings"] == phase["settings"]:
            out[key] = phase["steps_per_s"] / ref["steps_per_s"]
    return out, None if out else "the CPU reference was measured at other settings"


def render(r: dict) -> str:
    lines = [f"device: {r['device']}  torch {r['torch']}  threads {r['torch_threads']}  cudnn "
             f"{r['cudnn_enabled']}  data: {r['data']}  budget {r['budget_s']} s, took {r['wall_s']:.0f} s"]
    used = {k: v for p in r["phases"].values() for k, v in p.get("resolved", {}).items()}
    lines.append(f"  bucket_shapes {r['bucket_shapes']} -> {'on' if used.get('bucket_shapes') else 'off'}, "
                 f"device data {r['device_data']} -> {'on' if used.get('device_resident') else 'off'}")
    for key, p in r["phases"].items():
        if p.get("skipped"):
            lines.append(f"  {key:9s} skipped: {p['skipped']}")
            continue
        sp = r["speedup_vs_cpu"].get(key)
        lines.append(f"  {key:9s} {p['steps_per_s']:8.3f} steps/s ({p['s_per_step']:.3f} s/step, "
                     f"{p['timed_steps']} timed)" + (f"  {sp:.1f}x the CPU reference" if sp else ""))
    for key, k in r["kernel_share"].items():
        lines.append(f"  {key} step: kernel {k['kernel_share']:.0%}, host {k['host_share']:.0%} ({k['measure']})")
    if r.get("speedup_note"):
        lines.append(f"  speed-up vs CPU: {r['speedup_note']}")
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--data", help="prepared dataset (default: random uint8 images in a temp dir)")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cuda, cuda:N or cpu")
    p.add_argument("--budget-s", type=float, default=200.0, help="wall-clock budget of all timed phases")
    p.add_argument("--steps", type=int, default=30, help="at most this many timed steps per phase")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps per phase (1 with --tiny)")
    p.add_argument("--tiny", action="store_true", help="the smoke config's tiny space, 2 domains, batch 4: seconds "
                                                       "on a CPU, to test the benchmark itself")
    p.add_argument("--cudnn", choices=("on", "off"), default="on", help="torch.backends.cudnn.enabled")
    p.add_argument("--bucket-shapes", choices=("auto", "on", "off"), default="auto",
                   help="search.bucket_shapes: pad grouped search calls to fixed sizes (auto: on CUDA)")
    p.add_argument("--device-data", choices=("auto", "on", "off"), default="auto",
                   help="data.device_resident: upload the arrays once, augment on the device (auto: on CUDA)")
    p.add_argument("--out", help="JSON output (default: benchmarks/gpu.json on CUDA, benchmarks/cpu_steps.json on "
                                 "the CPU, none with --tiny)")
    p.add_argument("--cpu-reference", default=str(CPU_JSON), help="CPU figures to divide by")
    args = p.parse_args(argv if argv is not None else [])
    from mpnas.config import resolve_device
    from mpnas.data.prepared import PreparedDataset

    t_start = time.perf_counter()
    device = resolve_device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda but torch sees no CUDA device; use --device cpu", file=sys.stderr)
        return 2
    torch.backends.cudnn.enabled = args.cudnn == "on"
    warmup = 1 if args.tiny else args.warmup
    steps = min(args.steps, 3) if args.tiny else args.steps
    cfg = with_gpu_options(base_config(args.tiny), args.bucket_shapes, args.device_data)
    with tempfile.TemporaryDirectory(prefix="mpnas-bench-gpu-") as tmp:
        if args.data:
            data, label = Path(args.data), str(args.data)
        else:
            classes = TINY_CLASSES if args.tiny else MINI_DECATHLON_CLASSES
            per_split = ({"train": 32, "searchval": 8, "val": 8, "test": 8} if args.tiny
                         else {"train": 512, "searchval": 256, "val": 32, "test": 32})
            data = random_prepared(Path(tmp) / "random", classes, cfg.data.size, per_split)
            label = f"random uint8, {len(classes)} domains ({'tiny' if args.tiny else 'mini-decathlon classes'})"
        ds = PreparedDataset(data)
        n_domains = len(ds.subset(cfg.data.domains))
        phases: dict[str, dict] = {}
        shares: dict[str, dict] = {}
        plan = [(kind, k) for k in SCALES for kind in ("search", "train")]
        for i, (kind, k) in enumerate(plan):
            key = f"{kind}_x{k}"
            c = scaled(cfg, k)
            settings = settings_of(c, n_domains, label)
            settings["image_size"] = ds.size
            left = args.budget_s - (time.perf_counter() - t_start)
            if left <= 0:
                phases[key] = {"skipped": "budget spent", "settings": settings}
                continue
            step = (search_step_fn if kind == "search" else train_step_fn)(c, ds, device)
            phases[key] = {**rate(step, device, warmup, steps, left / (len(plan) - i + 0.5)), "settings": settings,
                           "resolved": step.resolved}
            if k == 1:
                shares[kind] = kernel_share(step, device, 1 if args.tiny else 2)
            del step
            if device.type == "cuda":
                torch.cuda.empty_cache()
            print(f"[bench_gpu] {key}: {phases[key]['steps_per_s']:.3f} steps/s", file=sys.stderr, flush=True)
    reference = None
    ref_path = Path(args.cpu_reference)
    if ref_path.is_file() and not (device.type == "cpu" and not args.tiny):
        reference = json.loads(ref_path.read_text())
    result = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
              "search_steps_per_s": phases["search_x1"].get("steps_per_s"),
              "train_steps_per_s": phases["train_x1"].get("steps_per_s"),
              "search_speedup_vs_cpu": None, "train_speedup_vs_cpu": None,
              "torch": torch.__version__, "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
              "load_average_1min": os.getloadavg()[0], "cudnn_enabled": torch.backends.cudnn.enabled,
              "tiny": args.tiny, "data": label, "bucket_shapes": args.bucket_shapes, "device_data": args.device_data,
              "budget_s": args.budget_s, "phases": phases, "kernel_share": shares}
    result["speedup_vs_cpu"], result["speedup_note"] = speedups(result, reference)
    result["search_speedup_vs_cpu"] = result["speedup_vs_cpu"].get("search_x1")
    result["train_speedup_vs_cpu"] = result["speedup_vs_cpu"].get("train_x1")
    if reference is not None:
        result["cpu_reference"] = {"path": str(ref_path), "device": reference.get("device"),
                                   "load_average_1min": reference.get("load_average_1min"),
                                   "torch_threads": reference.get("torch_threads")}
    result["wall_s"] = time.perf_counter() - t_start
    out = args.out or (None if args.tiny else GPU_JSON if device.type == "cuda" else CPU_JSON)
    print(render(result))
    if out:
        from mpnas.utils.io import atomic_write_text

        atomic_write_text(Path(out), json.dumps(result, indent=2) + "\n")
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
