"""The multi-path search engine: one loop for the modes multi_path, multi_head, independent (and `fixed`).

Mode      supernets          controllers                 reward of a controller's path k
multi_path  1 shared         one per domain              its domain's R_dk
multi_head  1 shared         one shared by all domains   mean over domains of R_dk (one backbone path per k)
independent one per domain   one per domain              its domain's R_dk (no weight sharing at all)
fixed       -                -                           no search: search.fixed_genotype for every domain

One step (t = 0..steps-1), as TuNAS extended per domain (docs/method.md section 4.2):
1. every controller samples K = paths_per_domain paths; with probability op_warmup_prob(t) each layer of a path runs
   the warm-up mixture instead (supernet.MIX);
2. every domain's training batch (batch_size images, always drawn from every domain) is split into K equal slices,
   slice k runs through path k and the domain's classifier; the per-domain losses (mean over k) are combined by the
   loss weighting into one loss and the weights take one optimiser step (learning rate and weight decay as in
   training: mpnas.loop.warmup_cosine, and mpnas.loop.decay_groups, which spares norms, biases and classifiers);
3. a searchval batch (no augmentation) runs through the same paths with the updated weights (stateless BN) and gives
   each (domain, k) its top-1 accuracy and reward (mpnas.nas.reward);
4. each controller's baseline folds in the mean reward of its K paths, and REINFORCE with the hierarchical log-prob
   updates its logits (skipped while the RL learning rate is 0, so warm-up samples never move the policy).

The final genotype of a domain is the argmax of its controller. Checkpoints (atomic) are written every
checkpoint_every steps, at the end, on Ctrl-C (after finishing the current step) and on an exception raised before the
step touched the weights; `resume=True` continues bit-for-bit.
"""

from __future__ import annotations

import math
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from mpnas.config import MpnasConfig, flatten, resolve_device
from mpnas.data.device import make_loader
from mpnas.data.prepared import PreparedDataset
from mpnas.loop import (OnLog, build_optimizer, decay_groups, format_duration, rng_states, seed_everything, set_lr,
                        set_rng_states, warmup_cosine, warmup_steps)
from mpnas.models.blocks import init_classifier
from mpnas.nas.checkpoint import load_checkpoint, save_checkpoint
from mpnas.nas.controller import (Controller, SharedPrior, op_warmup_prob, rl_lr_at, rl_optimizer, tying_penalty,
                                  tying_strength_at)
from mpnas.nas.reward import CostModel, EmaBaseline, NullQuality, path_quality, path_reward
from mpnas.nas.signal import node_counts, signal_stats
from mpnas.nas.supernet import MIX, SuperNet
from mpnas.space import Genotype, SearchSpace, genotypes_from_json, genotypes_to_json
from mpnas.utils.io import atomic_write_bytes, atomic_write_json, atomic_write_text
from mpnas.weighting import build_weighting

# Config fields that may change between a run and its resume (they do not change the result).
# search.bucket_shapes only adds zero segments that are sliced off (tests/nas/test_bucketing.py).
RESUMABLE_CHANGES = ("search.log_every", "search.checkpoint_every", "search.device", "search.bucket_shapes")


@dataclass
class SearchResult:
    genotypes: dict[str, Genotype]
    history: pd.DataFrame
    summary: dict[str, Any]


# ------------------------------------------------------------------------------------------------- validation
def build_space(cfg: MpnasConfig) -> SearchSpace:
    """The search space at the network input size (space.input_size, default data.crop)."""
    return SearchSpace.from_config(cfg.space, cfg.space.input_size or cfg.data.crop)


def check_search_config(cfg: MpnasConfig) -> None:
    """Refuse configs the engine cannot run, naming the field."""
    s = cfg.search
    k = s.paths_per_domain
    if s.batch_size % k or s.batch_size // k < 2:
        raise ValueError(f"search.paths_per_domain={k}: must split search.batch_size={s.batch_size} into equal "
                         f"slices of at least 2 images (batch-norm needs 2 samples per path)")


