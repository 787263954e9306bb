"""Final training of the merged multi-path model from scratch (docs/method.md section 7.3).

Every step draws a batch per domain (or follows `data.sampling`), runs them through their own paths in one routed
pass (each shared node once), and combines the per-domain label-smoothed losses with the configured loss weighting
(ABDP by default); the weights are logged every step. Validation top-1 is measured every `eval_every` steps; the best
weights by mean val top-1 are kept (early stopping after `early_stopping_patience` evaluations without improvement).
Because val selects the weights, val accuracy is optimistic; test is the unbiased number.

Checkpoints hold everything that decides the next step (model, optimiser, weighting, loader, RNGs, step,
history, best weights), so a resumed run is step-for-step the run that was interrupted.
"""

from __future__ import annotations

import io
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import pandas as pd
import torch
import torch.nn.functional as F

from mpnas import distributed
from mpnas.config import MpnasConfig, config_to_yaml, resolve_device
from mpnas.data.device import make_loader
from mpnas.data.prepared import PreparedDataset
from mpnas.evaluation.metrics import split_accuracy
from mpnas.loop import (OnLog, build_optimizer, decay_groups, format_duration, rng_states, seed_everything,
                        set_lr, set_rng_states, warmup_cosine, warmup_steps)
from mpnas.models.blocks import init_weights
from mpnas.models.multipath import MultiPathNet, save_model
from mpnas.nas.checkpoint import check_data_hash, load_state, save_state
from mpnas.space import Genotype, SearchSpace
from mpnas.utils.io import atomic_write_bytes, atomic_write_json, atomic_write_text
from mpnas.weighting import build_weighting, unscale_exclusive_gradients

CHECKPOINT = "checkpoint.pt"
HISTORY = "history.parquet"


@dataclass
class TrainResult:
    model_dir: Path
    model: MultiPathNet
    history: pd.DataFrame
    best_step: int
    best_val: dict[str, Optional[float]]
    best_mean_val: Optional[float]
    steps_done: int
    stopped_early: bool
    steps_per_s: float
    summary: dict = field(default_factory=dict)


# ------------------------------------------------------------------------------------------------------ inputs
def resolve_domains(cfg: MpnasConfig, ds: PreparedDataset, genotypes: dict[str, Genotype]) -> list[str]:
    """The training domains (cfg.data.domains or every genotype's domain), each with a genotype and data."""
    wanted = list(cfg.data.domains) if cfg.data.domains else list(genotypes)
    missing_g = [d for d in wanted if d not in genotypes]
    if missing_g:
        raise ValueError(f"data.domains names {missing_g} but the genotypes cover only {sorted(genotypes)}")
    ds.require_domains(wanted, "the genotypes")
    return wanted


def resolve_space(cfg: MpnasConfig) -> SearchSpace:
    """The space at the network input size, which is data.crop."""
    if cfg.space.input_size is not None and cfg.space.input_size != cfg.data.crop:
        raise ValueError(f"space.input_size ({cfg.space.input_size}) differs from data.crop ({cfg.data.crop}): "
                         f"the network sees crops, so leave space.input_size unset or equal to data.crop")
    return SearchSpace.from_config(cfg.space, cfg.data.crop)


def build_model(cfg: MpnasConfig, ds: PreparedDataset, genotypes: dict[str, Genotype], domains: list[str],
                share_nodes: bool = True) -> MultiPathNet:
    space = resolve_space(cfg)
    torch.manual_seed(cfg.seed)
    model = MultiPathNet(space, {d: genotypes[d] for d in domains}, {d: ds.num_classes(d) for d in domains},
                         cfg.train.bn_mode, cfg.train.dropout, share_nodes, cfg.space)
    init_weights(model)
    return model


def model_meta(cfg: MpnasConfig, ds: PreparedDataset, data_dir: Path, domains: list[str]) -> dict:
    return {"domains": {d: {"classes": list(ds.info(d).classes), "mean": list(ds.info(d).mean),
                            "std": list(ds.info(d).std)} for d in domains},
            "data": {"prepared_dir": str(data_dir), "content_hash": ds.content_hash, "size": ds.size,
                     "crop": cfg.data.crop}}


