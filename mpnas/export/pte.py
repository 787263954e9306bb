"""ExecuTorch programs lowered to XNNPACK: several named methods in one .pte, and PT2E int8 quantization.

`to_edge_transform_and_lower` takes a dict of method name -> ExportedProgram and serialises constants by content, so
weights that are byte-identical across methods (the shared nodes; see `programs.py`) are stored once.
"""

from __future__ import annotations

import torch
from torch import nn


def export_program(module: nn.Module, example: torch.Tensor) -> torch.export.ExportedProgram:
    with torch.no_grad():
        return torch.export.export(module, (example,))


def lower(programs: dict[str, torch.export.ExportedProgram]):
    """Lower named programs to one XNNPACK-delegated edge program (an `EdgeProgramManager`; its per-method constant
    tables are read by `sharing.constant_tables`, `to_pte_bytes` serialises it)."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    return to_edge_transform_and_lower(dict(programs), partitioner=[XnnpackPartitioner()])


def to_pte_bytes(edge) -> bytes:
    return bytes(edge.to_executorch().buffer)


def lower_to_pte(programs: dict[str, torch.export.ExportedProgram]) -> bytes:
    """Lower named programs to one XNNPACK-delegated ExecuTorch program and return the .pte bytes."""
    return to_pte_bytes(lower(programs))


def quantize_pt2e(module: nn.Module, example: torch.Tensor, calibration: torch.Tensor) -> torch.export.ExportedProgram:
    """Static int8 (per-channel symmetric weights, per-tensor activations) for XNNPACK, calibrated on real images.

    Calibration runs as one batch through a graph traced with a dynamic batch axis (the histogram observers cost
    about the same per call whatever the batch, so image-by-image calibration is ~N times slower); the converted
    module is then exported for the shape of `example`. Returns the program, ready for `lower_to_pte`."""
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
    calib = calibration if len(calibration) > 1 else calibration.repeat(2, 1, 1, 1)  # a dynamic axis needs >= 2
    dynamic = ({0: torch.export.Dim("batch", min=1, max=max(2, len(calib)))},)
    with torch.no_grad():
        prepared = prepare_pt2e(torch.export.export(module, (calib,), dynamic_shapes=dynamic).module(), quantizer)
        prepared(calib)
        converted = convert_pt2e(prepared)
        return torch.export.export(converted, (example,))
