import json

import numpy as np
import pytest
import torch

from mpnas.config import ExportConfig
from mpnas.data.loading import iterate_split
from mpnas.data.prepared import PreparedDataset
from mpnas.export import export_model
from mpnas.export.manifest import read_manifest, sha256_file
from mpnas.export.runtimes import OnnxRunner, PteRunner
from mpnas.models.multipath import load_model


def _test_images(data, domain):
    xs, ys = zip(*iterate_split(PreparedDataset(data), domain, "test", 64, 16))
    return torch.cat(xs), torch.cat(ys)


@pytest.mark.slow
def test_pte_has_one_method_per_domain_matching_eager(exported, model_dir, export_data):
    out, report = exported
    manifest = read_manifest(out)
    model = load_model(model_dir)
    methods = {d: info["method"] for d, info in manifest["domains"].items()}
    assert methods == {"alpha": "forward_alpha", "beta-2": "forward_beta_2"}
    runner = PteRunner(out / "model.pte", methods)
    assert runner.method_names() == ["forward_alpha", "forward_beta_2"]
    for d in model.domains:
        x, _ = _test_images(export_data, d)
        with torch.no_grad():
            ref = model(x, d).numpy()
        np.testing.assert_allclose(runner(d, x.numpy()), ref, atol=1e-4)
    assert report["parity_ok"] is True


@pytest.mark.slow
def test_sharing_is_read_from_constant_tables_without_lowering_single_method_programs(exported):
    out, report = exported
    s = report["sharing"]
    assert s["measured_by"] == "constant_tables" and "single_method_pte_bytes" not in s
    t = s["constant_tables"]
    assert set(t["method_constant_bytes"]) == {"alpha", "beta-2"}
    assert t["unique_constant_bytes"] < sum(t["method_constant_bytes"].values())
    # the saving is the shared weights stored once (the head alone is 64x256 floats)
    assert s["shared_weight_bytes"] > 64 * 256 * 4
    assert s["saved_bytes"] == t["saved_bytes"] >= 0.9 * s["shared_weight_bytes"]
    assert s["combined_over_separate"] < 1 and s["combined_pte_bytes"] == (out / "model.pte").stat().st_size
    assert s["int8_constant_tables"]["saved_bytes"] > 0  # the int8 file shares its quantized weights too
    md = (out / "export_report.md").read_text()
    assert "per-method constant tables" in md and f"{s['saved_bytes']:,} B" in md


@pytest.mark.slow
def test_measure_sharing_lowers_single_method_programs_and_agrees_with_the_tables(exported, measured_sharing_export):
    """The constant-table saving is what separate files repeat in constants; real files add their per-file overhead
    on top, so the file-size saving is slightly larger, never smaller."""
    out, report = measured_sharing_export
    s, default = report["sharing"], exported[1]["sharing"]
    assert s["measured_by"] == "single_method_programs" and set(s["single_method_pte_bytes"]) == {"alpha", "beta-2"}
    assert s["combined_pte_bytes"] == default["combined_pte_bytes"]  # same lowering, same bytes
    assert s["saved_bytes"] == s["sum_single_bytes"] - s["combined_pte_bytes"]
    table = s["constant_tables"]["saved_bytes"]
    assert table == default["saved_bytes"]
    assert table <= s["saved_bytes"] <= table + 4096 * len(s["single_method_pte_bytes"])
    assert "single-method program" in (out / "export_report.md").read_text()


@pytest.mark.slow
def test_report_states_parity_int8_accuracy_latency_and_sizes(exported):
    out, report = exported
    assert json.loads((out / "export_report.json").read_text())["parity_ok"] == report["parity_ok"]
    assert "Parity: OK" in (out / "export_report.md").read_text()
    for d, row in report["domains"].items():
        assert row["split"] == "test" and row["images"] > 0
        for rt in ("executorch", "onnx"):
            p = row["parity"][rt]
            assert p["ok"] and p["agreement"] >= 0.999 and p["max_abs_diff"] <= 1e-3
        for rt in ("eager", "executorch", "onnx", "executorch_int8", "onnx_int8"):
            assert 0.0 <= row["accuracy"][rt] <= 1.0
            assert row["latency_ms"][rt] > 0
        assert set(row["int8_accuracy_drop"]) == {"executorch_int8", "onnx_int8"}
        assert row["parity"]["executorch_int8"]["max_abs_diff"] > 0  # really quantized, not a copy of fp32
    for f in ("model.pte", "model.int8.pte", "onnx/alpha.onnx", "onnx/beta_2.int8.onnx"):
        assert report["file_bytes"][f] == (out / f).stat().st_size > 0