# ------------------------------------------------------------------------------------------------------ trainer
class _Run:
    """The mutable state of one training run (what a checkpoint captures)."""

    def __init__(self, cfg: MpnasConfig, ds: PreparedDataset, model: MultiPathNet, domains: list[str],
                 device: torch.device):
        tc = cfg.train
        self.cfg, self.ds, self.model, self.domains, self.device = cfg, ds, model, domains, device
        # under torchrun each rank draws its own batch_size per domain (global batch = world size x batch_size)
        self.loader = make_loader(ds, domains, "train", tc.batch_size, cfg.data,  # data.device_resident
                                  seed=cfg.seed + distributed.current().rank, device=device)
        self.weighting = build_weighting(tc.loss_weighting, domains, tc.steps, model.num_classes)
        # weights act on shared parameters only (mpnas/weighting.py): each domain's own parameters, to unscale
        self.exclusive = (model.exclusive_parameters()
                          if tc.loss_weighting.apply_to == "shared_parameters" else None)
        self.opt = build_optimizer(decay_groups(model.named_parameters(), tc.weight_decay,
                                                self.weighting.parameters()), tc)
        self.warmup = warmup_steps(tc.warmup_fraction, tc.steps)
        self.step = 0
        self.history: list[dict] = []
        self.best_state: Optional[dict] = None
        self.best_metric = -math.inf
        self.best_step = 0
        self.best_val: dict[str, Optional[float]] = {}
        self.evals_since_best = 0
        self.stopped_early = False

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "opt": self.opt.state_dict(),
                "weighting": self.weighting.state_dict(), "loader": self.loader.state_dict(), "rng": rng_states(),
                "step": self.step, "history": self.history, "best_state": self.best_state,
                "best_metric": self.best_metric, "best_step": self.best_step, "best_val": self.best_val,
                "evals_since_best": self.evals_since_best, "stopped_early": self.stopped_early,
                "genotypes": {d: self.model.genotypes[d].to_strings() for d in self.domains},
                "share_nodes": self.model.share_nodes, "config": self.cfg.model_dump(mode="json"),
                "data_hash": self.ds.content_hash}

    def load_state_dict(self, s: dict, source: Path) -> None:
        check_data_hash(s, self.ds.content_hash, source, self.ds.root)
        mine = {d: self.model.genotypes[d].to_strings() for d in self.domains}
        if s["genotypes"] != mine or s["share_nodes"] != self.model.share_nodes:
            raise ValueError(f"{source}: the checkpoint was trained with other genotypes/domains/sharing; "
                             f"resume with the same inputs or use another --out")
        if s["config"]["train"] != self.cfg.model_dump(mode="json")["train"]:
            raise ValueError(f"{source}: the checkpoint's train settings differ from the current config; "
                             f"resume with the same config or use another --out")
        self.model.load_state_dict(s["model"])
        self.opt.load_state_dict(s["opt"])
        self.weighting.load_state_dict(s["weighting"])
        self.loader.load_state_dict(s["loader"])
        set_rng_states(s["rng"])
        self.step, self.history = int(s["step"]), list(s["history"])
        self.best_state, self.best_metric, self.best_step = s["best_state"], s["best_metric"], s["best_step"]
        self.best_val, self.evals_since_best = s["best_val"], s["evals_since_best"]
        self.stopped_early = s["stopped_early"]

    def save_checkpoint(self, path: Path) -> None:
        if not distributed.is_main():
            return
        save_state(path, self.state_dict())

    def train_step(self) -> dict:
        tc = self.cfg.train
        batch = self.loader.next_batch()
        self.model.train()
        lr = warmup_cosine(self.step, tc.steps, self.warmup, tc.lr)
        set_lr(self.opt, lr)
        logits = self.model.forward_routed({d: x for d, (x, _) in batch.items()})
        losses = {d: F.cross_entropy(logits[d], batch[d][1], label_smoothing=tc.label_smoothing) for d in logits}
        weights = self.weighting.weights(self.step)
        loss = self.weighting.combine(losses, self.step)
        if not torch.isfinite(loss):
            raise RuntimeError(f"training diverged at step {self.step + 1}: loss is {loss.item()} "
                               f"(lower train.lr or check the data)")
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.exclusive is not None:
            unscale_exclusive_gradients(self.exclusive, weights)
        distributed.all_reduce_gradients(self.model)  # no-ops without a process group (torchrun)
        distributed.all_reduce_gradients(self.weighting.parameters())
        self.opt.step()
        loss_f = {d: float(v.detach()) for d, v in losses.items()}
        acc_f = {d: float((logits[d].detach().argmax(1) == batch[d][1]).float().mean()) for d in logits}
        loss_f, acc_f = distributed.average_scalars(loss_f), distributed.average_scalars(acc_f)
        self.weighting.update(self.step, loss_f, acc_f)
        self.step += 1
        row = {"step": self.step, "lr": lr, "loss": float(loss.detach())}
        row.update({f"loss/{d}": v for d, v in loss_f.items()})
        row.update({f"train_acc/{d}": v for d, v in acc_f.items()})
        row.update({f"weight/{d}": float(weights[d]) for d in self.domains})
        return row

    def validate(self, row: dict) -> None:
        """Val top-1 per domain; keep the best weights by the mean; count evaluations without improvement."""
        val = {d: split_accuracy(self.model, self.ds, d, "val", self.cfg.data.crop,
                                 self.cfg.evaluate.batch_size, self.device) for d in self.domains}
        known = [v for v in val.values() if v is not None]
        if not known:
            raise ValueError(f"{self.ds.root}: no domain has a labelled val split; cannot select weights")
        mean = sum(known) / len(known)
        row.update({f"val_top1/{d}": v for d, v in val.items() if v is not None})
        row["val_top1_mean"] = mean
        if mean > self.best_metric:
            self.best_metric, self.best_step, self.best_val = mean, self.step, val
            self.best_state = {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}
            self.evals_since_best = 0
        else:
            self.evals_since_best += 1
            patience = self.cfg.train.early_stopping_patience
            if patience is not None and self.evals_since_best >= patience:
                self.stopped_early = True

    def progress_line(self, row: dict, rate: float) -> str:
        tc = self.cfg.train
        w = {d: row[f"weight/{d}"] for d in self.domains}
        lo, hi = min(w, key=w.get), max(w, key=w.get)
        eta = (tc.steps - self.step) / rate if rate > 0 else float("nan")
        line = (f"[train] step {self.step}/{tc.steps} ({100 * self.step / tc.steps:.0f}%) {rate:.2f} steps/s "
                f"ETA {format_duration(eta)} loss {row['loss']:.4f} lr {row['lr']:.4g} "
                f"w[{w[lo]:.2f} {lo} .. {w[hi]:.2f} {hi}]")
        if "val_top1_mean" in row:
            line += f" val {row['val_top1_mean']:.4f} (best {self.best_metric:.4f} @ {self.best_step})"
        return line


