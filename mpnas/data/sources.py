"""What a dataset reader hands to `prepare`: per domain, its classes and the image items of each split.

Readers only list and validate (structure, labels, paths); decoding happens in `prepare`. An item whose path is
unsafe (escapes the dataset root) or absent carries a `problem` and no path is ever opened for it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from mpnas.data.prepared import DatasetError

SOURCE_SPLITS = ("train", "val", "test")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


@dataclass(frozen=True)
class SourceItem:
    entry: str                 # how the input names it: "<annotation file>: image id 123" or a relative path
    source_file: str           # path relative to the dataset root, as listed
    label: int                 # index into the domain's classes; -1 when the split carries no labels
    path: Optional[Path] = None  # resolved file to decode; None when `problem` is set
    problem: Optional[str] = None  # "path escapes the dataset root", "image file is missing", ...
    escape: bool = False       # a path escape is never opened, in any mode


@dataclass
class SourceDomain:
    name: str
    classes: list[str]
    items: dict[str, list[SourceItem]] = field(default_factory=dict)  # split -> items
    labeled: dict[str, bool] = field(default_factory=dict)


def resolve_under(root: Path, rel: str) -> tuple[Optional[Path], Optional[str], bool]:
    """(path, problem, escape) for a file name listed relative to `root`.

    Absolute names, `..` components that leave the root and symlinks resolving outside it are escapes; their
    targets are never touched beyond resolving the link. A missing file is a (non-escape) problem.
    """
    if not rel or os.path.isabs(rel) or rel.startswith(("/", "\\")) or (len(rel) > 1 and rel[1] == ":"):
        return None, f"file name {rel!r} is absolute: it must be relative to the dataset root", True
    base = root.resolve()
    candidate = root / rel
    lexical = os.path.normpath(os.path.join(str(base), rel))
    if os.path.commonpath([lexical, str(base)]) != str(base):
        return None, f"file name {rel!r} escapes the dataset root {root}", True
    resolved = candidate.resolve()
    if os.path.commonpath([str(resolved), str(base)]) != str(base):
        return None, f"file name {rel!r} resolves (through a symlink) outside the dataset root {root}", True
    if not resolved.is_file():
        return None, f"image file is missing: {candidate}", False
    return resolved, None, False


def make_item(root: Path, rel: str, label: int, entry: str) -> SourceItem:
    path, problem, escape = resolve_under(root, rel)
    return SourceItem(entry=entry, source_file=rel, label=label, path=path, problem=problem, escape=escape)


def check_domain(domain: SourceDomain, where: str) -> None:
    """Structural checks every reader shares: non-empty train split and every class present in it."""
    train = domain.items.get("train", [])
    if not train:
        raise DatasetError(f"{where}: domain {domain.name!r} has no training images")
    if not domain.classes:
        raise DatasetError(f"{where}: domain {domain.name!r} has no classes")
    counts = [0] * len(domain.classes)
    for it in train:
        counts[it.label] += 1
    empty = [domain.classes[k] for k, c in enumerate(counts) if c == 0]
    if empty:
        shown = ", ".join(repr(c) for c in empty[:5]) + (" ..." if len(empty) > 5 else "")
        raise DatasetError(f"{where}: domain {domain.name!r} has {len(empty)} class(es) with no training image: "
                           f"{shown}")
