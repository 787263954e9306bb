"""The version of a prepared dataset, for lineage: its content hash and, when DVC produced it, the dvc.lock md5.

Plain Python (no dvc import): dvc.lock is YAML, found by walking up from the prepared directory.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional

import yaml

from mpnas.data.prepared import PreparedDataset


def _find_lock(start: Path) -> Optional[Path]:
    for parent in [start, *start.parents]:
        if (parent / "dvc.lock").is_file():
            return parent / "dvc.lock"
    return None


def dvc_lock_entry(prepared_dir: str | Path) -> Optional[dict[str, Any]]:
    """The dvc.lock `outs` entry (stage name, md5, size, nfiles) whose path is `prepared_dir`, if any."""
    target = Path(prepared_dir).resolve()
    lock = _find_lock(target.parent)
    if lock is None:
        return None
    doc = yaml.safe_load(lock.read_text()) or {}
    for stage, body in (doc.get("stages") or {}).items():
        for out in (body or {}).get("outs") or []:
            path = out.get("path")
            if path and os.path.normpath(lock.parent / path) == os.path.normpath(target):
                return {"stage": stage, "md5": out.get("md5"), "size": out.get("size"), "nfiles": out.get("nfiles"),
                        "lock_file": str(lock)}
    return None


def data_version(prepared_dir: str | Path) -> dict[str, Any]:
    """{"path", "content_hash", "source", "dvc_stage", "dvc_md5"}; the dvc fields are None without a dvc.lock entry."""
    ds = PreparedDataset(prepared_dir)
    entry = dvc_lock_entry(prepared_dir)
    return {"path": str(Path(prepared_dir).resolve()), "content_hash": ds.content_hash,
            "source": ds.meta.get("source"), "dvc_stage": entry["stage"] if entry else None,
            "dvc_md5": entry["md5"] if entry else None}
