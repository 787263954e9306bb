"""Reader for one ImageFolder tree per domain: root/<domain>/{train,val[,test]}/<class>/<image>.

Classes are the sorted sub-folders of train/; val and test may only use those. A test/ folder holding images
directly (no class folders) is read as unlabelled. Files are listed in sorted order so the result is reproducible.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

from mpnas.data.prepared import DatasetError
from mpnas.data.sources import IMAGE_SUFFIXES, SourceDomain, SourceItem, check_domain, make_item


def imagefolder_domains(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.is_dir() and (p / "train").is_dir())


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not p.is_dir())


def _class_dirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir())


def read_imagefolder(root: str | Path, domains: Optional[Sequence[str]] = None) -> list[SourceDomain]:
    """List every selected domain's classes and split items without decoding images."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: dataset root not found")
    available = imagefolder_domains(root)
    if not available:
        raise DatasetError(f"{root}: no <domain>/train/ folders (expected root/<domain>/{{train,val}}/<class>/)")
    out = []
    for name in (list(domains) if domains else available):
        droot = root / name
        if name not in available:
            raise DatasetError(f"{droot / 'train'}: folder is missing (available domains: {', '.join(available)})")
        classes = [p.name for p in _class_dirs(droot / "train")]
        index = {c: k for k, c in enumerate(classes)}
        dom = SourceDomain(name, classes)
        for split in ("train", "val", "test"):
            folder = droot / split
            if not folder.is_dir():
                if split == "val":
                    raise DatasetError(f"{folder}: folder is missing (each domain needs train/ and val/)")
                continue
            items: list[SourceItem] = []
            for cdir in _class_dirs(folder):
                if cdir.name not in index:
                    raise DatasetError(f"{cdir}: class {cdir.name!r} does not exist in {droot / 'train'}")
                for f in _images_in(cdir):
                    rel = str(f.relative_to(root))
                    items.append(make_item(root, rel, index[cdir.name], rel))
            flat = _images_in(folder)
            if flat and split != "test":
                raise DatasetError(f"{flat[0]}: images directly under {split}/ need a class folder")
            items += [make_item(root, str(f.relative_to(root)), -1, str(f.relative_to(root))) for f in flat]
            if flat and len(flat) != len(items):
                raise DatasetError(f"{folder}: mixes class folders and loose (unlabelled) images")
            dom.items[split] = items
            dom.labeled[split] = not flat
        check_domain(dom, str(droot / "train"))
        out.append(dom)
    return out
