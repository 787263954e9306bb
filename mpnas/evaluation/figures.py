"""Figures of a merged model: its architecture (paths through the node grid), the Jaccard heat-map, and the per-domain
loss weights over training. matplotlib with the Agg backend, written atomically as PNG."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.patches import FancyBboxPatch, Patch  # noqa: E402

from mpnas.evaluation.added import added_nodes, added_records  # noqa: E402
from mpnas.evaluation.comparison import save_figure  # noqa: E402
from mpnas.models.multipath import MultiPathNet  # noqa: E402

SHARED_FILL, EXCLUSIVE_FILL = "#4a4a4a", "#d9d9d9"
ADDED_HATCH = "////"  # nodes created by `mpnas add-domain`, edged in the colour of the domain they were added for


def _save(fig: plt.Figure, path: str | Path) -> Path:
    return save_figure(fig, path, dpi=130, bbox_inches="tight")


def domain_colours(domains: list[str]) -> dict[str, tuple]:
    cmap = plt.get_cmap("tab10" if len(domains) <= 10 else "tab20")
    return {d: cmap(i % cmap.N) for i, d in enumerate(domains)}


def _short(block: str) -> str:
    return block.replace("ir_", "").replace("_", " ")


def architecture_figure(model: MultiPathNet, path: str | Path, title: Optional[str] = None) -> Path:
    """Layers as columns, the blocks used at each layer as boxes (dark = shared by 2+ domains, light = exclusive),
    each domain's path a coloured line through its boxes; a skipped layer passes through the 'skip' row. Nodes that
    `mpnas add-domain` created are hatched and edged in their domain's colour (the domain's legend entry says added)."""
    users = model.node_users()
    added = added_nodes(model.meta)
    added_domains = {r["domain"] for r in added_records(model.meta)}
    n_layers = len(model.space.layers)
    rows: dict[str, float] = {}
    max_rows = 1
    for li in range(n_layers):
        keys = sorted(k for k, (l, _) in model.node_specs.items() if l == li)
        for r, k in enumerate(keys):
            rows[k] = float(r)
        max_rows = max(max_rows, len(keys))
    has_skip = any(c.is_zero for g in model.genotypes.values() for c in g.choices)
    skip_y = -1.0
    colours = domain_colours(model.domains)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.05 * n_layers + 2), max(2.8, 0.65 * (max_rows + has_skip) + 1.6)))
    n = len(model.domains)
    for i, d in enumerate(model.domains):
        off = (i - (n - 1) / 2) * min(0.06, 0.5 / max(n, 1))
        ys = [rows[k] if k is not None else skip_y for k in model.paths[d]]
        ax.plot(range(n_layers), [y + off for y in ys], "-", color=colours[d], lw=1.8, alpha=0.9, zorder=1,
                label=f"{d} (added)" if d in added_domains else d)
    _draw_nodes(ax, model, rows, users, added, colours)
    if has_skip:
        for li, layer in enumerate(model.space.layers):
            if layer.allow_zero:
                ax.text(li, skip_y, "skip", ha="center", va="center", fontsize=6, color="#666666", zorder=3,
                        bbox=dict(boxstyle="round,pad=0.2", fc="white", ec="#bbbbbb", lw=0.5))
    ax.set_xticks(range(n_layers))
    ax.set_xticklabels([layer.name for layer in model.space.layers], rotation=45, ha="right", fontsize=7)
    ax.set_yticks([])
    ax.set_xlim(-0.6, n_layers - 0.4)
    ax.set_ylim(skip_y - 0.6 if has_skip else -0.6, max_rows - 0.4)
    ax.invert_yaxis()
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    handles, _ = ax.get_legend_handles_labels()
    handles += [Patch(fc=SHARED_FILL, ec="black", label="shared node"),
                Patch(fc=EXCLUSIVE_FILL, ec="black", label="exclusive node")]
    if added:
        handles.append(Patch(fc=EXCLUSIVE_FILL, ec="black", hatch=ADDED_HATCH, label="added node (add-domain)"))
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=7, frameon=False)
    ax.set_title(title or f"Merged multi-path model: {len(users)} nodes, "
                          f"{sum(len(v) >= 2 for v in users.values())} shared"
                          + (f", {len(added)} added" if added else ""), fontsize=9)
    return _save(fig, path)


def _draw_nodes(ax: plt.Axes, model: MultiPathNet, rows: dict[str, float], users: dict[str, list[str]],
                added: dict[str, str], colours: dict[str, tuple]) -> None:
    """One box per node; an added node is hatched, with a thick edge in the colour of the domain it was added for."""
    for key, (li, choice) in model.node_specs.items():
        shared = len(users[key]) >= 2
        y = rows[key]
        by = added.get(key)
        ax.add_patch(FancyBboxPatch((li - 0.4, y - 0.25), 0.8, 0.5, boxstyle="round,pad=0.02",
                                    fc=SHARED_FILL if shared else EXCLUSIVE_FILL,
                                    ec=colours.get(by, "black") if by else "black", lw=2.0 if by else 0.6,
                                    hatch=ADDED_HATCH if by else None, zorder=2))
        ax.text(li, y, _short(str(choice)), ha="center", va="center", fontsize=6, zorder=3,
                color="white" if shared else "black",
                bbox=dict(boxstyle="round,pad=0.1", fc=EXCLUSIVE_FILL, ec="none", lw=0) if by and not shared else None)


def jaccard_figure(jac: dict, path: str | Path, title: str = "Path similarity (Jaccard over non-zero nodes)") -> Path:
    names, m = jac["domains"], jac["matrix"]
    size = max(3.5, 0.55 * len(names) + 1.5)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    im = ax.imshow(m, vmin=0, vmax=1, cmap="viridis")
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=45, ha="right", fontsize=7)
    ax.set_yticks(range(len(names)))
    ax.set_yticklabels(names, fontsize=7)
    for i in range(len(names)):
        for j in range(len(names)):
            ax.text(j, i, f"{m[i][j]:.2f}", ha="center", va="center", fontsize=6,
                    color="black" if m[i][j] > 0.6 else "white")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    ax.set_title(title, fontsize=9)
    return _save(fig, path)


def weights_figure(history: pd.DataFrame, domains: list[str], path: str | Path) -> Path:
    """Per-domain loss weights (and training-batch accuracy) over the training steps."""
    colours = domain_colours(domains)
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.2))
    for d in domains:
        if f"weight/{d}" in history:
            a1.plot(history["step"], history[f"weight/{d}"], color=colours[d], lw=1, label=d)
        if f"train_acc/{d}" in history:
            a2.plot(history["step"], history[f"train_acc/{d}"].rolling(20, min_periods=1).mean(), color=colours[d],
                    lw=1)
    a1.set_title("loss weight per domain", fontsize=9)
    a2.set_title("training-batch top-1 (rolling mean of 20 steps)", fontsize=9)
    for a in (a1, a2):
        a.set_xlabel("step", fontsize=8)
        a.tick_params(labelsize=7)
    a1.legend(fontsize=6, ncol=2, frameon=False)
    return _save(fig, path)