def val_batch_size(cfg: MpnasConfig) -> int:
    """Reward batch per domain: val_batch_multiplier x batch_size, rounded to a multiple of K (>= 2 per path)."""
    k = cfg.search.paths_per_domain
    per_path = max(2, round(cfg.search.val_batch_multiplier * cfg.search.batch_size / k))
    return per_path * k


def fixed_genotypes(cfg: MpnasConfig, space: SearchSpace, domains: list[str]) -> dict[str, Genotype]:
    """search.fixed_genotype: a name (mobilenet_v3_like) or a genotypes JSON (one genotype, or one per domain)."""
    name = cfg.search.fixed_genotype
    path = Path(name)
    if path.suffix == ".json" or path.is_file():
        if not path.is_file():
            raise FileNotFoundError(f"search.fixed_genotype: {path} does not exist")
        table = genotypes_from_json(path.read_text(), str(path))
        if all(d in table for d in domains):
            out = {d: table[d] for d in domains}
        elif len(table) == 1:
            out = {d: next(iter(table.values())) for d in domains}
        else:
            missing = [d for d in domains if d not in table]
            raise ValueError(f"search.fixed_genotype: {path} has genotypes for {sorted(table)} but not for {missing}; "
                             f"give one genotype, or one per domain")
    else:
        try:
            g = space.genotype_by_name(name)
        except ValueError as exc:
            raise ValueError(f"search.fixed_genotype: {exc}") from None
        out = {d: g for d in domains}
    for d, g in out.items():
        try:
            g.validate(space)
        except ValueError as exc:
            raise ValueError(f"search.fixed_genotype ({name}), domain {d!r}: {exc}") from None
    return out


def _fingerprint(cfg: MpnasConfig) -> dict[str, Any]:
    """The config fields that determine a search's result (used to refuse a resume under another config)."""
    flat = flatten(cfg.model_dump(mode="json"))
    return {k: v for k, v in flat.items()
            if k.split(".")[0] in ("seed", "data", "space", "search") and k not in RESUMABLE_CHANGES}


