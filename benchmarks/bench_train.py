"""Training-step throughput of the merged model: routed execution vs per-domain calls, and the default config.

Run: python -m benchmarks.run train, or python -m benchmarks.bench_train [--domains 10] [--batch 32] [--res 32] [--steps 5]
Prints seconds per step and ratios measured in the same run (the CPU is shared, so compare ratios, not absolutes),
and the routed step with NCHW activations (instead of channels-last) and with one intra-op thread.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from mpnas.config import load_config
from mpnas.models import blocks
from mpnas.models.multipath import MultiPathNet
from mpnas.space import SearchSpace


def _time(fn, steps: int) -> float:
    fn()  # warm-up
    t = time.perf_counter()
    for _ in range(steps):
        fn()
    return (time.perf_counter() - t) / steps


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--domains", type=int, default=10)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--res", type=int, default=32)
    ap.add_argument("--steps", type=int, default=5)
    args = ap.parse_args(argv or [])  # `benchmarks.run` calls main() with defaults
    cfg = load_config()
    space = SearchSpace.from_config(cfg.space, args.res)
    g = space.reference_genotype()
    doms = [f"d{i}" for i in range(args.domains)]
    torch.manual_seed(0)
    model = MultiPathNet(space, {d: g for d in doms}, {d: 10 for d in doms}, space_config=cfg.space).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    xs = {d: torch.randn(args.batch, 3, args.res, args.res) for d in doms}
    ys = {d: torch.randint(0, 10, (args.batch,)) for d in doms}

    def update(logits: dict[str, torch.Tensor]) -> None:
        loss = torch.stack([torch.nn.functional.cross_entropy(v, ys[d]) for d, v in logits.items()]).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    routed = _time(lambda: update(model.forward_routed(xs)), args.steps)
    per_domain = _time(lambda: update({d: model(x, d) for d, x in xs.items()}), args.steps)
    out = {"threads": torch.get_num_threads(), "routed_s_per_step": routed, "per_domain_s_per_step": per_domain,
           "routed_steps_per_s": 1 / routed, "routed_images_per_s": args.domains * args.batch / routed,
           "speedup_routed_vs_per_domain": per_domain / routed}
    threads, default_format = torch.get_num_threads(), blocks.MEMORY_FORMAT
    try:  # the routed step under other execution settings
        blocks.MEMORY_FORMAT = torch.contiguous_format
        out["routed_nchw_s_per_step"] = _time(lambda: update(model.forward_routed(xs)), args.steps)
        blocks.MEMORY_FORMAT = default_format
        torch.set_num_threads(1)
        out["routed_1_thread_s_per_step"] = _time(lambda: update(model.forward_routed(xs)), args.steps)
    finally:
        blocks.MEMORY_FORMAT = default_format
        torch.set_num_threads(threads)
    for k, v in out.items():
        print(f"{k:32s} {v:.3f}" if isinstance(v, float) else f"{k:32s} {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