@pytest.mark.slow
def test_int8_pte_runs(exported, export_data):
    out, _ = exported
    manifest = read_manifest(out)
    runner = PteRunner(out / manifest["executorch"]["int8"], {"alpha": "forward_alpha"})
    x, _ = _test_images(export_data, "alpha")
    assert runner("alpha", x[:2].numpy()).shape == (2, 3)


def test_onnx_graphs_match_eager(onnx_export, model_dir, export_data):
    out, report = onnx_export
    model = load_model(model_dir)
    manifest = read_manifest(out)
    runner = OnnxRunner({d: out / p for d, p in manifest["onnx"]["fp32"].items()})
    for d in model.domains:
        x, _ = _test_images(export_data, d)
        with torch.no_grad():
            np.testing.assert_allclose(runner(d, x.numpy()), model(x, d).numpy(), atol=1e-4)
    assert report["parity_ok"] and report["sharing"] is None and not (out / "model.pte").exists()


def test_manifest_round_trips(onnx_export, model_dir):
    out, _ = onnx_export
    m = read_manifest(out / "onnx" / "alpha.onnx")  # found from a file inside the export too
    model = load_model(model_dir)
    assert m["source_model"]["sha256"] == sha256_file(model_dir / "model.safetensors")
    assert m["input"]["crop"] == 16 and m["input"]["resize"] == 16
    for d in model.domains:
        info = m["domains"][d]
        assert info["genotype"] == model.genotypes[d].to_strings()
        assert info["classes"] == model.meta["domains"][d]["classes"]
        assert info["mean"] == pytest.approx(model.meta["domains"][d]["mean"])
    for rel, entry in m["files"].items():
        assert sha256_file(out / rel) == entry["sha256"] and (out / rel).stat().st_size == entry["bytes"]
    assert "manifest.json" not in m["files"]


def test_parity_failure_is_reported(model_dir, export_data, tmp_path):
    cfg = ExportConfig(formats=["onnx"], int8=False, latency_repeats=1, parity_atol=1e-12)
    report = export_model(model_dir, tmp_path / "exp", cfg, data_dir=export_data, progress=False)
    assert report["parity_ok"] is False
    assert "FAILED" in (tmp_path / "exp" / "export_report.md").read_text()


def test_existing_output_is_refused(onnx_export, model_dir, export_data):
    out, _ = onnx_export
    with pytest.raises(FileExistsError):
        export_model(model_dir, out, ExportConfig(formats=["onnx"], int8=False), data_dir=export_data, progress=False)


def test_without_data_parity_uses_random_inputs_and_says_so(tiny, tmp_path):
    from mpnas.models.multipath import save_model

    meta = {"domains": {d: {"classes": [f"k{i}" for i in range(k)], "mean": [0.5] * 3, "std": [0.25] * 3}
                        for d, k in tiny.num_classes.items()}}
    model_dir = save_model(tiny, tmp_path / "model", meta)
    report = export_model(model_dir, tmp_path / "exp", ExportConfig(formats=["onnx"], latency_repeats=1),
                          progress=False)
    assert report["parity_ok"] and report["int8"] is False
    assert all(row["split"] == "random" and row["accuracy"] == {} for row in report["domains"].values())
    assert "random inputs" in report["notes"][0] and "int8 not produced" in report["notes"][0]
    assert read_manifest(tmp_path / "exp")["domains"]["alpha"]["classes"] == ["k0", "k1", "k2"]


def test_missing_class_names_without_data_is_an_error(tiny, tmp_path):
    from mpnas.models.multipath import save_model

    model_dir = save_model(tiny, tmp_path / "model")
    with pytest.raises(ValueError, match="lacks classes"):
        export_model(model_dir, tmp_path / "exp", ExportConfig(formats=["onnx"]), progress=False)
    assert not (tmp_path / "exp").exists()


@pytest.mark.slow
def test_per_domain_affine_single_path_exports_with_parity_and_conv_weights_once(affine_model_dir, affine_export):
    """The shared_domain_bn baseline: one path for every domain, per-domain BN. Each method folds its own BN; the
    convolutions stay shared, so the combined .pte saves (about) one copy of them."""
    m = load_model(affine_model_dir)
    assert m.bn_mode == "per_domain_affine" and len({tuple(m.paths[d]) for d in m.domains}) == 1
    _, report = affine_export
    assert report["parity_ok"] is True
    assert all(row["parity"]["executorch"]["max_abs_diff"] <= 1e-3 for row in report["domains"].values())
    shared_weights = sum(p.numel() * 4 for n, p in m.named_parameters()
                         if not n.startswith("classifiers.") and not n.endswith(("bn.weight", "bn.bias")))
    s = report["sharing"]
    assert s["saved_bytes"] >= 0.9 * shared_weights  # one copy of every conv/linear weight saved
    assert s["combined_over_separate"] < 0.6