def _finish(run: _Run, ckpt: Path, patience: int, progress: bool) -> None:
    """Final checkpoint, after a last evaluation if none ran (a resumed, already finished run keeps its best)."""
    if run.best_state is None:
        run.validate({})
    run.save_checkpoint(ckpt)
    if run.stopped_early and progress:
        print(f"[train] early stop at step {run.step}: no val improvement in {patience} evaluations; keeping step "
              f"{run.best_step}", flush=True)


def train_model(cfg: MpnasConfig, data_dir: str | Path, genotypes: dict[str, Genotype], out_dir: str | Path,
                resume: bool = False, progress: bool = True, on_log: Optional[OnLog] = None,
                share_nodes: bool = True) -> TrainResult:
    """Train the merged model of `genotypes` from scratch and write the model directory `out_dir`.

    `share_nodes=False` trains the bundle of independent per-domain models (no tensor shared between domains).
    `on_log(step, metrics)` is called with each logged history row (every `log_every` steps and at evaluations)."""
    tc = cfg.train
    distributed.init_from_env()  # joins the torchrun process group (gloo/NCCL); a no-op in a single process
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    ds = PreparedDataset(data_dir)
    domains = resolve_domains(cfg, ds, genotypes)
    device = resolve_device(tc.device)
    model = build_model(cfg, ds, genotypes, domains, share_nodes).to(device)
    distributed.broadcast_parameters(model)
    seed_everything(cfg.seed)
    run = _Run(cfg, ds, model, domains, device)
    ckpt = out_dir / CHECKPOINT
    if resume:
        _resume(run, ckpt, progress)
    if run.step == 0 and tc.warm_start is not None:  # a resumed run has its weights: it needs no search checkpoint
        from mpnas.training.warm_start import load_supernet_state, warm_start

        warm_start(model, load_supernet_state(tc.warm_start, ds.content_hash))
    out_dir.mkdir(parents=True, exist_ok=True)

    t0, start_step = time.perf_counter(), run.step
    while run.step < tc.steps and not run.stopped_early:
        row = run.train_step()
        if run.step % tc.eval_every == 0 or run.step == tc.steps:
            run.validate(row)
        run.history.append(row)
        elapsed = time.perf_counter() - t0
        rate = (run.step - start_step) / elapsed if elapsed > 0 else 0.0
        if run.step % tc.log_every == 0 or "val_top1_mean" in row or run.step == tc.steps:
            if progress:
                print(run.progress_line(row, rate), flush=True)
            if on_log is not None:
                on_log(run.step, {k: v for k, v in row.items() if k != "step"})
        if run.step % tc.checkpoint_every == 0 and run.step < tc.steps:
            run.save_checkpoint(ckpt)
    elapsed = time.perf_counter() - t0
    steps_per_s = (run.step - start_step) / elapsed if elapsed > 0 and run.step > start_step else 0.0
    _finish(run, ckpt, tc.early_stopping_patience, progress)
    model.load_state_dict(run.best_state)
    model.eval()
    history = pd.DataFrame(run.history)
    summary = {"best_step": run.best_step, "best_mean_top1_val": run.best_metric, "best_top1_val": run.best_val,
               "steps_done": run.step, "steps_total": tc.steps, "stopped_early": run.stopped_early,
               "steps_per_s": steps_per_s, "device": str(device), "domains": domains, "share_nodes": share_nodes,
               "params_total": model.num_parameters(), "seed": cfg.seed,
               "train_top1_final": final_train_accuracy(history, domains)}
    if distributed.is_main():  # every rank holds the same weights; one writes
        _write_model_dir(out_dir, cfg, ds, data_dir, model, history, summary)
    if progress:
        print(f"[train] done: {run.step} steps, best mean val top-1 {run.best_metric:.4f} at step {run.best_step}; "
              f"wrote {out_dir}", file=sys.stdout, flush=True)
    return TrainResult(out_dir, model, history, run.best_step, run.best_val, run.best_metric, run.step,
                       run.stopped_early, steps_per_s, summary)


