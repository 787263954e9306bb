import json

import numpy as np
import pytest
import torch
from PIL import Image

from mpnas.cli import main
from mpnas.data.prepared import PreparedDataset
from mpnas.export import Predictor
from mpnas.models.multipath import load_model


@pytest.fixture(scope="module")
def image_file(tmp_path_factory, export_data):
    """A PNG of a beta-2 test image (already 16 px, so preprocessing is resize-free and exact)."""
    img = np.asarray(PreparedDataset(export_data).images("beta-2", "test")[3])
    path = tmp_path_factory.mktemp("img") / "sample.png"
    Image.fromarray(img).save(path)
    return path


def _eager_top1(model_dir, export_data, image_file) -> str:
    model = load_model(model_dir)
    info = PreparedDataset(export_data).info("beta-2")
    x = torch.from_numpy(np.asarray(Image.open(image_file), dtype=np.float32) / 255.0)
    x = ((x - torch.tensor(info.mean)) / torch.tensor(info.std)).permute(2, 0, 1)[None].float()
    with torch.no_grad():
        return info.classes[int(model(x, "beta-2").argmax())]


def test_predict_cli_onnx_returns_eager_top1(onnx_export, model_dir, export_data, image_file, capsys):
    out, _ = onnx_export
    rc = main(["predict", "--model", str(out), "--domain", "beta-2", "--runtime", "onnx", "--json", str(image_file)])
    assert rc == 0
    doc = json.loads(capsys.readouterr().out)
    top = doc["predictions"][str(image_file)]
    assert doc["runtime"] == "onnx" and len(top) == 3
    assert top[0]["class"] == _eager_top1(model_dir, export_data, image_file)
    assert top[0]["score"] >= top[1]["score"] >= top[2]["score"]


@pytest.mark.slow
def test_predict_cli_pte_returns_eager_top1(exported, model_dir, export_data, image_file, capsys):
    out, _ = exported
    assert main(["predict", "--model", str(out / "model.pte"), "--domain", "beta-2", "--top-k", "2",
                 str(image_file)]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"{image_file}: {_eager_top1(model_dir, export_data, image_file)} ")
    assert Predictor.load(out).runtime == "executorch"


def test_predictor_converts_any_mode_to_rgb(onnx_export, tmp_path):
    out, _ = onnx_export
    grey = tmp_path / "grey.png"
    Image.fromarray(np.full((20, 30), 128, np.uint8), mode="L").save(grey)
    p = Predictor.load(out, runtime="onnx")
    assert p.preprocess(grey, "alpha").shape == (1, 3, 16, 16)
    assert len(p.predict(grey, "alpha", top_k=5)) == 3  # capped at the number of classes


def test_unknown_domain_lists_valid_ones(onnx_export, image_file, capsys):
    out, _ = onnx_export
    assert main(["predict", "--model", str(out), "--domain", "gamma", str(image_file)]) != 0
    err = capsys.readouterr().err
    assert "gamma" in err and "alpha" in err and "beta-2" in err


def test_unreadable_image_is_named(onnx_export, tmp_path, capsys):
    out, _ = onnx_export
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not an image")
    assert main(["predict", "--model", str(out), "--domain", "alpha", str(bad)]) != 0
    assert "broken.png" in capsys.readouterr().err
    assert main(["predict", "--model", str(out), "--domain", "alpha", str(tmp_path / "missing.png")]) != 0
    assert "missing.png" in capsys.readouterr().err


def test_export_cli_writes_export_and_fails_loudly_on_parity(model_dir, export_data, tmp_path, capsys):
    ok = main(["export", "--model", str(model_dir), "--out", str(tmp_path / "a"), "--data", str(export_data),
               "--formats", "onnx", "--no-int8", "--set", "export.latency_repeats=1", "--quiet"])
    assert ok == 0 and (tmp_path / "a" / "manifest.json").is_file()
    bad = main(["export", "--model", str(model_dir), "--out", str(tmp_path / "b"), "--data", str(export_data),
                "--formats", "onnx", "--no-int8", "--set", "export.parity_atol=1e-12", "--quiet"])
    assert bad != 0 and "parity" in capsys.readouterr().err
