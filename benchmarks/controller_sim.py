"""Controller-only simulator of the multi-path search: seconds per study, for the RL dynamics only.

Each domain's path quality is Binomial(n, p_d + u(path))/n, where u sums a small per-(layer, block) utility shared
by all domains (`--sigma`; 0 = no architecture signal at all). Everything else is the product's own code: the
Controller (optionally tied to a SharedPrior), the RL schedule, the EMA or leave-one-out baseline, the abs FLOPs
reward and the marginal-params term. It answers "how decided and how shared do the controllers end up, and do they
find the better blocks", not "is the searched model better": only trained models on real data answer that.

    python -m benchmarks.controller_sim -c configs/mini_real.yaml --seeds 3 --set search.tying.prior=shared
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from mpnas.cli._common import load_any_config
from mpnas.nas.controller import Controller, SharedPrior, rl_lr_at, rl_optimizer, tying_penalty, tying_strength_at
from mpnas.nas.reward import CostModel, EmaBaseline, path_reward
from mpnas.nas.search import build_space
from mpnas.nas.signal import node_counts


def simulate(cfg, seed: int, sigma: float, n_domains: int = 10) -> dict:
    s, space = cfg.search, build_space(cfg)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    util = [{str(c): rng.normal(0, sigma) for c in layer.choices()} for layer in space.layers]
    prior = SharedPrior(space) if s.tying.prior == "shared" else None
    ctrls = [Controller(space, prior) for _ in range(n_domains)]
    opt = rl_optimizer([p for c in ctrls for p in c.parameters()] + (list(prior.parameters()) if prior else []))
    costs, bases = CostModel(space, s), [EmaBaseline(s.baseline_momentum) for _ in ctrls]
    base_acc = rng.uniform(0.2, 0.7, n_domains)
    K = s.paths_per_domain
    n = int(round(s.val_batch_multiplier * s.batch_size)) // (1 if s.paired_rewards else K)
    for t in range(s.steps):
        lr = rl_lr_at(t, s.steps, s)
        argmax_nodes = [c.argmax_genotype().nodes() for c in ctrls] if s.cost_scope == "marginal" else None
        loss = torch.zeros(())
        for d, c in enumerate(ctrls):
            smp = c.sample(rng, K)
            common = rng.normal(0, 0.05) if s.paired_rewards else 0.0  # image-draw difficulty shared when paired
            R = []
            for k in range(K):
                g = c.genotype(smp[k])
                noise = common if s.paired_rewards else rng.normal(0, 0.05)
                p = np.clip(base_acc[d] + noise + sum(util[i][str(ch)] for i, ch in enumerate(g.choices)), 0.01, 0.99)
                r = path_reward(rng.binomial(n, p) / n, *costs.ratios(g), s)
                if argmax_nodes is not None:
                    others = set().union(*(argmax_nodes[j] for j in range(n_domains) if j != d))
                    r += s.share_beta * costs.marginal_params_ratio(g, others)
                R.append(r)
            R = np.array(R)
            b = bases[d].update(float(R.mean()))
            adv = R - (R.sum() - R) / (K - 1) if s.baseline == "leave_one_out" else R - b
            if lr > 0:
                loss = loss - (torch.as_tensor(adv, dtype=torch.float32) * c.log_prob(smp)).mean()
        if lr > 0:
            if prior is not None:
                loss = loss + tying_penalty(ctrls, tying_strength_at(t, s.steps, s))
            for grp in opt.param_groups:
                grp["lr"] = lr
            opt.zero_grad()
            loss.backward()
            opt.step()
    genos = {str(d): c.argmax_genotype() for d, c in enumerate(ctrls)}
    nodes, shared = node_counts(genos)
    node_params = {(i, str(ch)): space.layers[i].cost(ch)[1] for g in genos.values() for i, ch in enumerate(g.choices)}
    merged = sum(node_params[nd] for nd in {nd for g in genos.values() for nd in g.nodes()})
    bundle = sum(node_params[(i, str(ch))] for g in genos.values() for i, ch in enumerate(g.choices))
    best = [max(layer.choices(), key=lambda ch, i=i: util[i][str(ch)]) for i, layer in enumerate(space.layers)]
    hit = float(np.mean([[g.choices[i] == best[i] for i in range(1, len(space.layers))] for g in genos.values()]))
    return {"p_argmax": float(np.mean([np.mean(list(c.max_probs().values())) for c in ctrls])), "nodes": nodes,
            "shared_nodes": shared, "node_params_merged_over_bundle": merged / bundle,
            "flops_ratio": float(np.mean([costs.ratios(g)[0] for g in genos.values()])), "best_block_hit": hit}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-c", "--config", help="mpnas config or run config (parameters.config)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--sigma", type=float, default=0.01, help="std of the per-block utility (0: no signal)")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    cfg = load_any_config(a.config, a.set)
    runs = [simulate(cfg, seed, a.sigma) for seed in range(a.seeds)]
    keys = runs[0].keys()
    print(json.dumps({"set": a.set, "sigma": a.sigma,
                      **{k: [round(float(np.mean([r[k] for r in runs])), 3),
                             round(float(np.std([r[k] for r in runs])), 3)] for k in keys}}))


if __name__ == "__main__":
    main()