# ------------------------------------------------------------------------------------------------- engine
class SearchEngine:
    """All state of one search (supernets, classifiers, controllers, optimisers, loaders, history)."""

    def __init__(self, cfg: MpnasConfig, ds: PreparedDataset, domains: list[str], space: SearchSpace,
                 device: Optional[torch.device] = None):
        s = self.s = cfg.search
        if s.mode == "fixed":
            raise ValueError("search.mode=fixed runs no search engine")
        self.cfg, self.ds, self.domains, self.space = cfg, ds, list(domains), space
        self.device = device or resolve_device(s.device)
        self.total, self.K = s.steps, s.paths_per_domain
        seed_everything(cfg.seed)
        independent, shared_policy = s.mode == "independent", s.mode == "multi_head"
        self.net_of = {d: (i if independent else 0) for i, d in enumerate(self.domains)}
        self.ctrl_of = {d: (0 if shared_policy else i) for i, d in enumerate(self.domains)}
        self.nets = nn.ModuleList(SuperNet(space) for _ in range(len(self.domains) if independent else 1))
        feat = self.nets[0].head.out_features
        self.classifiers = nn.ModuleList(nn.Linear(feat, ds.num_classes(d)) for d in self.domains)
        for lin in self.classifiers:
            init_classifier(lin)
        # Controllers (a few hundred logits) always live on the CPU: sampling a path must reach the host anyway, and
        # on a GPU this keeps their many tiny ops and reads (entropy, p_max, argmax) off the device's stream.
        self.prior = SharedPrior(space) if s.tying.prior == "shared" else None
        self.controllers = nn.ModuleList(Controller(space, self.prior)
                                         for _ in range(1 if shared_policy else len(self.domains)))
        self.nets.to(self.device), self.classifiers.to(self.device)
        self.baselines = [EmaBaseline(s.baseline_momentum) for _ in self.controllers]
        self.weighting = build_weighting(s.loss_weighting, self.domains, self.total)
        named = nn.ModuleDict({"nets": self.nets, "classifiers": self.classifiers}).named_parameters()
        self.optimizer = build_optimizer(decay_groups(named, s.weight_decay, self.weighting.parameters()), s)
        self.warmup = warmup_steps(s.lr_warmup_fraction, self.total)
        self.rl_optimizer = rl_optimizer(list(self.controllers.parameters())
                                         + (list(self.prior.parameters()) if self.prior is not None else []))
        self.costs = CostModel(space, s)
        # The search draws batch_size images from every domain each step (equal BN segments, every controller
        # rewarded every step), whatever data.sampling says for training.
        data_cfg = cfg.data.model_copy(update={"sampling": cfg.data.sampling.model_copy(update={"strategy": "uniform"})})
        # data.device_resident (mpnas.data.device): on CUDA the arrays are uploaded once and augmented there.
        self.train_loader = make_loader(ds, self.domains, "train", s.batch_size, data_cfg, seed=cfg.seed,
                                        device=self.device, augment=True)
        self.val_loader = make_loader(ds, self.domains, "searchval", val_batch_size(cfg), data_cfg,
                                      seed=cfg.seed + 1, device=self.device, augment=False)
        # Fixed shapes for shape-planning backends (cuDNN): pad grouped calls to bucket sizes (supernet docstring).
        self.bucket = s.grouped and (s.bucket_shapes == "on" or (s.bucket_shapes == "auto"
                                                                 and self.device.type == "cuda"))
        self.rng = np.random.default_rng(cfg.seed + 99_991)
        reward_images = val_batch_size(cfg) if s.paired_rewards else val_batch_size(cfg) // self.K
        self.null = (NullQuality(len(self.domains), s.reward_metric, reward_images, cfg.seed + 7_919,
                                 s.baseline_momentum) if s.null_control else None)
        self.step = 0
        self.elapsed = 0.0
        self.history: list[dict[str, Any]] = []
        self._touched = False

    # ---- rewards (a method so experiments can swap in a toy reward)
    def reward(self, domain: str, genotype: Genotype, accuracy: float,
               others: Optional[set[tuple[int, str]]] = None) -> tuple[float, float, float]:
        """(reward, FLOPs ratio, params ratio) of one path of `domain` with reward-batch quality `accuracy`;
        `others` (cost_scope marginal) are the nodes the other domains' argmax paths already provide."""
        fr, pr = self.costs.ratios(genotype)
        r = path_reward(accuracy, fr, pr, self.s)
        if others is not None:
            r += self.s.share_beta * self.costs.marginal_params_ratio(genotype, others)
        return r, fr, pr

    def _others_nodes(self) -> dict[str, set[tuple[int, str]]]:
        """Per domain: the union of the nodes of every *other* domain's current argmax path."""
        nodes = {d: self.controllers[self.ctrl_of[d]].argmax_genotype().nodes() for d in self.domains}
        return {d: set().union(*(nodes[o] for o in self.domains if o != d)) for d in self.domains}

    def _advantages(self, rewards: np.ndarray, baseline: float) -> np.ndarray:
        """REINFORCE advantages of one controller's K paths: against the EMA baseline, or leave-one-out."""
        if self.s.baseline == "leave_one_out":
            k = len(rewards)
            return rewards - (rewards.sum() - rewards) / (k - 1)
        return rewards - baseline

    # ---- one step
    def _forward(self, batch: dict[str, tuple[torch.Tensor, torch.Tensor]], ops: list[list[list]],
                 paired: bool = False) -> dict[str, list[tuple[torch.Tensor, torch.Tensor]]]:
        """{domain: [(logits, labels) per path k]}; units of one supernet run together (grouped or not).

        Each path gets a 1/K slice of its domain's batch, or with `paired` the whole batch (the same images for every
        path, so differences between paths are not differences between image draws)."""
        per_net: dict[int, list[tuple[str, int, torch.Tensor, list]]] = {}
        labels: dict[str, tuple[torch.Tensor, ...]] = {}
        for d in self.domains:
            x, y = batch[d]
            labels[d] = (y,) * self.K if paired else y.chunk(self.K)
            for k, xk in enumerate((x,) * self.K if paired else x.chunk(self.K)):
                per_net.setdefault(self.net_of[d], []).append((d, k, xk, ops[self.ctrl_of[d]][k]))
        out: dict[str, list] = {d: [None] * self.K for d in self.domains}
        for n, units in per_net.items():
            feats = self.nets[n].forward_units([u[2] for u in units], [u[3] for u in units], self.s.grouped,
                                               self.bucket)
            for (d, k, _, _), f in zip(units, feats):
                out[d][k] = (self.classifiers[self.domains.index(d)](f), labels[d][k])
        return out

    def run_step(self) -> list[dict[str, Any]]:
        """One search step (the four parts of the module docstring); returns its history rows (one per domain)."""
        t, s = self.step, self.s
        p_warm = op_warmup_prob(t, self.total, s)
        lr, rl_lr = warmup_cosine(t, self.total, self.warmup, s.lr), rl_lr_at(t, self.total, s)
        samples, genos, ops = self._sample_paths(p_warm)
        weights_now, loss_f, train_acc = self._weight_step(ops, lr)
        rewards = self._rewards(ops, genos)
        ctrl_rewards, baselines = self._controller_rewards(rewards)
        if rl_lr > 0:
            self._controller_step(samples, ctrl_rewards, baselines, rl_lr)

        entropies = [c.entropy_value() for c in self.controllers]
        p_max = [c.max_probs() for c in self.controllers]
        argmax = [str(c.argmax_genotype()) for c in self.controllers]
        rows = []
        for d in self.domains:
            c, r = self.ctrl_of[d], np.array(rewards[d])
            row = {"step": t + 1, "domain": d, "reward": float(r[:, 1].mean()), "accuracy": float(r[:, 0].mean()),
                   "cost_ratio": float(r[:, 2].mean()), "params_ratio": float(r[:, 3].mean()),
                   "baseline": baselines[c], "entropy": entropies[c], "loss": loss_f[d],
                   "train_accuracy": train_acc[d], "loss_weight": float(weights_now[d]), "lr": lr, "rl_lr": rl_lr,
                   "warmup_p": p_warm, "argmax": argmax[c]}
            row.update({f"p_max.{k}": v for k, v in p_max[c].items()})
            rows.append(row)
        return rows

    def _sample_paths(self, p_warm: float) -> tuple[list[np.ndarray], list[list[Genotype]], list[list[list]]]:
        """Per controller: K sampled paths, their genotypes, and their ops (a layer warms up with prob. p_warm)."""
        K, n_layers = self.K, len(self.space.layers)
        samples = [c.sample(self.rng, K) for c in self.controllers]
        genos = [[c.genotype(row) for row in smp] for c, smp in zip(self.controllers, samples)]
        warm = [self.rng.random((K, n_layers)) < p_warm for _ in self.controllers]
        ops = [[[MIX if w else ch for w, ch in zip(warm[c][k], genos[c][k].choices)] for k in range(K)]
               for c in range(len(self.controllers))]
        return samples, genos, ops

    def _weight_step(self, ops: list[list[list]], lr: float
                     ) -> tuple[dict[str, float], dict[str, float], dict[str, float]]:
        """One optimiser step of the supernet weights; (loss weights, losses, train accuracies) per domain."""
        t, s = self.step, self.s
        out = self._forward(self.train_loader.next_batch(), ops)
        losses = {d: torch.stack([F.cross_entropy(lg, y, label_smoothing=s.label_smoothing) for lg, y in out[d]])
                  .mean() for d in self.domains}
        accs = [torch.stack([(lg.argmax(1) == y).float().mean() for lg, y in out[d]]).mean() for d in self.domains]
        weights_now = self.weighting.weights(t)
        total = self.weighting.combine(losses, t)
        if s.mode == "independent":  # separate networks: each should see its own (unscaled) loss gradient
            total = total * len(self.domains)
        # One host transfer for every scalar of the weight step (the finiteness check needs the host anyway).
        scalars = torch.stack([total.detach(), *(v.detach() for v in losses.values()), *accs]).tolist()
        n_dom = len(self.domains)
        loss_f = dict(zip(self.domains, scalars[1:1 + n_dom]))
        train_acc = dict(zip(self.domains, scalars[1 + n_dom:]))
        if not math.isfinite(scalars[0]):
            raise FloatingPointError(f"search step {t + 1}: non-finite training loss {scalars[0]} "
                                     f"(try a lower search.lr)")
        set_lr(self.optimizer, lr)
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        self._touched = True
        self.optimizer.step()
        self.weighting.update(t, loss_f, train_acc)
        return weights_now, loss_f, train_acc

    def _rewards(self, ops: list[list[list]], genos: list[list[Genotype]]
                 ) -> dict[str, list[tuple[float, float, float, float]]]:
        """Per domain and path k: (quality, reward, FLOPs ratio, params ratio) with the updated weights."""
        s, K = self.s, self.K
        with torch.inference_mode():  # rewards need no autograd bookkeeping
            vout = self._forward(self.val_loader.next_batch(), ops, paired=s.paired_rewards)
            quality = torch.stack([path_quality(lg, y, s.reward_metric) for d in self.domains for lg, y in vout[d]])
        quality_np = quality.view(len(self.domains), K).cpu().numpy().astype(np.float64)  # one host transfer
        others = self._others_nodes() if s.cost_scope == "marginal" else None
        rewards: dict[str, list[tuple[float, float, float, float]]] = {}
        for i, d in enumerate(self.domains):
            c = self.ctrl_of[d]
            q = quality_np[i] if self.null is None else self.null.draw(i, quality_np[i])
            extra = {} if others is None else {"others": others[d]}
            rewards[d] = [(float(q[k]), *self.reward(d, genos[c][k], float(q[k]), **extra)) for k in range(K)]
        return rewards

    def _controller_rewards(self, rewards: dict[str, list[tuple[float, ...]]]
                            ) -> tuple[list[np.ndarray], list[float]]:
        """Per controller: the mean reward of each of its K paths over its domains, and its updated baseline."""
        ctrl_rewards = [np.zeros(self.K) for _ in self.controllers]
        ctrl_count = [0] * len(self.controllers)
        for d in self.domains:
            c = self.ctrl_of[d]
            ctrl_rewards[c] += np.array([r[1] for r in rewards[d]])
            ctrl_count[c] += 1
        ctrl_rewards = [r / n for r, n in zip(ctrl_rewards, ctrl_count)]
        baselines = [b.update(float(r.mean())) for b, r in zip(self.baselines, ctrl_rewards)]
        return ctrl_rewards, baselines

    def _controller_step(self, samples: list[np.ndarray], ctrl_rewards: list[np.ndarray], baselines: list[float],
                         rl_lr: float) -> None:
        """REINFORCE (hierarchical log-prob) on every controller, plus the tying penalty with a shared prior."""
        rl_loss = torch.zeros(())
        for c, ctrl in enumerate(self.controllers):
            adv = torch.as_tensor(self._advantages(ctrl_rewards[c], baselines[c]), dtype=torch.float32)
            rl_loss = rl_loss - (adv * ctrl.log_prob(samples[c])).mean()
        if self.prior is not None:
            rl_loss = rl_loss + tying_penalty(list(self.controllers), tying_strength_at(self.step, self.total, self.s))
        set_lr(self.rl_optimizer, rl_lr)
        self.rl_optimizer.zero_grad(set_to_none=True)
        rl_loss.backward()
        self.rl_optimizer.step()

    # ---- state
    def _cheap_state(self) -> dict[str, Any]:
        return {"rng": rng_states(), "sample_rng": self.rng.bit_generator.state,
                "null_rng": self.null.rng.bit_generator.state if self.null is not None else None,
                "loaders": {"train": self.train_loader.state_dict(), "val": self.val_loader.state_dict()}}

    def _restore_cheap(self, st: dict[str, Any]) -> None:
        set_rng_states(st["rng"])
        self.rng.bit_generator.state = st["sample_rng"]
        if self.null is not None:
            self.null.rng.bit_generator.state = st["null_rng"]
        self.train_loader.load_state_dict(st["loaders"]["train"])
        self.val_loader.load_state_dict(st["loaders"]["val"])

    def state_dict(self) -> dict[str, Any]:
        return {"step": self.step, "mode": self.s.mode, "domains": self.domains, "config": _fingerprint(self.cfg),
                "data_hash": self.ds.content_hash,
                "nets": self.nets.state_dict(), "classifiers": self.classifiers.state_dict(),
                "controllers": self.controllers.state_dict(), "baselines": [b.state_dict() for b in self.baselines],
                "prior": self.prior.state_dict() if self.prior is not None else None,
                "null": self.null.state_dict() if self.null is not None else None,
                "optimizer": self.optimizer.state_dict(), "rl_optimizer": self.rl_optimizer.state_dict(),
                "weighting": self.weighting.state_dict(), "history": list(self.history), "elapsed": self.elapsed,
                **self._cheap_state()}

    def load_state_dict(self, st: dict[str, Any], source: str = "checkpoint") -> None:
        if st.get("mode") != self.s.mode or st.get("domains") != self.domains:
            raise ValueError(f"{source}: written by a {st.get('mode')} search over {st.get('domains')}, cannot resume "
                             f"a {self.s.mode} search over {self.domains}")
        now = _fingerprint(self.cfg)
        # a field added after the checkpoint was written counts as its default there (e.g. data.device_resident)
        then = {**{k: v for k, v in _fingerprint(MpnasConfig()).items() if k not in st["config"]}, **st["config"]}
        diff = sorted(k for k in set(now) | set(then) if now.get(k) != then.get(k))
        if diff:
            raise ValueError(f"{source}: the config changed since the checkpoint was written ({', '.join(diff)}); "
                             f"resume with the same config or start a new search in another --out directory")
        self.nets.load_state_dict(st["nets"])
        self.classifiers.load_state_dict(st["classifiers"])
        self.controllers.load_state_dict(st["controllers"])
        if self.prior is not None:
            self.prior.load_state_dict(st["prior"])
        if self.null is not None:
            self.null.load_state_dict(st["null"])
        for b, bs in zip(self.baselines, st["baselines"]):
            b.load_state_dict(bs)
        self.optimizer.load_state_dict(st["optimizer"])
        self.rl_optimizer.load_state_dict(st["rl_optimizer"])
        self.weighting.load_state_dict(st["weighting"])
        self.history = list(st["history"])
        self.step, self.elapsed = int(st["step"]), float(st["elapsed"])
        self._restore_cheap(st)

    def genotypes(self) -> dict[str, Genotype]:
        return {d: self.controllers[self.ctrl_of[d]].argmax_genotype() for d in self.domains}

    def signal(self) -> dict[str, Any]:
        """p(argmax), entropy and node sharing of the controllers now (mpnas.nas.signal)."""
        return signal_stats({d: self.controllers[self.ctrl_of[d]] for d in self.domains})

    # ---- loop
    def run(self, checkpoint: Path, progress: bool = True, on_log: Optional[OnLog] = None) -> None:
        """Run the remaining steps with periodic checkpoints; Ctrl-C finishes the step, checkpoints and re-raises."""
        interrupted = {"flag": False}
        old_handler = None
        if threading.current_thread() is threading.main_thread():
            def _on_sigint(signum, frame):  # noqa: ARG001
                if interrupted["flag"]:
                    raise KeyboardInterrupt
                interrupted["flag"] = True
                print("\ninterrupt: finishing the current step, then writing a checkpoint (Ctrl-C again to abort)",
                      file=sys.stderr, flush=True)
            old_handler = signal.signal(signal.SIGINT, _on_sigint)
        start_step, start_time, base_elapsed = self.step, time.perf_counter(), self.elapsed
        try:
            while self.step < self.total:
                cheap = self._cheap_state()
                self._touched = False
                try:
                    rows = self.run_step()
                except BaseException:
                    if not self._touched:  # nothing but RNG/loader positions moved: roll back and keep a checkpoint
                        self._restore_cheap(cheap)
                        save_checkpoint(checkpoint, self.state_dict())
                        print(f"search stopped in step {self.step + 1}; checkpoint at step {self.step}: {checkpoint}",
                              file=sys.stderr, flush=True)
                    else:
                        print(f"search failed in step {self.step + 1}; the last periodic checkpoint is kept: "
                              f"{checkpoint}", file=sys.stderr, flush=True)
                    raise
                self.step += 1
                self.history.extend(rows)
                self.elapsed = base_elapsed + time.perf_counter() - start_time
                done = self.step == self.total
                if self.step % self.s.log_every == 0 or done:
                    self._log(rows, start_step, start_time, progress, on_log)
                if self.step % self.s.checkpoint_every == 0 or done or interrupted["flag"]:
                    save_checkpoint(checkpoint, self.state_dict())
                if interrupted["flag"] and not done:
                    print(f"checkpoint at step {self.step}/{self.total}: {checkpoint} (continue with --resume)",
                          file=sys.stderr, flush=True)
                    raise KeyboardInterrupt
        finally:
            if old_handler is not None:
                signal.signal(signal.SIGINT, old_handler)

    def _log(self, rows: list[dict[str, Any]], start_step: int, start_time: float, progress: bool,
             on_log: Optional[OnLog]) -> None:
        rate = (self.step - start_step) / max(1e-9, time.perf_counter() - start_time)
        eta = (self.total - self.step) / rate if rate > 0 else math.inf
        metrics = {key: float(np.mean([r[key] for r in rows]))
                   for key in ("reward", "accuracy", "entropy", "loss", "train_accuracy", "cost_ratio")}
        metrics.update(lr=rows[0]["lr"], rl_lr=rows[0]["rl_lr"], steps_per_s=rate)
        sig = self.signal()
        metrics.update({"p_argmax": sig["p_argmax_mean"], "nodes": float(sig["nodes"]),
                        "shared_nodes": float(sig["shared_nodes"])})
        for d, v in sig["domains"].items():
            metrics[f"p_argmax.{d}"] = v["p_argmax"]
        for r in rows:
            for key in ("reward", "accuracy", "entropy"):
                metrics[f"{key}.{r['domain']}"] = float(r[key])
        if progress:
            print(f"search {self.step}/{self.total} | {rate:.2f} step/s | ETA {format_duration(eta)} | "
                  f"reward {metrics['reward']:.3f} | acc {metrics['accuracy']:.3f} | "
                  f"entropy {metrics['entropy']:.1f} | p_argmax {sig['p_argmax_mean']:.2f} | "
                  f"nodes {sig['nodes']} ({sig['shared_nodes']} shared) | loss {metrics['loss']:.3f} | "
                  f"rl_lr {metrics['rl_lr']:.2g}",
                  flush=True)
        if on_log is not None:
            on_log(self.step, metrics)


