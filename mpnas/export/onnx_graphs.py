"""One ONNX graph per domain, and onnxruntime static int8 quantization of it.

Why one graph per domain rather than one graph with every head: a domain's path and its batch-norm statistics are
constants of the program, so each graph is exactly the network an app for that domain runs; an all-domains graph
would load and (depending on the runtime) compute paths the app never asks for. ONNX has no multi-entry-point
container, so the sharing lives in the .pte; the ONNX files are for runtimes other than ExecuTorch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np
import torch
from torch import nn

INPUT_NAME = "input"
OUTPUT_NAME = "logits"


def export_onnx(module: nn.Module, example: torch.Tensor, path: Path, opset: int) -> Path:
    """Export with a dynamic batch axis. The TorchScript-based exporter is used: it matches eager to ~1e-8 here and
    takes well under a second, where the dynamo exporter takes several seconds per graph.

    What is reused across formats: the per-domain module (`programs.domain_program`, built once per domain), and the
    fp32 ONNX graph, which `quantize_onnx` quantizes. The torch.export program lowered to the .pte is not reused here:
    only the dynamo exporter accepts it, and that costs more than this whole export (~0.1 s per graph)."""
    with torch.no_grad():
        torch.onnx.export(module, (example,), str(path), dynamo=False, opset_version=opset,
                          input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                          dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}})
    import onnx

    onnx.checker.check_model(str(path))
    return path


class _Reader:
    """onnxruntime CalibrationDataReader over a domain's calibration images, one image per call."""

    def __init__(self, batches: Iterable[np.ndarray]):
        self._rows = iter([b[i:i + 1] for b in batches for i in range(len(b))])

    def get_next(self):
        row = next(self._rows, None)
        return None if row is None else {INPUT_NAME: np.ascontiguousarray(row, dtype=np.float32)}


def quantize_onnx(src: Path, dst: Path, calibration: Iterable[np.ndarray]) -> Path:
    """Static QDQ int8 quantization (per-channel weights, min-max activation ranges from the calibration images)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(_Reader, CalibrationDataReader):
        pass

    quantize_static(str(src), str(dst), Reader(calibration), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    return dst
