"""The paper's comparison table from several methods' metrics.json on the same data.

Adds what only makes sense across methods: a decathlon score whose E_max is 2x a reference method's test error per
domain (by default the independent-NAS bundle, as for the mini benchmarks of docs/data.md), parameter and FLOPs
ratios to the single-backbone model, the paper's claims as checkable targets, and an accuracy-vs-cost figure.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from mpnas.evaluation.metrics import decathlon_score, reference_e_max  # noqa: E402

REFERENCE = "independent_nas"
BACKBONE = "single_path_multi_head"


def _ratio(a: Optional[float], b: Optional[float]) -> Optional[float]:
    return None if a is None or not b else a / b


def compare_methods(methods: dict[str, dict], reference: str = REFERENCE, backbone: str = BACKBONE) -> dict[str, Any]:
    """Summary rows per method and the paper's targets (None where a method needed for a target is absent)."""
    domains = next(iter(methods.values()))["domains"].keys() if methods else []
    domains = list(domains)
    e_max = None
    if reference in methods:
        try:
            e_max = reference_e_max(methods[reference], domains, f"method {reference}")
        except ValueError:
            e_max = None
    base = methods.get(backbone, {})
    rows: dict[str, dict[str, Any]] = {}
    for name, m in methods.items():
        acc = {d: m["domains"][d].get("top1_test") for d in domains}
        score = decathlon_score(acc, e_max)[0] if e_max else None
        rows[name] = {
            "mean_top1_test": m.get("mean_top1_test"), "mean_top1_val": m.get("mean_top1_val"),
            "top1_test": acc, "decathlon_score_vs_reference": score,
            "params_total": m.get("params_total"), "flops_sum_paths": m.get("flops_sum_paths"),
            "flops_union": m.get("flops_union"),
            "params_ratio_to_backbone": _ratio(m.get("params_total"), base.get("params_total")),
            "flops_sum_ratio_to_backbone": _ratio(m.get("flops_sum_paths"), base.get("flops_sum_paths")),
            "jaccard_mean": m.get("jaccard_mean_off_diagonal"),
        }
    return {"domains": domains, "reference": reference, "backbone": backbone, "rows": rows,
            "targets": paper_targets(rows)}


def paper_targets(rows: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The claims of MPNAS (mean top-1 >= independent NAS with <=30% of its params and <=70% of its FLOPs, above both
    multi-head baselines, ABDP >= uniform) evaluated on these rows."""
    def get(method: str, key: str) -> Optional[float]:
        return rows.get(method, {}).get(key)

    def check(name: str, lhs: Optional[float], op: str, rhs: Optional[float]) -> dict[str, Any]:
        ok = None if lhs is None or rhs is None else (lhs >= rhs if op == ">=" else lhs > rhs if op == ">"
                                                      else lhs <= rhs)
        return {"target": name, "value": lhs, "bound": rhs, "op": op, "met": ok}

    ind_params, ind_flops = get(REFERENCE, "params_total"), get(REFERENCE, "flops_sum_paths")
    return [
        check("mpnas mean top-1 >= independent_nas", get("mpnas", "mean_top1_test"), ">=",
              get(REFERENCE, "mean_top1_test")),
        check("mpnas params <= 30% of independent_nas", get("mpnas", "params_total"), "<=",
              None if ind_params is None else 0.3 * ind_params),
        check("mpnas FLOPs (sum of paths) <= 70% of independent_nas", get("mpnas", "flops_sum_paths"), "<=",
              None if ind_flops is None else 0.7 * ind_flops),
        check("mpnas mean top-1 > multi_head_nas", get("mpnas", "mean_top1_test"), ">",
              get("multi_head_nas", "mean_top1_test")),
        check("mpnas mean top-1 > single_path_multi_head", get("mpnas", "mean_top1_test"), ">",
              get(BACKBONE, "mean_top1_test")),
        check("ABDP (mpnas) mean top-1 >= uniform (mpnas_uniform)", get("mpnas", "mean_top1_test"), ">=",
              get("mpnas_uniform", "mean_top1_test")),
    ]


def _pct(v: Optional[float]) -> str:
    return "n/a" if v is None else f"{100 * v:.1f}"


def _num(v: Optional[float], unit: float = 1.0, digits: int = 2) -> str:
    return "n/a" if v is None else f"{v / unit:,.{digits}f}"


def comparison_markdown(summary: dict[str, Any]) -> str:
    rows, domains = summary["rows"], summary["domains"]
    out = ["## Summary", "",
           f"Decathlon score: E_max = 2 x the test error of `{summary['reference']}` per domain; ratios are to "
           f"`{summary['backbone']}`.", "",
           "| method | mean top-1 test % | mean top-1 val % | decathlon score | params (M) | params ratio | "
           "FLOPs sum of paths (M) | FLOPs ratio | FLOPs union (M) | Jaccard mean |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, r in rows.items():
        out.append(f"| {name} | {_pct(r['mean_top1_test'])} | {_pct(r['mean_top1_val'])} | "
                   f"{_num(r['decathlon_score_vs_reference'], 1, 0)} | {_num(r['params_total'], 1e6)} | "
                   f"{_num(r['params_ratio_to_backbone'])} | {_num(r['flops_sum_paths'], 1e6, 1)} | "
                   f"{_num(r['flops_sum_ratio_to_backbone'])} | {_num(r['flops_union'], 1e6, 1)} | "
                   f"{_num(r['jaccard_mean'])} |")
    out += ["", "## Test top-1 per domain (%)", "",
            "| method | " + " | ".join(domains) + " |", "|---|" + "---:|" * len(domains)]
    for name, r in rows.items():
        out.append(f"| {name} | " + " | ".join(_pct(r["top1_test"][d]) for d in domains) + " |")
    out += ["", "## Targets (the paper's claims)", "", "| target | value | bound | met |", "|---|---:|---:|---|"]
    for t in summary["targets"]:
        big = t["value"] is not None and abs(t["value"]) > 10
        fmt = (lambda v: _num(v, 1e6)) if big else _pct
        met = "n/a" if t["met"] is None else ("yes" if t["met"] else "**no**")
        out.append(f"| {t['target']} | {fmt(t['value'])}{'M' if big else ''} | {fmt(t['bound'])}{'M' if big else ''} "
                   f"| {met} |")
    return "\n".join(out) + "\n"


def accuracy_cost_figure(summary: dict[str, Any], path: str | Path) -> Path:
    """Mean test top-1 against total parameters and against FLOPs (sum of paths), one point per method."""
    rows = {n: r for n, r in summary["rows"].items() if r["mean_top1_test"] is not None}
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, label in ((axes[0], "params_total", "parameters (M)"),
                           (axes[1], "flops_sum_paths", "FLOPs, sum over domain paths (M)")):
        for name, r in rows.items():
            if r[key] is None:
                continue
            x, y = r[key] / 1e6, 100 * r["mean_top1_test"]
            ax.scatter([x], [y], s=60, marker="*" if name == "mpnas" else "o")
            ax.annotate(name, (x, y), textcoords="offset points", xytext=(5, 4), fontsize=8)
        ax.set_xlabel(label)
        ax.set_ylabel("mean test top-1 (%)")
        ax.grid(alpha=0.3)
    fig.suptitle("Accuracy against model cost")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    tmp.replace(path)
    return path
