"""Run exported programs: the ExecuTorch runtime for the .pte, onnxruntime for the ONNX graphs.

Both take a float32 NCHW numpy batch and return logits as numpy, so parity, latency and `Predictor` share one path.
The .pte methods are exported for batch 1 (a phone classifies one picture at a time), so larger batches run row by row.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


class PteRunner:
    """One .pte with a `forward_<entry>` method per domain."""

    def __init__(self, path: str | Path, methods: dict[str, str]):
        from executorch.runtime import Runtime

        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.path}: no such .pte file")
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
            self._loaded[domain] = self.program.load_method(self.methods[domain])
        return self._loaded[domain]

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

            self._sessions[domain] = ort.InferenceSession(str(self.paths[domain]),
                                                          providers=["CPUExecutionProvider"])
        return self._sessions[domain]

    def __call__(self, domain: str, x: np.ndarray) -> np.ndarray:
        sess = self.session(domain)
        return sess.run(None, {sess.get_inputs()[0].name: np.ascontiguousarray(x, dtype=np.float32)})[0]
