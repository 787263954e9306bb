"""Tiny datasets built on the fly with PIL, in the decathlon-1.0 and ImageFolder layouts."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Optional

import numpy as np
import pytest
from PIL import Image


def write_image(path: Path, colour: tuple[int, int, int], size: tuple[int, int] = (12, 10), mode: str = "RGB") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.new("RGB", size, colour)
    if mode == "P":
        im = im.convert("P", palette=Image.Palette.ADAPTIVE)
    elif mode != "RGB":
        im = im.convert(mode)
    im.save(path, format="JPEG" if mode == "CMYK" else "PNG")  # PNG cannot hold CMYK; the suffix is not trusted
    return path


def make_decathlon(root: Path, domains: Optional[dict[str, int]] = None, per_class: tuple[int, int, int] = (4, 2, 2),
                   test_labels: str = "both", flat_test: bool = False, id_base: int = 10_000_000) -> Path:
    """Write annotations/<d>_{train,val,test[,_stripped]}.json + data/<d>/<split>/<class>/<id>.png.

    Category ids follow the decathlon scheme but are listed in *reverse* order, so a label must be the index in
    `categories`, not id arithmetic. Class k of domain i is drawn in colour (40*k, 20*i, 200).
    """
    domains = domains or {"alpha": 3, "beta": 2}
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    for di, (name, k) in enumerate(domains.items()):
        base = (di + 1) * id_base
        categories = [{"id": base + c + 1, "name": f"class{c}"} for c in reversed(range(k))]
        next_id = base + 1
        for split, n in zip(("train", "val", "test"), per_class):
            images, anns = [], []
            for c in range(k):
                for _ in range(n):
                    folder = f"data/{name}/{split}" if (split == "test" and flat_test) else \
                        f"data/{name}/{split}/class{c}"
                    rel = f"{folder}/{next_id}.png"
                    write_image(root / rel, (40 * c, 20 * di, 200))
                    images.append({"id": next_id, "file_name": rel, "width": 12, "height": 10})
                    anns.append({"id": next_id, "image_id": next_id, "category_id": base + c + 1})
                    next_id += 1
            doc = {"images": images, "annotations": anns, "categories": categories}
            if split != "test" or test_labels in ("both", "labels"):
                (root / "annotations" / f"{name}_{split}.json").write_text(json.dumps(doc))
            if split == "test" and test_labels in ("both", "stripped"):
                (root / "annotations" / f"{name}_test_stripped.json").write_text(
                    json.dumps({"images": images, "categories": categories}))
    return root


def label_of_colour(rgb: np.ndarray) -> int:
    return int(round(float(rgb[..., 0].mean()) / 40))


def edit_annotation(root: Path, name: str, fn) -> None:
    path = root / "annotations" / name
    doc = json.loads(path.read_text())
    fn(doc)
    path.write_text(json.dumps(doc))


@pytest.fixture
def fx() -> SimpleNamespace:
    """The builders above, for tests (conftest modules are not importable under --import-mode=importlib)."""
    return SimpleNamespace(write_image=write_image, make_decathlon=make_decathlon, label_of_colour=label_of_colour,
                           edit_annotation=edit_annotation)
