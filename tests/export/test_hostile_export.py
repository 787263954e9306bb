"""Issue 13 regressions for `mpnas export|evaluate|predict`: an export never replaces its own model, and broken or
edited model/export files are one error line naming the file (never a traceback, never a file outside the export)."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mpnas.cli import main
from mpnas.data.prepared import PreparedDataset

FAST = ["--formats", "onnx", "--no-int8", "--quiet", "--set", "export.latency_repeats=1"]


def snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def model_copy(model_dir, tmp_path) -> Path:
    return Path(shutil.copytree(model_dir, tmp_path / "models" / "M"))


@pytest.fixture(scope="module")
def image_file(tmp_path_factory, export_data):
    path = tmp_path_factory.mktemp("img") / "sample.png"
    Image.fromarray(np.asarray(PreparedDataset(export_data).images("alpha", "test")[0])).save(path)
    return path


# ---------------------------------------------------------------------------------------- 2: the model survives
@pytest.mark.parametrize("where", ["same", "parent", "inside"])
def test_export_refuses_an_out_that_overlaps_the_model(model_copy, export_data, capsys, where):
    before = snapshot(model_copy.parent)
    out = {"same": model_copy, "parent": model_copy.parent, "inside": model_copy / "export"}[where]
    rc = main(["export", "--model", str(model_copy), "--data", str(export_data), "--out", str(out), "--overwrite",
               *FAST])
    err = capsys.readouterr().err
    assert rc == 1 and f"--out {out}" in err and f"--model {model_copy}" in err
    assert snapshot(model_copy.parent) == before  # model.safetensors and architecture.json untouched


def test_export_refuses_an_out_that_overlaps_the_data(model_copy, export_data, tmp_path, capsys):
    rc = main(["export", "--model", str(model_copy), "--data", str(export_data), "--out", str(export_data / "x"),
               *FAST])
    assert rc == 1 and "--data" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------- 9: broken model files
class _Planted:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.mark.parametrize("damage", ["truncated", "pickled"])
def test_unreadable_weights_are_one_line_naming_the_file(model_copy, export_data, tmp_path, capsys, damage):
    weights = model_copy / "model.safetensors"
    marker = tmp_path / "PWNED"
    if damage == "truncated":
        weights.write_bytes(weights.read_bytes()[:100])
    else:
        torch.save({"w": _Planted(marker)}, weights)
    rc = main(["export", "--model", str(model_copy), "--data", str(export_data), "--out", str(tmp_path / "e"),
               *FAST])
    err = capsys.readouterr().err
    assert rc == 1 and f"{weights}: not a readable safetensors file" in err and not marker.exists()
    assert not (tmp_path / "e").exists()


def test_architecture_json_that_is_a_list_names_the_file(model_copy, export_data, tmp_path, capsys):
    arch = model_copy / "architecture.json"
    arch.write_text(json.dumps([json.loads(arch.read_text())]))
    rc = main(["evaluate", "--model", str(model_copy), "--data", str(export_data), "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert rc == 1 and f"{arch}: the top level must be an object" in err


# ---------------------------------------------------------------------------------------- 9/10: edited exports
def test_truncated_onnx_names_the_file(onnx_export, tmp_path, image_file, capsys):
    exp = Path(shutil.copytree(onnx_export[0], tmp_path / "exp"))
    manifest = json.loads((exp / "manifest.json").read_text())
    onnx = exp / manifest["onnx"]["fp32"]["alpha"]
    onnx.write_bytes(onnx.read_bytes()[:200])
    rc = main(["predict", "--model", str(exp), "--domain", "alpha", "--runtime", "onnx", str(image_file)])
    err = capsys.readouterr().err
    assert rc == 1 and f"{onnx}: not a loadable ONNX model" in err


@pytest.mark.parametrize("entry", ["../outside.onnx", "/abs/outside.onnx"])
def test_manifest_paths_are_confined_to_the_export(onnx_export, tmp_path, image_file, capsys, entry):
    exp = Path(shutil.copytree(onnx_export[0], tmp_path / "exp"))
    manifest = json.loads((exp / "manifest.json").read_text())
    shutil.copy(exp / manifest["onnx"]["fp32"]["alpha"], tmp_path / "outside.onnx")  # a loadable file out there
    manifest["onnx"]["fp32"]["alpha"] = entry if entry.startswith("..") else str(tmp_path / "outside.onnx")
    (exp / "manifest.json").write_text(json.dumps(manifest))
    rc = main(["predict", "--model", str(exp), "--domain", "alpha", "--runtime", "onnx", str(image_file)])
    err = capsys.readouterr().err
    assert rc == 1 and "outside the export directory" in err and str(exp / "manifest.json") in err
