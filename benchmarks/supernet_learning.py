"""How far above chance the search's supernet gets, and what path sampling costs it (issue 10 diagnostics).

Two measurements, each printed as one JSON line per run:

* `--histories H [H ...]`: from finished searches' history.parquet files, each domain's mean reward quality over
  the last `--last` steps next to its chance level (1 / classes): is the reward above chance when the controllers
  read it?
* `--steps N`: the search engine itself for N steps with the RL off, once with a new path sampled every step (as
  the search does) and once with the space's reference path fixed for every domain: mean reward quality above
  chance and training-batch top-1 over the last 20 steps. Same seed, data and config otherwise.

    python -m benchmarks.supernet_learning -c configs/mini_real.yaml --data data/prepared/mini_real \
        --histories runs/signal_full/real/seed*/search/history.parquet runs/signal_full/null/seed*/search/history.parquet
    python -m benchmarks.supernet_learning -c configs/mini_real.yaml --data data/prepared/mini_real --steps 100
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from mpnas.cli._common import load_any_config
from mpnas.data.prepared import PreparedDataset
from mpnas.nas.search import SearchEngine, build_space
from mpnas.space import SearchSpace


def reward_vs_chance(history: Path, ds: PreparedDataset, last: int) -> dict[str, dict[str, float]]:
    """Per domain: mean reward quality of the last `last` steps and the chance level."""
    h = pd.read_parquet(history)
    tail = h[h.step > h.step.max() - last]
    return {d: {"reward": float(g.accuracy.mean()), "chance": 1.0 / ds.num_classes(d)}
            for d, g in tail.groupby("domain")}


def fix_reference_path(engine: SearchEngine, space: SearchSpace) -> None:
    """Make every controller choose the reference genotype with probability ~1 (logits +-30, the prior zeroed)."""
    ref = space.reference_genotype()
    with torch.no_grad():
        if engine.prior is not None:
            engine.prior.logits.zero_()
        for c in engine.controllers:
            idx = []
            for dec in c.decisions:
                choice = ref.choices[dec.layer]
                want = ("zero" if choice.is_zero else "block") if dec.name == "op" else getattr(choice, dec.name)
                idx.append(list(dec.options).index(want))
            c.logits.fill_(-30.0)
            c.logits[torch.arange(len(idx)), torch.as_tensor(idx)] = 30.0
    assert all(str(c.argmax_genotype()) == str(ref) for c in engine.controllers)


def run_engine(cfg, ds: PreparedDataset, steps: int, fixed: bool, window: int = 20) -> dict[str, float]:
    """Mean reward quality above chance and training-batch top-1 over the last `window` of `steps` steps."""
    space = build_space(cfg)
    engine = SearchEngine(cfg, ds, ds.subset(cfg.data.domains), space)
    if fixed:
        fix_reference_path(engine, space)
    rows = []
    for _ in range(steps):
        rows += engine.run_step()
        engine.step += 1
    last = [r for r in rows if r["step"] > steps - window]
    above = [r["accuracy"] - 1.0 / ds.num_classes(r["domain"]) for r in last]
    return {"path": "fixed reference" if fixed else "sampled every step", "steps": steps,
            "reward_above_chance": float(np.mean(above)),
            "train_top1": float(np.mean([r["train_accuracy"] for r in last]))}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-c", "--config", required=True, help="the search's config (run config or plain)")
    ap.add_argument("--data", required=True, type=Path, help="prepared data directory")
    ap.add_argument("--histories", nargs="*", default=[], type=Path, help="search history.parquet files")
    ap.add_argument("--last", type=int, default=50, help="steps averaged at the end of each history")
    ap.add_argument("--steps", type=int, default=0, help="run the engine this many steps, sampled vs fixed path")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override (repeatable)")
    a = ap.parse_args(argv)
    ds = PreparedDataset(a.data)
    for h in a.histories:
        print(json.dumps({"history": str(h), "domains": reward_vs_chance(h, ds, a.last)}), flush=True)
    if a.steps:
        # RL off (the delay covers the run): only the supernet's learning is measured
        cfg = load_any_config(a.config, [f"search.steps={a.steps}", "search.rl_delay_fraction=0.99", *a.set])
        for fixed in (False, True):
            print(json.dumps(run_engine(cfg, ds, a.steps, fixed)), flush=True)


if __name__ == "__main__":
    main()
