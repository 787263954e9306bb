"""Reader for the Visual Decathlon layout (decathlon-1.0), also used by the embedded set and the mini-decathlon.

    <root>/annotations/<domain>_{train,val}.json        COCO-style: images, annotations, categories
    <root>/annotations/<domain>_test.json               test with labels (used when present), else
    <root>/annotations/<domain>_test_stripped.json      test without labels (images, categories)
    <root>/data/<domain>/...                            image files; `file_name` is relative to <root>

A label is the index of its category in the train file's `categories` list; ids are only looked up, never used
in arithmetic (id schemes differ between releases). Every structural problem raises DatasetError naming the file
and the entry.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence

from mpnas.data.prepared import DatasetError
from mpnas.data.sources import SourceDomain, SourceItem, check_domain, make_item, resolve_under
from mpnas.utils.io import read_json


def decathlon_root(root: str | Path) -> Path:
    """The directory holding `annotations/` (accepts its parent when that contains decathlon-1.0/)."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: dataset root not found")
    for cand in (root, root / "decathlon-1.0"):
        if (cand / "annotations").is_dir():
            return cand
    raise DatasetError(f"{root}: no annotations/ directory (expected the decathlon-1.0 layout: "
                       f"annotations/<domain>_train.json and data/<domain>/...)")


def decathlon_domains(root: Path) -> list[str]:
    return sorted(p.name[:-len("_train.json")] for p in (root / "annotations").glob("*_train.json"))


def _load(path: Path) -> dict[str, Any]:
    """An annotation file: a JSON object with `images` and `categories` lists; anything else is a DatasetError."""
    doc = read_json(path, "the annotation file is missing: the decathlon-1.0 layout has "
                          "annotations/<domain>_{train,val,test}.json", error=DatasetError)
    for key in ("images", "categories"):
        if not isinstance(doc.get(key), list):
            raise DatasetError(f"{path}: missing or invalid {key!r} list")
    return doc


def _categories(path: Path, doc: dict[str, Any]) -> list[tuple[Any, str]]:
    cats, seen = [], set()
    for i, c in enumerate(doc["categories"]):
        if not isinstance(c, dict) or "id" not in c:
            raise DatasetError(f"{path}: categories[{i}] has no 'id'")
        if c["id"] in seen:
            raise DatasetError(f"{path}: duplicate category id {c['id']!r} (categories[{i}])")
        seen.add(c["id"])
        cats.append((c["id"], str(c.get("name", c["id"]))))
    return cats


def _split_items(root: Path, path: Path, doc: dict[str, Any], cat_index: dict[Any, int], labeled: bool
                 ) -> list[SourceItem]:
    images: dict[Any, str] = {}
    for i, im in enumerate(doc["images"]):
        if not isinstance(im, dict) or "id" not in im or not isinstance(im.get("file_name"), str):
            raise DatasetError(f"{path}: images[{i}] needs an 'id' and a string 'file_name'")
        if "\x00" in im["file_name"]:
            raise DatasetError(f"{path}: images[{i}] (id {im['id']!r}) has a NUL byte in its file_name "
                               f"{im['file_name']!r}; no file can have that name")
        if im["id"] in images:
            raise DatasetError(f"{path}: duplicate image id {im['id']!r} (images[{i}], file {im['file_name']!r})")
        images[im["id"]] = im["file_name"]
    labels: dict[Any, int] = {}
    if labeled:
        anns = doc.get("annotations")
        if not isinstance(anns, list):
            raise DatasetError(f"{path}: missing or invalid 'annotations' list")
        for i, a in enumerate(anns):
            if not isinstance(a, dict) or "image_id" not in a or "category_id" not in a:
                raise DatasetError(f"{path}: annotations[{i}] needs 'image_id' and 'category_id'")
            img, cat = a["image_id"], a["category_id"]
            if img not in images:
                raise DatasetError(f"{path}: annotations[{i}] refers to unknown image id {img!r}")
            if cat not in cat_index:
                raise DatasetError(f"{path}: annotations[{i}] (image id {img!r}) has category id {cat!r}, "
                                   f"which is not in 'categories'")
            if img in labels and labels[img] != cat_index[cat]:
                raise DatasetError(f"{path}: image id {img!r} has conflicting annotations (annotations[{i}])")
            labels[img] = cat_index[cat]
        unlabeled = [i for i in images if i not in labels]
        if unlabeled:
            raise DatasetError(f"{path}: {len(unlabeled)} image(s) have no annotation, e.g. image id "
                               f"{unlabeled[0]!r} ({images[unlabeled[0]]!r})")
    items = []
    for img_id, rel in images.items():
        entry = f"{path}: image id {img_id!r}"
        item = make_item(root, rel, labels.get(img_id, -1), entry)
        if item.problem and not item.escape and not rel.startswith("data/"):
            alt, problem, escape = resolve_under(root / "data", rel)  # TFDS-style names without the data/ prefix
            if alt is not None or escape:
                item = SourceItem(entry, rel, item.label, alt, problem, escape)
        items.append(item)
    return items


def read_decathlon(root: str | Path, domains: Optional[Sequence[str]] = None) -> list[SourceDomain]:
    """List every selected domain's classes and split items (train, val, test) without decoding images."""
    root = decathlon_root(root)
    available = decathlon_domains(root)
    if not available:
        raise DatasetError(f"{root / 'annotations'}: no <domain>_train.json annotation files")
    chosen = list(domains) if domains else available
    out = []
    for name in chosen:
        ann = root / "annotations"
        train_path = ann / f"{name}_train.json"
        if not train_path.is_file():
            raise DatasetError(f"{train_path}: annotation file is missing (domain {name!r}; "
                               f"available: {', '.join(available)})")
        train_doc = _load(train_path)
        cats = _categories(train_path, train_doc)
        cat_index = {cid: k for k, (cid, _) in enumerate(cats)}
        dom = SourceDomain(name, [n for _, n in cats])
        test_path = ann / f"{name}_test.json"
        if not test_path.is_file():
            test_path = ann / f"{name}_test_stripped.json"
            if not test_path.is_file():
                raise DatasetError(f"{ann / (name + '_test.json')}: annotation file is missing "
                                   f"(and so is {test_path.name})")
        for split, path in (("train", train_path), ("val", ann / f"{name}_val.json"), ("test", test_path)):
            doc = train_doc if split == "train" else _load(path)
            if split != "train":
                ids = {cid for cid, _ in _categories(path, doc)}
                if ids != set(cat_index):
                    raise DatasetError(f"{path}: its categories differ from those of {train_path.name}")
            labeled = "annotations" in doc or split != "test"
            dom.items[split] = _split_items(root, path, doc, cat_index, labeled)
            dom.labeled[split] = labeled
        check_domain(dom, str(train_path))
        out.append(dom)
    return out
