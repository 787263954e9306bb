"""The trained model in MLflow's terms: one module from raw pixels to every domain's logits, an input example of real
images, a signature naming one output per domain, and the mobile export files that travel with it."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch import nn

EXAMPLE_IMAGES = 2  # > 1 so torch.export keeps the batch dimension dynamic


class EveryDomain(nn.Module):
    """`forward(x) -> {domain: logits}` for x a float32 RGB batch in [0, 1]: each domain normalises with its own
    mean/std (as the export manifest's preprocessing rule says) before its path runs."""

    def __init__(self, net: nn.Module, mean: dict[str, list[float]], std: dict[str, list[float]]):
        super().__init__()
        self.net = net.eval()
        self.domains = list(net.domains)
        self.register_buffer("mean", torch.tensor([mean[d] for d in self.domains]).view(-1, 1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([std[d] for d in self.domains]).view(-1, 1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {d: self.net((x - self.mean[i]) / self.std[i], d) for i, d in enumerate(self.domains)}


def _stats(net, dataset_path: str) -> tuple[dict, dict]:
    """Per-domain mean/std from architecture.json, else from the prepared data the model was trained on."""
    from mpnas.data.prepared import PreparedDataset

    info = net.meta.get("domains", {})
    ds = None
    mean, std = {}, {}
    for d in net.domains:
        if "mean" in info.get(d, {}) and "std" in info.get(d, {}):
            mean[d], std[d] = list(info[d]["mean"]), list(info[d]["std"])
        else:
            ds = ds or PreparedDataset(dataset_path)
            mean[d], std[d] = list(ds.info(d).mean), list(ds.info(d).std)
    return mean, std


def every_domain_model(model_dir: str | Path, dataset_path: str):
    """(the loaded MultiPathNet, its EveryDomain wrapper) on the CPU in eval mode."""
    from mpnas.models.multipath import load_model

    net = load_model(model_dir, "cpu").eval()
    mean, std = _stats(net, dataset_path)
    return net, EveryDomain(net, mean, std).eval()


def input_example(net, dataset_path: str) -> np.ndarray:
    """EXAMPLE_IMAGES real val images of the first domain, centre-cropped to the input size, NCHW float32 in [0, 1]."""
    from mpnas.data.prepared import PreparedDataset

    ds = PreparedDataset(dataset_path)
    d = net.domains[0]
    split = "val" if ds.split_size(d, "val") >= EXAMPLE_IMAGES else "train"
    images = np.asarray(ds.images(d, split)[:EXAMPLE_IMAGES])
    crop = int(net.space.input_size)
    top = (images.shape[1] - crop) // 2
    images = images[:, top:top + crop, top:top + crop, :]
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2), dtype=np.float32) / 255.0


def signature(net, example: np.ndarray):
    """Input `image` (-1, 3, S, S) float32; one output per domain, named by the domain, (-1, classes) float32."""
    from mlflow.models import ModelSignature
    from mlflow.types.schema import Schema, TensorSpec

    inputs = Schema([TensorSpec(np.dtype("float32"), (-1, *example.shape[1:]), "image")])
    outputs = Schema([TensorSpec(np.dtype("float32"), (-1, int(net.num_classes[d])), d) for d in net.domains])
    return ModelSignature(inputs=inputs, outputs=outputs)


def export_files(export_dir: Optional[str | Path]) -> list[str]:
    """The .pte programs, ONNX graphs and manifest of the mobile export (none without an export)."""
    if export_dir is None:
        return []
    root = Path(export_dir)
    return [str(p) for p in sorted(root.rglob("*")) if p.is_file() and
            (p.suffix in (".pte", ".onnx") or p.name in ("manifest.json", "export_report.md"))]
