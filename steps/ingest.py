"""Ingest: prepare the dataset as a DVC stage and record its version; then check the splits and the sampling plan."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import yaml
from zenml import log_metadata, step

from mpnas.config import MpnasConfig
from mpnas.data.loading import domain_probabilities
from mpnas.data.prepared import DatasetError, PreparedDataset
from mpnas.data.version import dvc_lock_entry
from mpnas.utils.io import atomic_write_text
from steps import tracking
from steps._support import TRACKER
from steps.contracts import DataSections, DatasetRef

DVC = str(Path(sys.executable).parent / "dvc")


def _dvc(workspace: Path, *args: str) -> str:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    res = subprocess.run([DVC, *args], cwd=workspace, capture_output=True, text=True, env=env)
    if res.returncode != 0:
        raise RuntimeError(f"`dvc {' '.join(args)}` failed in {workspace}:\n{res.stdout}{res.stderr}")
    return res.stdout


def ensure_dvc_repo(workspace: Path) -> None:
    """`dvc init --no-scm` once, analytics off. Without DVC's git integration the generated dvc.yaml and dvc.lock
    can be git-ignored local state (DVC refuses git-ignored pipeline files otherwise), so a run leaves git clean."""
    if not (workspace / ".dvc").is_dir():
        _dvc(workspace, "init", "-q", "--no-scm")
        _dvc(workspace, "config", "core.analytics", "false")


# The code `mpnas data prepare` runs: a change to any of it re-runs the stage (.dvcignore skips __pycache__).
DATA_CODE = Path(__file__).resolve().parents[1] / "mpnas" / "data"


def _dep_path(path: Path, workspace: Path) -> str:
    """Relative to the workspace when inside it (portable), else absolute (a test workspace outside the repo)."""
    path = path.resolve()
    try:
        return str(path.relative_to(workspace))
    except ValueError:
        return str(path)


def stage_name(cfg: MpnasConfig) -> str:
    return "pipeline_" + re.sub(r"[^A-Za-z0-9_]+", "_", Path(cfg.data.prepared_dir).name)


def dvc_prepare(cfg: MpnasConfig, workspace: Path) -> dict[str, Any]:
    """Declare `mpnas data prepare` as a DVC stage (deps: its params file and the data code; out: the prepared dir)
    and `dvc repro` it.

    DVC skips the stage when neither the params nor the output changed, and dvc.lock records the output's md5: the
    data version downstream artifacts carry."""
    ensure_dvc_repo(workspace)
    out = Path(cfg.data.prepared_dir)
    if out.is_absolute():
        try:
            out = out.relative_to(workspace)
        except ValueError:
            raise ValueError(f"data.prepared_dir {out} must lie inside the DVC workspace {workspace}") from None
    name = stage_name(cfg)
    params_rel = Path("data") / "params" / f"{name}.yaml"
    params = yaml.safe_dump({"seed": cfg.seed, "data": cfg.data.model_dump(mode="json")}, sort_keys=False)
    if not (workspace / params_rel).is_file() or (workspace / params_rel).read_text() != params:
        atomic_write_text(workspace / params_rel, params)
    deps = ["-d", str(params_rel), "-d", _dep_path(DATA_CODE, workspace)]
    if cfg.data.root is not None:
        deps += ["-d", _dep_path(workspace / cfg.data.root, workspace)]
    _dvc(workspace, "stage", "add", "--force", "-n", name, *deps, "-o", str(out),
         f"mpnas data prepare --overwrite -c {params_rel}")
    log = _dvc(workspace, "repro", name)
    print(f"[ingest] dvc stage {name}: {'reproduced' if 'Running stage' in log else 'up to date, reused'}")
    entry = dvc_lock_entry(workspace / out)
    if entry is None:
        raise RuntimeError(f"{workspace / 'dvc.lock'}: no entry for {out} after `dvc repro {name}`")
    return {"dvc_stage": name, "dvc_md5": entry["md5"], "dvc_files": entry["nfiles"],
            "dvc_lock": str(workspace / "dvc.lock")}


@step(enable_cache=False, experiment_tracker=TRACKER)
def ingest(config: DataSections, workspace: str) -> Annotated[DatasetRef, "dataset"]:
    """Prepare (or reuse) the DVC-versioned dataset. Never cached by ZenML: DVC decides whether data changed, and
    the returned version (content hash + dvc.lock md5) lets every downstream step cache on the data it read. Every
    pipeline run logs the data as its MLflow dataset input here (cached steps downstream log nothing)."""
    cfg = config.full()
    ws = Path(workspace).resolve()
    version = dvc_prepare(cfg, ws)
    ds = PreparedDataset(ws / cfg.data.prepared_dir)
    manifest = ds.root / "manifest.parquet"
    dataset = DatasetRef(path=str(ds.root), name=ds.root.name, content_hash=ds.content_hash,
                         domains=ds.subset(cfg.data.domains), source=ds.meta.get("source", ""), size=ds.size,
                         manifest=str(manifest) if manifest.is_file() else "", **version)
    log_metadata(metadata={"data_content_hash": ds.content_hash, "dvc_md5": version["dvc_md5"],
                           "domains": ", ".join(dataset.domains)}, infer_artifact=True, artifact_name="dataset")
    tracking.log_dataset(dataset)
    return dataset


@step(experiment_tracker=TRACKER)
def balance(config: DataSections, dataset: DatasetRef) -> Annotated[dict, "sampling_plan"]:
    """Validate the splits (train/searchval/val labelled and non-empty for every domain) and report the balance:
    per-domain sampling probabilities (data.sampling) and class imbalance. The split itself is part of the prepared
    dataset (searchval is held out of train at prepare time), so nothing is rewritten here."""
    ds = dataset.open()
    problems, per_domain = [], {}
    for d in dataset.domains:
        for split in ("train", "searchval", "val"):
            if not ds.has_labels(d, split):
                problems.append(f"{d}/{split} is empty or unlabelled")
        counts = np.bincount(np.asarray(ds.labels(d, "train")).clip(min=0), minlength=ds.num_classes(d))
        per_domain[d] = {"classes": ds.num_classes(d), "train": ds.split_size(d, "train"),
                         "searchval": ds.split_size(d, "searchval"), "val": ds.split_size(d, "val"),
                         "test": ds.split_size(d, "test"),
                         "class_imbalance": float(counts.max() / max(1, counts.min()))}
    if problems:
        raise DatasetError(f"{dataset.path}: " + "; ".join(problems))
    sampling = config.data.sampling
    probs = domain_probabilities({d: v["train"] for d, v in per_domain.items()}, sampling)
    for d, p in probs.items():
        per_domain[d]["sampling_probability"] = float(p)
    plan = {"strategy": sampling.strategy, "class_balanced": sampling.class_balanced, "domains": per_domain}
    tracking.set_tags({"dataset": dataset.name, "data_hash": dataset.content_hash[:16],
                       "dvc_md5": str(dataset.dvc_md5)})
    tracking.log_metrics({d: {"train_images": v["train"], "sampling_p": v["sampling_probability"]}
                          for d, v in per_domain.items()}, prefix="data/")
    return plan
