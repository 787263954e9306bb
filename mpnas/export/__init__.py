"""Mobile export: one ExecuTorch .pte with a method per domain over shared weights, per-domain ONNX graphs, int8
variants, parity and latency against eager PyTorch (`export_model`), and a small inference API (`Predictor`)."""

from mpnas.export.exporter import export_model
from mpnas.export.predict import Predictor

__all__ = ["export_model", "Predictor"]
