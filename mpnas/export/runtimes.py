"""Run exported programs: the ExecuTorch runtime for the .pte, onnxruntime for the ONNX graphs.

Both take a float32 NCHW numpy batch and return logits as numpy, so parity, latency and `Predictor` share one path.
The .pte methods are exported for batch 1 (a phone classifies one picture at a time), so larger batches run row by row.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from pathlib import Path
from typing import Iterator

import numpy as np

# Native chatter (cpuinfo's "Failed to open midr file", XNNPACK and onnxruntime logs) is written by C++ straight to
# file descriptor 2, past Python's sys.stderr; `mpnas predict --verbose` (or MPNAS_VERBOSE_RUNTIMES=1) lets it through.
_verbose = os.environ.get("MPNAS_VERBOSE_RUNTIMES") == "1"


def set_verbose(on: bool) -> None:
    global _verbose
    _verbose = bool(on)


@contextlib.contextmanager
def quiet_native() -> Iterator[None]:
    """Send fd 2 to a temp file while a runtime loads or first runs; replay what it caught if that fails."""
    if _verbose:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as caught:
        os.dup2(caught.fileno(), 2)
        failed = True
        try:
            yield
            failed = False
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            if failed:
                caught.seek(0)
                sys.stderr.write(caught.read().decode(errors="replace"))


class PteRunner:
    """One .pte with a `forward_<entry>` method per domain."""

    def __init__(self, path: str | Path, methods: dict[str, str]):
        with quiet_native():  # importing it logs torch warnings
            from executorch.runtime import Runtime

        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.path}: no such .pte file")
        with quiet_native():
            self.program = Runtime.get().load_program(self.path)
        missing = sorted(set(methods.values()) - set(self.program.method_names))
        if missing:
            raise ValueError(f"{self.path}: methods {missing} are missing (the file has "
                             f"{sorted(self.program.method_names)})")
        self.methods = dict(methods)
        self._loaded: dict[str, object] = {}

    def method_names(self) -> list[str]:
        return sorted(self.program.method_names)

    def _method(self, domain: str):
        if domain not in self._loaded:
            import torch

            with quiet_native():  # the delegate initialises on load and on the first run
                method = self.program.load_method(self.methods[domain])
                shape = (1, *self._input_shape(method)[1:])
                method.execute([torch.zeros(shape)])
            self._loaded[domain] = method
        return self._loaded[domain]

    @staticmethod
    def _input_shape(method) -> tuple[int, ...]:
        return tuple(method.metadata.input_tensor_meta(0).sizes())

    def __call__(self, domain: str, x: np.ndarray) -> np.ndarray:
        import torch

        method = self._method(domain)
        rows = [method.execute([torch.from_numpy(np.ascontiguousarray(x[i:i + 1]))])[0] for i in range(len(x))]
        return torch.cat(rows).numpy()


class OnnxRunner:
    """One ONNX graph per domain, sessions created on first use."""

    def __init__(self, paths: dict[str, str | Path]):
        self.paths = {d: Path(p) for d, p in paths.items()}
        for p in self.paths.values():
            if not p.is_file():
                raise FileNotFoundError(f"{p}: no such ONNX file")
        self._sessions: dict[str, object] = {}

    def session(self, domain: str):
        if domain not in self._sessions:
            import onnxruntime as ort

            options = ort.SessionOptions()
            options.log_severity_level = 0 if _verbose else 3  # errors only, unless verbose
            with quiet_native():
                self._sessions[domain] = ort.InferenceSession(str(self.paths[domain]), sess_options=options,
                                                              providers=["CPUExecutionProvider"])
        return self._sessions[domain]

    def __call__(self, domain: str, x: np.ndarray) -> np.ndarray:
        sess = self.session(domain)
        return sess.run(None, {sess.get_inputs()[0].name: np.ascontiguousarray(x, dtype=np.float32)})[0]
