"""Ingest: prepare the dataset as a DVC stage (steps/ingest_dvc.py) and record its version; then check the splits and
the sampling plan."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
from zenml import log_metadata, step

from mpnas.data.loading import domain_probabilities
from mpnas.data.prepared import DatasetError, PreparedDataset
from steps import tracking
from steps._support import TRACKER
from steps.contracts import DataSections, DatasetRef
from steps.ingest_dvc import dvc_prepare


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
