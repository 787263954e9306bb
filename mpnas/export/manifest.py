"""manifest.json: what an app needs to use an export without the training code (classes, preprocessing, entry
points) and what it was made from (source model hash, genotypes, file hashes)."""

from __future__ import annotations

from pathlib import Path

from mpnas.utils.io import read_json, sha256_file  # noqa: F401 - sha256_file is part of this module's API

MANIFEST_FILE = "manifest.json"
FORMAT = "mpnas.export/1"


def file_entries(root: Path) -> dict[str, dict]:
    """Every file under `root` (relative posix path -> bytes, sha256), except the manifest itself."""
    return {p.relative_to(root).as_posix(): {"bytes": p.stat().st_size, "sha256": sha256_file(p)}
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != MANIFEST_FILE}


def find_manifest(path: str | Path) -> Path:
    """The manifest of an export directory, or of the export a file (.pte / .onnx) belongs to."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such export directory or file")
    start = path if path.is_dir() else path.parent
    for d in (start, start.parent):
        if (d / MANIFEST_FILE).is_file():
            return d / MANIFEST_FILE
    raise FileNotFoundError(f"{path}: no {MANIFEST_FILE} beside it (is it an export from `mpnas export`?)")


def read_manifest(path: str | Path) -> dict:
    path = find_manifest(path)
    doc = read_json(path)
    if doc.get("format") != FORMAT:
        raise ValueError(f"{path}: format {doc.get('format')!r}, expected {FORMAT!r}")
    for field in ("domains", "input", "files"):
        if field not in doc:
            raise ValueError(f"{path}: missing field {field!r}")
    doc["_root"] = str(path.parent)
    return doc