# ------------------------------------------------------------------------------------------------- outputs
def _summary(cfg: MpnasConfig, space: SearchSpace, genotypes: dict[str, Genotype], history: pd.DataFrame,
             elapsed: float, data_hash: str, signal: Optional[dict[str, Any]] = None) -> dict[str, Any]:
    """Per-domain final figures; reward/accuracy are means over the last 10% of steps (single steps are noisy)."""
    costs = CostModel(space, cfg.search)
    steps = int(history["step"].max()) if len(history) else 0
    tail = history[history["step"] > steps - max(1, steps // 10)] if len(history) else history
    domains = {}
    for d, g in genotypes.items():
        f, p = costs.cost(g)
        entry: dict[str, Any] = {"genotype": g.to_strings(), "depth": g.depth(), "flops": f, "params": p,
                                 "flops_ratio": f / costs.flops_target, "params_ratio": p / costs.params_target}
        rows = tail[tail["domain"] == d] if len(tail) else tail
        if len(rows):
            entry.update(reward=float(rows["reward"].mean()), accuracy=float(rows["accuracy"].mean()),
                         entropy=float(rows["entropy"].iloc[-1]))
        domains[d] = entry
        if signal is not None:
            entry.update(p_argmax=signal["domains"][d]["p_argmax"], entropy=signal["domains"][d]["entropy"])
    nodes, shared = node_counts(genotypes)
    out = {"mode": cfg.search.mode, "steps": steps, "seed": cfg.seed, "data_hash": data_hash,
           "null_control": cfg.search.null_control, "wall_time_s": elapsed,
           "steps_per_s": steps / elapsed if elapsed > 0 else None,
           "distinct_paths": len({str(g) for g in genotypes.values()}), "nodes": nodes, "shared_nodes": shared,
           "domains": domains}
    if signal is not None:
        out.update(p_argmax_mean=signal["p_argmax_mean"], entropy_mean=signal["entropy_mean"])
    return out


def _write_outputs(out_dir: Path, cfg: MpnasConfig, space: SearchSpace, genotypes: dict[str, Genotype],
                   history: pd.DataFrame, summary: dict[str, Any]) -> None:
    atomic_write_text(out_dir / "genotypes.json",
                      genotypes_to_json(genotypes, space, mode=cfg.search.mode, steps=summary["steps"],
                                        seed=cfg.seed, data_hash=summary["data_hash"]))
    atomic_write_bytes(out_dir / "history.parquet", history.to_parquet(index=False))
    atomic_write_json(out_dir / "summary.json", summary)


def run_search(cfg: MpnasConfig, data_dir: str | Path, out_dir: str | Path, resume: bool = False,
               progress: bool = True, on_log: Optional[OnLog] = None) -> SearchResult:
    """Search one path per domain (or one shared path, per cfg.search.mode) and write the search outputs.

    Writes out_dir/genotypes.json, history.parquet, checkpoint.pt and summary.json. `resume=True` continues from
    out_dir/checkpoint.pt when present (same config required). `on_log(step, metrics)` is called every log_every steps.
    """
    out_dir = Path(out_dir)
    check_search_config(cfg)
    space = build_space(cfg)
    ds = PreparedDataset(data_dir)
    domains = ds.subset(cfg.data.domains)
    checkpoint = out_dir / "checkpoint.pt"
    if cfg.search.mode == "fixed":
        genotypes = fixed_genotypes(cfg, space, domains)
        history = pd.DataFrame({"step": pd.Series(dtype="int64"), "domain": pd.Series(dtype="str")})
        summary = _summary(cfg, space, genotypes, history, 0.0, ds.content_hash)
        out_dir.mkdir(parents=True, exist_ok=True)
        save_checkpoint(checkpoint, {"mode": "fixed", "step": 0, "domains": domains, "config": _fingerprint(cfg),
                                     "data_hash": ds.content_hash})
        _write_outputs(out_dir, cfg, space, genotypes, history, summary)
        if progress:
            print(f"search.mode=fixed: {cfg.search.fixed_genotype} for {len(domains)} domains", flush=True)
        return SearchResult(genotypes, history, summary)

    engine = SearchEngine(cfg, ds, domains, space)

    if resume and checkpoint.is_file():
        engine.load_state_dict(load_checkpoint(checkpoint, ds.content_hash, data_dir), str(checkpoint))
        if progress:
            print(f"resuming {checkpoint} at step {engine.step}/{engine.total}", flush=True)
    elif resume and progress:
        print(f"no checkpoint at {checkpoint}: starting a new search", flush=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    # Every step builds new shapes (each domain samples other ops; grouped batches change size) and cuDNN plans each
    # new shape: measured 0.09 steps/s with cuDNN against 1.64 without on an H200 (issue 12). search.cudnn decides.
    cudnn_before = torch.backends.cudnn.enabled
    torch.backends.cudnn.enabled = cudnn_before and (engine.device.type != "cuda" or cfg.search.cudnn)
    try:
        engine.run(checkpoint, progress, on_log)
    finally:
        torch.backends.cudnn.enabled = cudnn_before
    genotypes = engine.genotypes()
    history = pd.DataFrame(engine.history)
    summary = _summary(cfg, space, genotypes, history, engine.elapsed, ds.content_hash, engine.signal())
    _write_outputs(out_dir, cfg, space, genotypes, history, summary)
    return SearchResult(genotypes, history, summary)
