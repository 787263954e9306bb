"""Search one new controller for a domain added to a trained merged model (the add-domain search).

The space is the model's search space. At each layer a sampled choice is either a node the model already has, or a
new one:

* an existing node runs the trained module itself (weights frozen, the new domain's own BN row in batch-statistics
  mode), so the reward judges exactly the features the grown model will compute there;
* a new node runs the add-domain supernet (mpnas.nas.supernet.SuperNet, stateless BN), trained during this search on
  the new domain only; warm-up mixtures (supernet.MIX) always run on the supernet.

The head is the model's trained shared head (frozen, new BN row); the classifier is new. The reward of a path is
the TuNAS reward of mpnas.nas.reward (reward-batch quality + the abs cost term of search.cost_metric) plus
share_beta x the parameters of its new nodes / P0: an existing node costs nothing extra, whatever the domain's own
search config says about cost_scope. Schedules (RL delay, RL lr growth, op warm-up, lr warm-up + cosine) and
REINFORCE with an EMA (or leave-one-out) baseline are the main search's (mpnas.nas.controller, mpnas.nas.reward).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mpnas.config import MpnasConfig, resolve_device
from mpnas.data.loading import MultiDomainLoader
from mpnas.data.prepared import PreparedDataset
from mpnas.extend.phase import Phase
from mpnas.loop import (build_optimizer, decay_groups, rng_states, seed_everything, set_lr, set_rng_states,
                        warmup_cosine, warmup_steps)
from mpnas.models import blocks
from mpnas.models.blocks import init_classifier
from mpnas.models.multipath import MultiPathNet, node_id
from mpnas.nas.controller import Controller, op_warmup_prob, rl_lr_at, rl_optimizer
from mpnas.nas.reward import CostModel, EmaBaseline, path_quality, path_reward
from mpnas.nas.search import val_batch_size
from mpnas.nas.supernet import MIX, SuperNet
from mpnas.space import Genotype


class AddDomainSearch(Phase):
    """State of one add-domain search: supernet, classifier, controller, optimisers, loaders, history.

    `host` is the parent model grown by the new domain with a path of old nodes only (so every old node exists
    with a BN row for the new domain); it is frozen and only read."""

    name = noun = "search"

    def __init__(self, cfg: MpnasConfig, ds: PreparedDataset, domain: str, host: MultiPathNet):
        s = self.s = cfg.search
        self.cfg, self.ds, self.domain, self.host = cfg, ds, domain, host
        self.space = host.space
        self.device = resolve_device(s.device)
        self._start(s.steps, s.log_every, s.checkpoint_every)
        self.K = s.paths_per_domain
        seed_everything(cfg.seed)
        self.index = host.index[domain]
        self.existing = {(li, str(c)) for k, (li, c) in host.node_specs.items()}
        self.supernet = SuperNet(self.space)
        self.classifier = nn.Linear(host.space.head_widths[-1], host.num_classes[domain])
        init_classifier(self.classifier)
        self.controller = Controller(self.space)
        self.host.to(self.device).train()
        for p in self.host.parameters():
            p.requires_grad_(False)
        self.supernet.to(self.device), self.classifier.to(self.device)
        trained = nn.ModuleDict({"net": self.supernet, "classifiers": nn.ModuleDict({"new": self.classifier})})
        self.optimizer = build_optimizer(decay_groups(trained.named_parameters(), s.weight_decay), s)
        self.warmup = warmup_steps(s.lr_warmup_fraction, self.total)
        self.rl_optimizer = rl_optimizer(list(self.controller.parameters()))
        self.baseline = EmaBaseline(s.baseline_momentum)
        self.costs = CostModel(self.space, s)
        self.train_loader = MultiDomainLoader(ds, [domain], "train", s.batch_size, cfg.data, seed=cfg.seed,
                                              device=self.device, augment=True)
        self.val_loader = MultiDomainLoader(ds, [domain], "searchval", val_batch_size(cfg), cfg.data,
                                            seed=cfg.seed + 1, device=self.device, augment=False)
        self.rng = np.random.default_rng(cfg.seed + 99_991)

    # ---- the mixed forward pass
    def features(self, x: torch.Tensor, ops: list) -> torch.Tensor:
        """Head features of one batch through a path: trained nodes where they exist, supernet layers elsewhere."""
        x = x.contiguous(memory_format=blocks.MEMORY_FORMAT)
        for li, op in enumerate(ops):
            if op != MIX and op.is_zero:
                continue
            key = None if op == MIX else node_id(self.space.layers[li].index, str(op))
            if key is not None and key in self.host.nodes:
                x = self.host.nodes[key](x, self.index)
            else:
                x = self.supernet.layers[li](x, op)
        return self.host.heads[self.host.head_key(self.domain)](x, self.index)

    def logits(self, x: torch.Tensor, ops: list) -> torch.Tensor:
        return self.classifier(self.features(x, ops))

    # ---- rewards
    def reward(self, genotype: Genotype, quality: float) -> tuple[float, float, float, float]:
        """(reward, FLOPs ratio, params ratio, marginal params ratio): old nodes are free, new ones cost."""
        fr, pr = self.costs.ratios(genotype)
        marginal = self.costs.marginal_params_ratio(genotype, self.existing)
        return path_reward(quality, fr, pr, self.s) + self.s.share_beta * marginal, fr, pr, marginal

    # ---- one step
    def run_step(self) -> dict[str, Any]:
        t, s, K = self.step, self.s, self.K
        p_warm = op_warmup_prob(t, self.total, s)
        lr, rl_lr = warmup_cosine(t, self.total, self.warmup, s.lr), rl_lr_at(t, self.total, s)
        samples = self.controller.sample(self.rng, K)
        genos = [self.controller.genotype(row) for row in samples]
        warm = self.rng.random((K, len(self.space.layers))) < p_warm
        ops = [[MIX if w else c for w, c in zip(warm[k], genos[k].choices)] for k in range(K)]

        x, y = self.train_loader.next_batch()[self.domain]
        losses, accs = [], []
        for xk, yk, path in zip(x.chunk(K), y.chunk(K), ops):
            lg = self.logits(xk, path)
            losses.append(F.cross_entropy(lg, yk, label_smoothing=s.label_smoothing))
            accs.append((lg.argmax(1) == yk).float().mean())
        loss_f = self.descend(torch.stack(losses).mean(), lr)

        vx, vy = self.val_loader.next_batch()[self.domain]
        with torch.no_grad():
            pairs = ([(vx, vy)] * K if s.paired_rewards else list(zip(vx.chunk(K), vy.chunk(K))))
            quality = [float(path_quality(self.logits(xv, path), yv, s.reward_metric))
                       for (xv, yv), path in zip(pairs, ops)]
        rewards = [self.reward(g, q) for g, q in zip(genos, quality)]
        r = np.array([rw[0] for rw in rewards])
        baseline = self.baseline.update(float(r.mean()))
        if rl_lr > 0:
            if s.baseline == "leave_one_out":
                adv = r - (r.sum() - r) / (K - 1)
            else:
                adv = r - baseline
            rl_loss = -(torch.as_tensor(adv, dtype=torch.float32) * self.controller.log_prob(samples)).mean()
            set_lr(self.rl_optimizer, rl_lr)
            self.rl_optimizer.zero_grad(set_to_none=True)
            rl_loss.backward()
            self.rl_optimizer.step()
        return {"step": t + 1, "domain": self.domain, "reward": float(r.mean()), "accuracy": float(np.mean(quality)),
                "cost_ratio": float(np.mean([rw[1] for rw in rewards])),
                "params_ratio": float(np.mean([rw[2] for rw in rewards])),
                "marginal_params_ratio": float(np.mean([rw[3] for rw in rewards])), "baseline": baseline,
                "entropy": self.controller.entropy_value(), "loss": loss_f,
                "train_accuracy": float(torch.stack(accs).mean()), "lr": lr, "rl_lr": rl_lr, "warmup_p": p_warm,
                "argmax": str(self.controller.argmax_genotype())}

    def genotype(self) -> Genotype:
        return self.controller.argmax_genotype()

    def progress(self, row: dict[str, Any]) -> str:
        return (f"reward {row['reward']:.3f} | acc {row['accuracy']:.3f} | entropy {row['entropy']:.1f} | "
                f"new params/P0 {row['marginal_params_ratio']:.2f} | loss {row['loss']:.3f}")

    # ---- state (weights-only checkpoint contents; Phase adds step, elapsed and history)
    def _state(self) -> dict[str, Any]:
        return {"supernet": self.supernet.state_dict(), "classifier": self.classifier.state_dict(),
                "controller": self.controller.state_dict(), "baseline": self.baseline.state_dict(),
                "optimizer": self.optimizer.state_dict(), "rl_optimizer": self.rl_optimizer.state_dict(),
                "rng": rng_states(), "sample_rng": self.rng.bit_generator.state,
                "loaders": {"train": self.train_loader.state_dict(), "val": self.val_loader.state_dict()}}

    def _load(self, st: dict[str, Any]) -> None:
        self.supernet.load_state_dict(st["supernet"])
        self.classifier.load_state_dict(st["classifier"])
        self.controller.load_state_dict(st["controller"])
        self.baseline.load_state_dict(st["baseline"])
        self.optimizer.load_state_dict(st["optimizer"])
        self.rl_optimizer.load_state_dict(st["rl_optimizer"])
        set_rng_states(st["rng"])
        self.rng.bit_generator.state = st["sample_rng"]
        self.train_loader.load_state_dict(st["loaders"]["train"])
        self.val_loader.load_state_dict(st["loaders"]["val"])