def final_train_accuracy(history: pd.DataFrame, domains: list[str], fraction: float = 0.1) -> dict[str, float]:
    """Per domain: mean training-batch top-1 over the last `fraction` of the steps (at least one row).

    The same quantity ABDP's KPI tracks, so a later run can use this run as its attainable reference
    (train.loss_weighting.abdp.reference_metrics) comparing like with like."""
    out = {}
    for d in domains:
        col = f"train_acc/{d}"
        if col not in history:
            continue
        vals = history[col].dropna()
        if len(vals):
            out[d] = float(vals.tail(max(1, int(round(len(vals) * fraction)))).mean())
    return out


def _resume(run: _Run, ckpt: Path, progress: bool) -> None:
    if ckpt.is_file():
        run.load_state_dict(load_state(ckpt, "training checkpoint", map_location=run.device), ckpt)  # weights_only
        if progress:
            print(f"[train] resumed from {ckpt} at step {run.step}/{run.cfg.train.steps}", flush=True)
    elif progress:
        start = (f"the supernet weights of {run.cfg.train.warm_start}" if run.cfg.train.warm_start is not None
                 else "scratch")
        print(f"[train] no checkpoint in {ckpt.parent}; starting from {start}", flush=True)


def _write_model_dir(out_dir: Path, cfg: MpnasConfig, ds: PreparedDataset, data_dir: Path, model: MultiPathNet,
                     history: pd.DataFrame, summary: dict) -> None:
    save_model(model, out_dir, {**model_meta(cfg, ds, data_dir, summary["domains"]), "train": summary})
    buf = io.BytesIO()
    history.to_parquet(buf, index=False)
    atomic_write_bytes(out_dir / HISTORY, buf.getvalue())
    atomic_write_text(out_dir / "train_config.yaml", config_to_yaml(cfg))
    atomic_write_json(out_dir / "train_metrics.json", summary)
