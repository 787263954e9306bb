"""`python -m benchmarks.bench_gpu --tiny` runs on the CPU in seconds, without ZenML or MLflow, and writes its JSON."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# ZenML and MLflow made unimportable: the GPU image has only torch, pydantic and what mpnas itself imports
RUN = ("import runpy, sys; sys.modules['zenml'] = sys.modules['mlflow'] = None; sys.argv = sys.argv[1:]; "
       "runpy.run_module('benchmarks.bench_gpu', run_name='__main__')")


@pytest.mark.parametrize("options", [[], ["--bucket-shapes", "on", "--device-data", "on"]])
def test_tiny_run_on_cpu_writes_every_key_without_zenml_or_mlflow(tmp_path, options):
    """Default (auto: the CPU path) and with the CUDA path's options forced on (docs/gpu.md)."""
    out = tmp_path / "gpu.json"
    reference = tmp_path / "cpu_steps.json"
    proc = subprocess.run([sys.executable, "-c", RUN, "bench_gpu", "--tiny", "--device", "cpu", "--out", str(out),
                           "--cpu-reference", str(reference), *options],
                          cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads(out.read_text())
    assert r["device"] == "cpu" and r["tiny"] is True
    assert r["search_steps_per_s"] > 0 and r["train_steps_per_s"] > 0
    for key in ("search_x1", "train_x1", "search_x4", "train_x4"):
        phase = r["phases"][key]
        assert phase["timed_steps"] >= 1 and phase["steps_per_s"] == pytest.approx(1 / phase["s_per_step"])
    forced = bool(options)
    for key, phase in r["phases"].items():
        assert phase["resolved"]["device_resident"] is forced, key
        assert phase["resolved"].get("bucket_shapes", forced) is forced, key
    settings = {key: phase["settings"] for key, phase in r["phases"].items()}
    assert settings["search_x4"]["search_batch"] == 4 * settings["search_x1"]["search_batch"]
    assert settings["train_x4"]["train_batch"] == 4 * settings["train_x1"]["train_batch"]
    for kind in ("search", "train"):
        share = r["kernel_share"][kind]
        assert 0 < share["kernel_share"] <= 1 and abs(share["kernel_share"] + share["host_share"] - 1) < 1e-9
    # no CPU reference file: the speed-ups are absent and the output says why
    assert r["search_speedup_vs_cpu"] is None and r["train_speedup_vs_cpu"] is None
    assert "no CPU reference" in r["speedup_note"] and "steps/s" in proc.stdout


def test_speedups_divide_only_phases_measured_at_the_same_settings():
    sys.path.insert(0, str(ROOT))
    try:
        from benchmarks.bench_gpu import speedups
    finally:
        sys.path.remove(str(ROOT))
    same, other = {"search_batch": 16}, {"search_batch": 4}
    result = {"phases": {"search_x1": {"steps_per_s": 10.0, "settings": same},
                         "train_x1": {"steps_per_s": 10.0, "settings": same}}}
    reference = {"phases": {"search_x1": {"steps_per_s": 2.0, "settings": same},
                            "train_x1": {"steps_per_s": 2.0, "settings": other}}}
    ratios, note = speedups(result, reference)
    assert ratios == {"search_x1": 5.0} and note is None
    assert speedups(result, None)[0] == {}
