"""`add_domain`: check the inputs, search the new domain's path, grow the model, train what is new, write M2.

Writes into `out_dir`: model.safetensors + architecture.json (a normal model directory: evaluate, export and predict
take it as they take any), add_domain.json (what was added, the parent's lineage, the checks), search_history.parquet,
train_history.parquet, and the checkpoints search_checkpoint.pt / checkpoint.pt that `resume=True` continues from.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import pandas as pd
import torch

from mpnas.config import MpnasConfig, flatten, resolve_device
from mpnas.data.loading import iterate_split
from mpnas.data.prepared import PreparedDataset
from mpnas.evaluation.added import added_records
from mpnas.evaluation.metrics import split_accuracy
from mpnas.extend.grow import grow_model, new_node_ids, old_tensors_changed, trainable_parameters
from mpnas.extend.phase import Phase
from mpnas.extend.search import AddDomainSearch
from mpnas.extend.train import NewDomainTrainer
from mpnas.models.multipath import ARCH_FILE, WEIGHTS_FILE, MultiPathNet, load_model, read_architecture, save_model
from mpnas.nas.checkpoint import check_data_hash, load_state, save_state
from mpnas.nas.search import check_search_config
from mpnas.space import Genotype
from mpnas.utils.io import atomic_write_bytes, atomic_write_json, sha256_file

SUMMARY = "add_domain.json"
SEARCH_CHECKPOINT = "search_checkpoint.pt"
TRAIN_CHECKPOINT = "checkpoint.pt"
REQUIRED_SPLITS = ("train", "searchval", "val", "test")
Log = Callable[[str], None]
OnLog = Callable[[str, int, dict[str, float]], None]  # (phase "search"/"train", step, metrics)


@dataclass
class AddDomainResult:
    model_dir: Path
    model: MultiPathNet
    summary: dict[str, Any]


# --------------------------------------------------------------------------------------------------------- inputs
def check_inputs(cfg: MpnasConfig, model_dir: str | Path, data_dir: str | Path, domain: str
                 ) -> tuple[MultiPathNet, PreparedDataset]:
    """Refuse, before any work, every input add-domain cannot use; each message names the file or field."""
    model_dir = Path(model_dir)
    if not (model_dir / ARCH_FILE).is_file():
        raise ValueError(f"--model {model_dir}: no {ARCH_FILE}; is it a model directory from `mpnas train`?")
    arch = read_architecture(model_dir)
    if not isinstance(arch.get("space"), dict) or "input_size" not in arch:
        raise ValueError(f"{model_dir / ARCH_FILE}: no search space description (fields `space` and `input_size`); "
                         f"add-domain searches in the model's own space, so it needs a model written by `mpnas train`")
    if not arch.get("share_nodes", True):
        raise ValueError(f"{model_dir / ARCH_FILE}: share_nodes is false (an independent bundle); a new domain can "
                         f"only reuse nodes of a merged multi-path model")
    if arch.get("bn_mode") == "shared":
        raise ValueError(f"{model_dir / ARCH_FILE}: bn_mode 'shared' keeps one set of BN statistics for all domains, "
                         f"so training a new domain through a reused node would change the others; add-domain needs "
                         f"bn_mode per_domain or per_domain_affine")
    if domain in arch.get("genotypes", {}):
        raise ValueError(f"--domain {domain!r}: the model {model_dir} already has this domain (it has "
                         f"{', '.join(arch['genotypes'])}); pick a new domain, or retrain to change an existing one")
    if not domain or "." in domain:
        raise ValueError(f"--domain {domain!r}: must be non-empty and contain no '.'")
    ds = PreparedDataset(data_dir)
    ds.require_domains([domain], f"--domain {domain!r}")
    for split in REQUIRED_SPLITS:
        if ds.split_size(domain, split) == 0:
            raise ValueError(f"{ds.root}: domain {domain!r} has an empty {split!r} split; add-domain needs "
                             f"non-empty {', '.join(REQUIRED_SPLITS)} splits (re-run `mpnas data prepare`)")
    for split in ("train", "searchval", "val"):
        if not ds.has_labels(domain, split):
            raise ValueError(f"{ds.root}: domain {domain!r} split {split!r} has no labels")
    if ds.num_classes(domain) < 2:
        raise ValueError(f"{ds.root}: domain {domain!r} has {ds.num_classes(domain)} class; a classifier needs at "
                         f"least 2")
    size = (arch.get("data") or {}).get("size")
    if size is not None and int(size) != ds.size:
        raise ValueError(f"{ds.root}: prepared at {ds.size} px, but the model {model_dir} was trained on data "
                         f"prepared at {size} px; prepare the new domain with `mpnas data prepare --size {size}`")
    if cfg.data.crop != int(arch["input_size"]):
        raise ValueError(f"data.crop={cfg.data.crop} differs from the model's input size {arch['input_size']} "
                         f"({model_dir / ARCH_FILE}); pass --set data.crop={arch['input_size']} or the model's config")
    check_search_config(cfg)
    parent = load_model(model_dir)
    return parent, ds


def _fingerprint(cfg: MpnasConfig, domain: str, parent_sha: str) -> dict[str, Any]:
    flat = flatten(cfg.model_dump(mode="json"))
    skip = ("search.log_every", "search.checkpoint_every", "search.device", "train.log_every",
            "train.checkpoint_every", "train.device")
    keep = {k: v for k, v in flat.items() if k.split(".")[0] in ("seed", "data", "search", "train") and k not in skip}
    return {**keep, "domain": domain, "parent_sha256": parent_sha}


def _load_resumable(path: Path, fingerprint: dict, data_hash: str, data_dir: str | Path) -> Optional[dict]:
    if not path.is_file():
        return None
    st = load_state(path, "add-domain checkpoint")
    check_data_hash(st, data_hash, path, data_dir)
    if st.get("fingerprint") != fingerprint:
        old = st.get("fingerprint") or {}
        diff = sorted(k for k in set(old) | set(fingerprint) if old.get(k) != fingerprint.get(k))
        raise ValueError(f"{path}: written for other inputs or settings ({', '.join(diff)}); resume with the same "
                         f"model, data, domain and config, or use another --out")
    return st


def run_phase(phase: Phase, checkpoint: Path, stamp: dict[str, Any], resume: bool, data_dir: str | Path, say: Log,
              on_log: Optional[OnLog]) -> None:
    """Run the search or the training to its end, checkpointing under its name with `stamp` (fingerprint and data
    hash). With `resume`, continue from the checkpoint if there is one, once checked to be for the same inputs."""
    st = _load_resumable(checkpoint, stamp["fingerprint"], stamp["data_hash"], data_dir) if resume else None
    if st is not None:
        phase.load_state_dict(st[phase.name])
        say(f"resuming the add-domain {phase.noun} at step {phase.step}/{phase.total}")
    phase.run(lambda s: save_state(checkpoint, {**stamp, phase.name: s}), say,
              (lambda step, m: on_log(phase.name, step, m)) if on_log else None)


# --------------------------------------------------------------------------------------------------------- checks
@torch.no_grad()
def old_domains_identical(parent: MultiPathNet, grown: MultiPathNet, ds: PreparedDataset, limit: Optional[int] = 512
                          ) -> dict[str, bool]:
    """Per old domain the data holds: are the grown model's logits on its test images (the first `limit`, all with
    None) bit-for-bit the parent's?"""
    parent.eval(), grown.eval()
    out = {}
    crop = int(parent.space.input_size)
    for d in parent.domains:
        if d not in ds.domains_info or ds.split_size(d, "test") == 0:
            continue
        out[d] = all(torch.equal(parent(x, d), grown(x, d))
                     for x, _ in iterate_split(ds, d, "test", 256, crop, limit=limit))
    return out


