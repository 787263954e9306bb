"""Does the supernet rank paths the way training them does? The search-signal diagnostic of issue 10.

A REINFORCE controller can only learn what its reward ranks. This samples paths per domain from its final
controller (or the uniform policy), scores each on a searched supernet exactly as the search's reward does
(batch-statistics BN, `--reward-batch` images per call, mean over the whole searchval split), trains each path alone
on its domain from scratch (`--seeds` times, the project's trainer at the given budget), and reports rank
correlations per domain:

* supernet vs stand-alone accuracy: what the controllers can learn from;
* stand-alone seed vs seed: the ceiling a perfect proxy could reach at this training budget;
* FLOPs vs stand-alone accuracy and FLOPs vs supernet score: how much of either ranking is only capacity.

    python -m benchmarks.supernet_rank -c configs/mini_real.yaml --data data/prepared/mini_real \
        --checkpoint runs/signal_full/real/seed0/search/checkpoint.pt --domains cifar10 gtsrb dynamic_proc \
        --paths 8 --seeds 0 1 --out results/mini_real/supernet_rank.json

Each trained path is kept under --work, so an interrupted run continues where it stopped.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mpnas.cli._common import load_any_config
from mpnas.data.loading import iterate_split
from mpnas.data.prepared import PreparedDataset
from mpnas.nas.checkpoint import load_state
from mpnas.nas.controller import Controller, SharedPrior
from mpnas.nas.reward import path_quality
from mpnas.nas.search import build_space
from mpnas.nas.supernet import SuperNet
from mpnas.space import Genotype
from mpnas.training.trainer import train_model
from mpnas.utils.io import atomic_write_text


def kendall_tau(a: list[float], b: list[float]) -> float:
    """Kendall's tau-b (ties count for neither side); nan with fewer than 2 untied pairs."""
    conc = disc = ta = tb = 0
    for i in range(len(a)):
        for j in range(i + 1, len(a)):
            da, db = np.sign(a[i] - a[j]), np.sign(b[i] - b[j])
            ta, tb = ta + (da == 0), tb + (db == 0)
            conc, disc = conc + (da * db > 0), disc + (da * db < 0)
    n0 = len(a) * (len(a) - 1) / 2
    denom = np.sqrt((n0 - ta) * (n0 - tb))
    return float((conc - disc) / denom) if denom > 0 else float("nan")


def load_supernet(st: dict, checkpoint: Path, space, ds: PreparedDataset) -> tuple[SuperNet, dict[str, nn.Linear]]:
    """The shared supernet (nets[0]) and the per-domain classifiers of a multi_path search checkpoint."""
    if st.get("mode") != "multi_path":
        raise ValueError(f"{checkpoint}: a {st.get('mode')} search; this diagnostic needs multi_path")
    nets = nn.ModuleList([SuperNet(space)])
    nets.load_state_dict(st["nets"])
    feat = nets[0].head.out_features
    heads = nn.ModuleList(nn.Linear(feat, ds.num_classes(d)) for d in st["domains"])
    heads.load_state_dict(st["classifiers"])
    return nets[0].eval(), dict(zip(st["domains"], heads))


def final_policies(st: dict, space) -> dict[str, Controller]:
    """Each domain's controller as the search left it (with the shared prior when the search was tied)."""
    prior = None
    if st.get("prior") is not None:
        prior = SharedPrior(space)
        prior.load_state_dict(st["prior"])
    ctrls = nn.ModuleList(Controller(space, prior) for _ in st["domains"])
    ctrls.load_state_dict(st["controllers"])
    return dict(zip(st["domains"], ctrls))


@torch.inference_mode()
def supernet_score(net: SuperNet, head: nn.Linear, ds: PreparedDataset, domain: str, genotype: Genotype,
                   crop: int, batch: int) -> dict[str, float]:
    """Mean reward quality over the searchval split, one call per `batch` images (the search's BN statistics); a
    split smaller than `batch` is scored as one call."""
    ops = list(genotype)
    batch = min(batch, ds.split_size(domain, "searchval"))
    top1, prob, n = 0.0, 0.0, 0
    for x, y in iterate_split(ds, domain, "searchval", batch, crop):
        if len(y) < batch:  # a short last batch would change the batch statistics
            continue
        logits = head(net(x, ops))
        top1 += float(path_quality(logits, y, "top1")) * len(y)
        prob += float(path_quality(logits, y, "true_prob")) * len(y)
        n += len(y)
    return {"top1": top1 / n, "true_prob": prob / n, "images": n}


