"""Ingest: prepare the dataset as a DVC stage and record its version; then check the splits and the sampling plan."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Annotated, Any, NamedTuple, Optional

import numpy as np
import yaml
from zenml import log_metadata, step

from mpnas.config import DataConfig, MpnasConfig
from mpnas.data.loading import domain_probabilities
from mpnas.data.prepare import PREPARE_FIELDS
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


# The checkout holding the `mpnas` package: the prepare stage depends on the data code found under it.
CODE_ROOT = Path(__file__).resolve().parents[1]
# `mpnas data prepare` (the stage's command) and the modules it runs, followed through their imports inside these
# packages. mpnas.config is left out on purpose: the params file carries every value prepare reads.
PREPARE_ENTRY = ("mpnas.cli.data", "mpnas.data.prepare")
DATA_PACKAGES = ("mpnas.data", "mpnas.utils")


def _module_file(code_root: Path, module: str) -> Optional[Path]:
    base = code_root.joinpath(*module.split("."))
    return next((p for p in (base.with_suffix(".py"), base / "__init__.py") if p.is_file()), None)


def _imported(path: Path) -> set[str]:
    """Every absolute module name `path` imports (`from a.b import c` may name the module a.b.c)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


def prepare_code(code_root: Optional[Path] = None) -> list[Path]:
    """The source files `mpnas data prepare` runs: the entry modules and, transitively, what they import from the
    data packages (package __init__ files included). A change to any of them re-runs the prepare stage; a change to
    other code (the training loader, say) does not."""
    code_root = code_root or CODE_ROOT
    todo, seen = list(PREPARE_ENTRY), set()
    while todo:
        module = todo.pop()
        path = _module_file(code_root, module)
        if module in seen or path is None:
            continue
        seen.add(module)
        parents = [module.rsplit(".", k)[0] for k in range(1, module.count("."))]
        todo += [m for m in [*_imported(path), *parents] if m.startswith(tuple(f"{p}." for p in DATA_PACKAGES))
                 or m in DATA_PACKAGES]
    return sorted(_module_file(code_root, m) for m in seen)


def _dep_path(path: Path, workspace: Path) -> str:
    """Relative to the workspace when inside it (portable), else absolute (a test workspace outside the repo)."""
    path = path.resolve()
    try:
        return str(path.relative_to(workspace))
    except ValueError:
        return str(path)


def stage_name(cfg: MpnasConfig) -> str:
    return "pipeline_" + re.sub(r"[^A-Za-z0-9_]+", "_", Path(cfg.data.prepared_dir).name)


def _stage_out(data: DataConfig, workspace: Path) -> str:
    out = Path(data.prepared_dir)
    if out.is_absolute():
        try:
            out = out.relative_to(workspace)
        except ValueError:
            raise ValueError(f"data.prepared_dir {out} must lie inside the DVC workspace {workspace}") from None
    return str(out)


class PrepareStage(NamedTuple):
    name: str
    entry: dict[str, Any]  # the stage's dvc.yaml entry, as `dvc stage add` writes it
    params_file: str  # relative to the workspace
    params: str  # the params file's text: the run config's `data` section


def prepare_stage(cfg: MpnasConfig, workspace: Path) -> PrepareStage:
    """The one definition of the prepare stage.

    The command reads the run config's `data` section from the params file; DVC watches only the values prepare
    reads (PREPARE_FIELDS), the data code (prepare_code), the source root if any, and owns the prepared dir."""
    name, out = stage_name(cfg), _stage_out(cfg.data, workspace)
    params_file = f"data/params/{name}.yaml"
    data = {**cfg.data.model_dump(mode="json"), "prepared_dir": out}
    deps = [_dep_path(p, workspace) for p in prepare_code()]
    if cfg.data.root is not None:
        deps.append(_dep_path(workspace / cfg.data.root, workspace))
    entry = {"cmd": f"mpnas data prepare --overwrite -c {params_file}", "deps": deps,
             "params": [{params_file: sorted(f"data.{f}" for f in PREPARE_FIELDS)}], "outs": [out]}
    return PrepareStage(name, entry, params_file, yaml.safe_dump({"data": data}, sort_keys=False))


def _stage_add_args(stage: PrepareStage) -> list[str]:
    """`dvc stage add` arguments that write `stage.entry` (DVC validates it: an output another stage owns is
    refused with DVC's reason)."""
    deps = [a for d in stage.entry["deps"] for a in ("-d", d)]
    outs = [a for o in stage.entry["outs"] for a in ("-o", o)]
    keys = ",".join(stage.entry["params"][0][stage.params_file])
    return ["stage", "add", "--force", "-n", stage.name, *deps, "-p", f"{stage.params_file}:{keys}", *outs,
            stage.entry["cmd"]]


def declare_stage(workspace: Path, stage: PrepareStage) -> bool:
    """Write the params file and the stage only where they differ from what is there; True when dvc.yaml changed.

    A run with an unchanged config and code leaves dvc.yaml as it was (DVC's own check then decides to skip)."""
    params_path = workspace / stage.params_file
    if not params_path.is_file() or params_path.read_text() != stage.params:
        atomic_write_text(params_path, stage.params)
    dvc_yaml = workspace / "dvc.yaml"
    current = (yaml.safe_load(dvc_yaml.read_text()) or {}) if dvc_yaml.is_file() else {}
    if (current.get("stages") or {}).get(stage.name) == stage.entry:
        return False
    _dvc(workspace, *_stage_add_args(stage))
    return True


def dvc_prepare(cfg: MpnasConfig, workspace: Path) -> dict[str, Any]:
    """Declare `mpnas data prepare` as a DVC stage (prepare_stage) and `dvc repro` it.

    DVC skips the stage when neither the watched params, the data code, the source nor the output changed, and
    dvc.lock records the output's md5: the data version downstream artifacts carry."""
    ensure_dvc_repo(workspace)
    stage = prepare_stage(cfg, workspace)
    declare_stage(workspace, stage)
    log = _dvc(workspace, "repro", stage.name)
    print(f"[ingest] dvc stage {stage.name}: {'reproduced' if 'Running stage' in log else 'up to date, reused'}")
    out = stage.entry["outs"][0]
    entry = dvc_lock_entry(workspace / out)
    if entry is None:
        raise RuntimeError(f"{workspace / 'dvc.lock'}: no entry for {out} after `dvc repro {stage.name}`")
    return {"dvc_stage": stage.name, "dvc_md5": entry["md5"], "dvc_files": entry["nfiles"],
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