def _domain_meta(parent: MultiPathNet, ds: PreparedDataset, domain: str) -> dict[str, dict]:
    meta = {d: {k: v for k, v in (parent.meta.get("domains", {}).get(d) or {}).items() if k != "num_classes"}
            for d in parent.domains}
    info = ds.info(domain)
    meta[domain] = {"classes": list(info.classes), "mean": list(info.mean), "std": list(info.std)}
    return meta


# --------------------------------------------------------------------------------------------------------- main
def add_domain(cfg: MpnasConfig, model_dir: str | Path, data_dir: str | Path, domain: str, out_dir: str | Path,
               resume: bool = False, log: Optional[Log] = None, on_log: Optional[OnLog] = None) -> AddDomainResult:
    """Search `domain`'s path over the trained model `model_dir`, grow it, train only what is new; write `out_dir`."""
    say = log or (lambda msg: None)
    model_dir, out_dir = Path(model_dir), Path(out_dir)
    parent, ds = check_inputs(cfg, model_dir, data_dir, domain)
    parent_sha = sha256_file(model_dir / WEIGHTS_FILE)
    fingerprint = _fingerprint(cfg, domain, parent_sha)
    device = resolve_device(cfg.search.device)
    out_dir.mkdir(parents=True, exist_ok=True)

    # 1. search, over the parent grown by a path of old nodes only (every old node gets the new domain's BN row)
    host = grow_model(parent, domain, parent.genotypes[parent.domains[0]], ds.num_classes(domain))
    search = AddDomainSearch(cfg, ds, domain, host)
    search_ckpt, train_ckpt = out_dir / SEARCH_CHECKPOINT, out_dir / TRAIN_CHECKPOINT
    stamp = {"fingerprint": fingerprint, "data_hash": ds.content_hash}
    run_phase(search, search_ckpt, stamp, resume, data_dir, say, on_log)
    genotype = search.genotype()
    say(f"{domain}: {genotype}")

    # 2. grow the parent by the searched path (new nodes from the supernet's weights) and train only what is new
    grown = grow_model(parent, domain, genotype, ds.num_classes(domain), search.supernet)
    with torch.no_grad():
        grown.classifiers[domain][1].load_state_dict(search.classifier.state_dict())
    trainable = trainable_parameters(parent, grown, domain)
    trainer = NewDomainTrainer(cfg, ds, grown, domain, trainable, resolve_device(cfg.train.device))
    run_phase(trainer, train_ckpt, stamp, resume, data_dir, say, on_log)

    # 3. check that nothing old moved, measure, write
    grown = grown.cpu().eval()
    parent = parent.cpu().eval()
    changed = old_tensors_changed(parent, grown)
    if changed:
        raise RuntimeError(f"add-domain changed {len(changed)} tensor(s) of the parent model ({changed[:3]}); "
                           f"this is a bug, please report it (nothing was written to {out_dir / WEIGHTS_FILE})")
    identical = old_domains_identical(parent, grown, ds)
    summary = _summary(parent, grown, domain, genotype, ds, model_dir, parent_sha, data_dir, search, trainer,
                       identical, cfg)
    save_model(grown, out_dir, _architecture_extra(parent, ds, domain, data_dir, cfg, summary, model_dir))
    atomic_write_bytes(out_dir / "search_history.parquet", pd.DataFrame(search.history).to_parquet(index=False))
    atomic_write_bytes(out_dir / "train_history.parquet", pd.DataFrame(trainer.history).to_parquet(index=False))
    atomic_write_json(out_dir / SUMMARY, summary)
    grown.meta = read_architecture(out_dir)
    return AddDomainResult(out_dir, grown, summary)


