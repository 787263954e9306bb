"""Which domains share which nodes of a merged model: the sharing report (JSON + markdown) and the Jaccard matrix.

Jaccard similarity is over non-zero nodes (docs/method.md section 8.3): counting "both skip layer l" as a shared
node would inflate similarity.
"""

from __future__ import annotations

from mpnas.models.multipath import MultiPathNet
from mpnas.space import jaccard


def sharing_report(model: MultiPathNet) -> dict:
    """Per layer: block -> domains using it, and the skipping domains; shared/exclusive node counts."""
    users = model.node_users()
    layers = []
    for layer in model.space.layers:
        blocks: dict[str, list[str]] = {}
        for key, (li, choice) in model.node_specs.items():
            if li == layer.index:
                blocks.setdefault(str(choice), []).extend(users[key])
        skipped = [d for d in model.domains if model.genotypes[d].choices[layer.index].is_zero]
        top = max((len(v) for v in blocks.values()), default=0)
        layers.append({"layer": layer.name, "index": layer.index, "blocks": blocks, "skipped_by": skipped,
                       "nodes": sum(1 for _, (li, _) in model.node_specs.items() if li == layer.index),
                       "top_block_fraction": top / len(model.domains)})
    shared = sum(1 for v in users.values() if len(v) >= 2)
    return {"domains": list(model.domains), "share_nodes": model.share_nodes, "nodes_total": len(users),
            "nodes_shared": shared, "nodes_exclusive": len(users) - shared,
            "heads": len(model.heads), "layers": layers}


def sharing_markdown(report: dict) -> str:
    """A readable table: one row per layer, one cell per used block with the domains on it."""
    lines = [f"Nodes: {report['nodes_total']} distinct non-zero nodes, {report['nodes_shared']} shared "
             f"(used by 2 or more domains), {report['nodes_exclusive']} exclusive; "
             f"{'one shared head' if report['heads'] == 1 else str(report['heads']) + ' heads (no sharing)'}.", "",
             "| layer | nodes | blocks (domains) | skipped by |", "|---|---:|---|---|"]
    for row in report["layers"]:
        cells = "; ".join(f"`{b}` ({', '.join(ds)})" for b, ds in sorted(row["blocks"].items()))
        lines.append(f"| {row['layer']} | {row['nodes']} | {cells or '-'} | {', '.join(row['skipped_by']) or '-'} |")
    return "\n".join(lines) + "\n"


def jaccard_matrix(model: MultiPathNet, include_zero: bool = False) -> dict:
    """{"domains": [...], "matrix": [[J(d_i, d_j)]]}, symmetric with a unit diagonal."""
    names = list(model.domains)
    g = model.genotypes
    matrix = [[1.0 if a == b else jaccard(g[a], g[b], include_zero) for b in names] for a in names]
    return {"domains": names, "matrix": matrix}


def mean_off_diagonal(matrix: list[list[float]]) -> float | None:
    n = len(matrix)
    vals = [matrix[i][j] for i in range(n) for j in range(n) if i != j]
    return sum(vals) / len(vals) if vals else None