def standalone(cfg, data: Path, domain: str, genotype: Genotype, seed: int, work: Path) -> float:
    """Best val top-1 of the path trained alone on its domain (cached in work/result.json)."""
    done = work / "result.json"
    if done.is_file():
        return json.loads(done.read_text())["top1_val"]
    res = train_model(cfg.model_copy(update={"seed": seed}), data, {domain: genotype}, work / "model",
                      resume=True, progress=False)
    val = float(res.best_val[domain])
    atomic_write_text(done, json.dumps({"top1_val": val, "seconds": res.steps_done / max(res.steps_per_s, 1e-9)}))
    return val


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-c", "--config", required=True, help="the config the search ran with (space, data size)")
    ap.add_argument("--data", required=True, type=Path, help="prepared data directory of the search")
    ap.add_argument("--checkpoint", required=True, type=Path, help="multi_path search checkpoint.pt")
    ap.add_argument("--domains", nargs="+", required=True)
    ap.add_argument("--paths", type=int, default=8, help="paths sampled per domain")
    ap.add_argument("--policy", choices=["final", "uniform"], default="final",
                    help="sample from each domain's final controller (the paths its supernet was trained on and "
                         "the controller chooses among) or from the uniform policy")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="stand-alone training seeds per path")
    ap.add_argument("--reward-batch", type=int, default=32, help="images per supernet call (search: val batch)")
    ap.add_argument("--sample-seed", type=int, default=0)
    ap.add_argument("--work", type=Path, default=Path("runs/supernet_rank"))
    ap.add_argument("--out", type=Path, required=True, help="JSON report")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override (training)")
    a = ap.parse_args(argv)
    cfg = load_any_config(a.config, [*a.set, "train.loss_weighting.name=uniform"])
    ds, space = PreparedDataset(a.data), build_space(cfg)
    st = load_state(a.checkpoint, "search checkpoint")
    net, heads = load_supernet(st, a.checkpoint, space, ds)
    rng = np.random.default_rng(a.sample_seed)
    policies = final_policies(st, space) if a.policy == "final" else {d: Controller(space) for d in st["domains"]}
    report = {"checkpoint": str(a.checkpoint), "config": str(a.config), "overrides": a.set, "policy": a.policy,
              "train_steps": cfg.train.steps, "train_batch": cfg.train.batch_size, "seeds": a.seeds, "domains": {}}
    t0 = time.perf_counter()
    for d in a.domains:
        rows = []
        policy = policies[d]
        for i, idx in enumerate(policy.sample(rng, a.paths)):
            g = policy.genotype(idx)
            score = supernet_score(net, heads[d], ds, d, g, cfg.data.crop, a.reward_batch)
            row = {"genotype": g.to_strings(), "flops": space.path_flops(g, ds.num_classes(d)), "depth": g.depth(),
                   "supernet": score}
            row["standalone"] = [standalone(cfg, a.data, d, g, s, a.work / d / f"path{i}" / f"seed{s}")
                                 for s in a.seeds]
            rows.append(row)
            print(f"[{time.perf_counter() - t0:6.0f}s] {d} path {i}: FLOPs {row['flops'] / 1e6:.1f} M, supernet "
                  f"top1 {row['supernet']['top1']:.3f} prob {row['supernet']['true_prob']:.3f}, stand-alone "
                  f"{row['standalone']}", flush=True)
        report["domains"][d] = {"paths": rows, "tau": correlations(rows)}
        print(d, json.dumps(report["domains"][d]["tau"]), flush=True)
    report["seconds"] = time.perf_counter() - t0
    atomic_write_text(a.out, json.dumps(report, indent=1))


def correlations(rows: list[dict]) -> dict[str, float]:
    """Kendall tau between the rankings (stand-alone = mean over seeds)."""
    alone = [float(np.mean(r["standalone"])) for r in rows]
    flops = [float(r["flops"]) for r in rows]
    out = {"supernet_top1_vs_standalone": kendall_tau([r["supernet"]["top1"] for r in rows], alone),
           "supernet_prob_vs_standalone": kendall_tau([r["supernet"]["true_prob"] for r in rows], alone),
           "flops_vs_standalone": kendall_tau(flops, alone),
           "flops_vs_supernet_prob": kendall_tau(flops, [r["supernet"]["true_prob"] for r in rows])}
    if len(rows[0]["standalone"]) >= 2:
        out["standalone_seed_vs_seed"] = kendall_tau([r["standalone"][0] for r in rows],
                                                     [r["standalone"][1] for r in rows])
    return out


if __name__ == "__main__":
    main()