def _summary(parent: MultiPathNet, grown: MultiPathNet, domain: str, genotype: Genotype, ds: PreparedDataset,
             model_dir: Path, parent_sha: str, data_dir: str | Path, search: AddDomainSearch,
             trainer: NewDomainTrainer, identical: dict[str, bool], cfg: MpnasConfig) -> dict[str, Any]:
    new = new_node_ids(parent, grown)
    reused = [k for k in grown.paths[domain] if k is not None and k not in new]
    crop = int(grown.space.input_size)
    t0 = time.perf_counter()
    acc = {s: split_accuracy(grown, ds, domain, s, crop) for s in ("val", "test")}
    return {"domain": domain, "genotype": genotype.to_strings(), "new_nodes": new, "reused_nodes": reused,
            "parent_parameters": parent.num_parameters(), "parameters": grown.num_parameters(),
            "added_parameters": grown.num_parameters() - parent.num_parameters(),
            "added_fraction": (grown.num_parameters() - parent.num_parameters()) / parent.num_parameters(),
            "accuracy": acc, "old_domains_identical": identical,
            "search": {"steps": search.step, "wall_time_s": search.elapsed},
            "train": {"steps": trainer.step, "wall_time_s": trainer.elapsed},
            "eval_time_s": time.perf_counter() - t0,
            "parent": {"model_dir": str(model_dir), "weights_sha256": parent_sha, "domains": list(parent.domains),
                       "data": dict(parent.meta.get("data") or {})},
            "data": {"prepared_dir": str(data_dir), "content_hash": ds.content_hash},
            "seed": cfg.seed}


def _architecture_extra(parent: MultiPathNet, ds: PreparedDataset, domain: str, data_dir: str | Path,
                        cfg: MpnasConfig, summary: dict[str, Any], model_dir: Path) -> dict[str, Any]:
    """architecture.json's extra fields: the new data, the parent, and the record of what was added, appended to the
    parent's own records (`added_domains`, oldest first) so a chain of additions keeps every domain's new nodes for
    the evaluation report and figures to mark; `added_domain` is the latest record alone."""
    record = {**{k: summary[k] for k in ("domain", "new_nodes", "added_parameters", "parent_parameters")},
              "parent_weights_sha256": summary["parent"]["weights_sha256"], "parent_model_dir": str(model_dir)}
    return {"domains": _domain_meta(parent, ds, domain),
            "data": {"prepared_dir": str(data_dir), "content_hash": ds.content_hash, "size": ds.size,
                     "crop": cfg.data.crop},
            "parent": summary["parent"], "added_domain": record,
            "added_domains": added_records(parent.meta, str(model_dir / ARCH_FILE)) + [record]}
