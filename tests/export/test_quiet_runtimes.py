"""Runtime chatter (C++ writes to fd 2) stays off the terminal unless asked for, and is replayed when loading fails."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mpnas.export import runtimes


def test_quiet_native_hides_fd2_and_replays_on_failure(capfd):
    with runtimes.quiet_native():
        os.write(2, b"native chatter\n")
    assert "native chatter" not in capfd.readouterr().err
    with pytest.raises(RuntimeError):
        with runtimes.quiet_native():
            os.write(2, b"why it failed\n")
            raise RuntimeError("load failed")
    assert "why it failed" in capfd.readouterr().err
    runtimes.set_verbose(True)
    try:
        with runtimes.quiet_native():
            os.write(2, b"verbose chatter\n")
        assert "verbose chatter" in capfd.readouterr().err
    finally:
        runtimes.set_verbose(False)


@pytest.mark.parametrize("runtime", ["executorch", "onnx"])
def test_predict_prints_only_its_answer(exported, export_data, tmp_path: Path, runtime: str):
    from mpnas.data.prepared import PreparedDataset

    out, _ = exported
    image = tmp_path / "x.png"
    Image.fromarray(np.asarray(PreparedDataset(export_data).images("alpha", "val")[0])).save(image)
    cmd = [str(Path(sys.executable).parent / "mpnas"), "predict", "--model", str(out), "--domain", "alpha",
           "--runtime", runtime, str(image)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert res.stderr == "", res.stderr
    assert res.stdout.count("\n") == 1 and res.stdout.startswith(str(image))
