"""What the multi-method .pte saves by storing shared weights once, measured without lowering extra programs.

Why not lower one single-method program per domain and compare file sizes: XNNPACK lowering costs 20-30 s per
program on 2 CPU cores, so ten extra programs were most of an export, thrown away after weighing them. The lowered
combined program already holds the answer: every XNNPACK delegate lists the constant blobs it uses (named data,
keyed by the sha256 of their bytes), and the program stores each distinct blob once. So

    saved = sum over methods of the constant bytes each method uses - constant bytes stored once

which is what separate files would repeat in constants. Separate files would also repeat their per-file overhead
(header, delegate graphs): `export.measure_sharing` lowers them to measure that too (benchmarks do).
"""

from __future__ import annotations

import hashlib
from typing import Optional

import torch

from mpnas.models.multipath import MultiPathNet

BY_TABLES = "constant_tables"
BY_PROGRAMS = "single_method_programs"
HOW = {
    BY_TABLES: "from the combined program's per-method constant tables: the constant bytes each method uses, summed "
               "over methods, minus the bytes the file stores once (separate files would also repeat per-file "
               "overhead, not counted here)",
    BY_PROGRAMS: "by lowering one single-method program per domain in memory and comparing file sizes (not kept)",
}


def _blob(buffer: object) -> bytes:
    return buffer if isinstance(buffer, (bytes, bytearray)) else buffer.to_bytes()  # CordBuffer: bytes or file-backed


def constant_tables(edge: object) -> dict[str, dict[str, int]]:
    """Method name -> {sha256 of a constant's bytes: its size} for every constant the method uses: the named data
    of its delegates and the constants left outside them. `edge` is a lowered `EdgeProgramManager`."""
    from executorch.exir.lowered_backend_module import LoweredBackendModule

    tables: dict[str, dict[str, int]] = {}
    for name in sorted(edge.methods):
        program = edge.exported_program(name)
        table: dict[str, int] = {}
        for module in program.graph_module.modules():
            store = module.named_data_store_output if isinstance(module, LoweredBackendModule) else None
            if store is None:
                continue
            for entry in store.pte_data.values():
                blob = _blob(store.buffers[entry.buffer_index])
                table[hashlib.sha256(blob).hexdigest()] = len(blob)
        for value in list(program.state_dict.values()) + list(program.constants.values()):
            if isinstance(value, torch.Tensor):
                blob = value.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
                table[hashlib.sha256(blob).hexdigest()] = len(blob)
        tables[name] = table
    return tables


def table_sharing(edge: object, methods: dict[str, str]) -> dict:
    """Per-domain constant bytes, bytes stored once and the saving of one lowered multi-method program.
    `methods` maps domain -> method name."""
    tables = constant_tables(edge)
    per_domain = {d: sum(tables[m].values()) for d, m in methods.items()}
    unique: dict[str, int] = {}
    for m in methods.values():
        unique.update(tables[m])
    return {"method_constant_bytes": per_domain, "unique_constant_bytes": sum(unique.values()),
            "saved_bytes": sum(per_domain.values()) - sum(unique.values())}


def shared_weight_bytes(model: MultiPathNet) -> int:
    """fp32 bytes that storing shared parameters once saves over one copy per domain path: sum over parameters of
    (number of domain paths using it - 1) x its bytes. The .pte's measured saving should be close to this."""
    users: dict[int, list] = {}
    for d in model.domains:
        for p in model.domain_module(d).parameters():
            users.setdefault(id(p), [p, 0])[1] += 1
    return sum((n - 1) * p.numel() * 4 for p, n in users.values())


def sharing_report(combined_bytes: int, tables: dict, shared_weights: int,
                   single_bytes: Optional[dict[str, int]] = None, int8_tables: Optional[dict] = None) -> dict:
    """The report's `sharing` section. The saving comes from the single-method files when they were measured
    (`single_bytes`, domain -> .pte bytes), else from the constant tables; `measured_by` and `how` say which."""
    by = BY_PROGRAMS if single_bytes else BY_TABLES
    out = {"measured_by": by, "how": HOW[by], "combined_pte_bytes": combined_bytes,
           "shared_weight_bytes": shared_weights, "constant_tables": tables}
    if single_bytes:
        total = sum(single_bytes.values())
        out.update({"single_method_pte_bytes": dict(single_bytes), "sum_single_bytes": total,
                    "combined_over_sum": combined_bytes / total, "saved_bytes": total - combined_bytes,
                    "single_method_files": "built in memory to measure, not kept"})
    else:
        out["saved_bytes"] = tables["saved_bytes"]
    out["separate_bytes"] = combined_bytes + out["saved_bytes"]
    out["combined_over_separate"] = combined_bytes / out["separate_bytes"]
    if int8_tables is not None:
        out["int8_constant_tables"] = int8_tables
    return out
