"""The paper's comparison table from several methods' metrics.json on the same data, over one or more seeds.

Adds what only makes sense across methods: a decathlon score whose E_max is 2x a reference method's test error per
domain (by default the independent-NAS bundle, as for the mini benchmarks of docs/data.md), parameter and FLOPs
ratios to the single-backbone model, the paper's claims as checkable targets, the reference every ABDP run steered by
(`run_weighting`, `abdp_references`), and an accuracy-vs-cost figure.
With several seeds (`aggregate_seeds`) every number is the mean over seeds and the mean top-1 and per-domain top-1
carry the sample standard deviation (n - 1; none for one seed): differences of 1-2 points are inside seed noise.
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Any, Optional

import matplotlib
import yaml

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from mpnas.evaluation.metrics import decathlon_score, reference_e_max  # noqa: E402
from mpnas.utils.io import atomic_write_bytes  # noqa: E402

REFERENCE = "independent_nas"
BACKBONE = "single_path_multi_head"


SHARED_DOMAIN_BN = "shared_domain_bn"
NULL_CONTROL = "mpnas_null"
REFERENCE_FILE = "abdp_reference.json"  # in a model dir: the ABDP reference it trained with (comparison pipeline)
# headline numbers of a metrics.json that are averaged over seeds
SEED_MEANS = ("mean_top1_test", "mean_top1_val", "decathlon_score", "params_total", "flops_sum_paths", "flops_union",
              "flops_mean_path", "jaccard_mean_off_diagonal")


def mean_std(values: list[Optional[float]]) -> tuple[Optional[float], Optional[float]]:
    """Mean and sample std (n - 1) of the known values; (None, None) if none, std None for a single value."""
    known = [float(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)
             and not math.isnan(float(v))]
    if not known:
        return None, None
    mean = sum(known) / len(known)
    if len(known) < 2:
        return mean, None
    return mean, math.sqrt(sum((v - mean) ** 2 for v in known) / (len(known) - 1))


def aggregate_seeds(runs: dict[int, dict]) -> dict[str, Any]:
    """One method's entry from its per-seed metrics.json ({seed: metrics}): seeds, mean and std of the mean top-1,
    per-domain means (and std), means of the other headline numbers, and every run in seed order under `runs`."""
    if not runs:
        raise ValueError("aggregate_seeds: no runs")
    seeds = sorted(runs)
    ordered = [runs[s] for s in seeds]
    out: dict[str, Any] = {"seeds": seeds, "method": ordered[0].get("method")}
    for key in SEED_MEANS:
        out[key] = mean_std([m.get(key) for m in ordered])[0]
    out["std_top1_test"] = mean_std([m.get("mean_top1_test") for m in ordered])[1]
    out["std_top1_val"] = mean_std([m.get("mean_top1_val") for m in ordered])[1]
    domains = list(ordered[0].get("domains", {}))
    out["domains"] = {}
    for d in domains:
        entry: dict[str, Any] = {}
        for key in ("top1_test", "top1_val"):
            mean, std = mean_std([m.get("domains", {}).get(d, {}).get(key) for m in ordered])
            entry[key], entry[f"{key}_std"] = mean, std
        entry["num_classes"] = ordered[0]["domains"][d].get("num_classes")
        out["domains"][d] = entry
    out["runs"] = ordered
    return out


def run_weighting(model_dir: str | Path) -> dict[str, Any]:
    """The loss weighting a trained model dir used (its train_config.yaml) and, for abdp, its reference: the file,
    and where the numbers came from when the file says (the comparison pipeline's mpnas_uniform reference does)."""
    cfg_file = Path(model_dir) / "train_config.yaml"
    if not cfg_file.is_file():
        return {"name": None, "reference_metrics": None}
    lw = ((yaml.safe_load(cfg_file.read_text()) or {}).get("train") or {}).get("loss_weighting") or {}
    ref = (lw.get("abdp") or {}).get("reference_metrics")
    out: dict[str, Any] = {"name": lw.get("name"), "reference_metrics": ref}
    copy = Path(model_dir) / REFERENCE_FILE  # the model's own copy first: the workspace file may be elsewhere
    source = copy if copy.is_file() else Path(ref) if ref else None
    if source is not None and source.is_file():
        doc = json.loads(source.read_text())
        final = (doc.get("train") or {}).get("train_top1_final") or {}
        out |= {"reference_method": doc.get("method"), "reference_seed": doc.get("seed"),
                "reference_model_hash": doc.get("model_hash"),
                "attainable_from": "train_top1_final" if final and set(doc.get("domains", {})) <= set(final)
                else "top1_val"}
    return out


def reference_label(weighting: Optional[dict[str, Any]]) -> str:
    """One line for the report: which reference an ABDP run used."""
    if not weighting or not weighting.get("reference_metrics"):
        return "none (every domain taken as fully attainable)"
    if weighting.get("reference_method"):
        seed = weighting.get("reference_seed")
        return (f"{weighting['reference_method']}{'' if seed is None else f' seed {seed}'} "
                f"({weighting.get('attainable_from', 'top1_val')})")
    return str(weighting["reference_metrics"])


def abdp_references(methods: dict[str, dict]) -> dict[str, dict[str, str]]:
    """{method: {seed: reference label}} over the runs that trained with abdp (runs carry `weighting`)."""
    out: dict[str, dict[str, str]] = {}
    for name, entry in methods.items():
        for seed, run in zip(entry.get("seeds", []), entry.get("runs", [])):
            w = run.get("weighting")
            if isinstance(w, dict) and w.get("name") == "abdp":
                out.setdefault(name, {})[str(seed)] = reference_label(w)
    return out


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
            "seeds": m.get("seeds"), "mean_top1_test": m.get("mean_top1_test"),
            "std_top1_test": m.get("std_top1_test"), "mean_top1_val": m.get("mean_top1_val"),
            "top1_test": acc, "top1_test_std": {d: m["domains"][d].get("top1_test_std") for d in domains},
            "decathlon_score_vs_reference": score,
            "params_total": m.get("params_total"), "flops_sum_paths": m.get("flops_sum_paths"),
            "flops_union": m.get("flops_union"),
            "params_ratio_to_backbone": _ratio(m.get("params_total"), base.get("params_total")),
            "flops_sum_ratio_to_backbone": _ratio(m.get("flops_sum_paths"), base.get("flops_sum_paths")),
            "jaccard_mean": m.get("jaccard_mean_off_diagonal"),
        }
    return {"domains": domains, "reference": reference, "backbone": backbone, "rows": rows,
            "targets": paper_targets(rows), "abdp_references": abdp_references(methods),
            "paired": paired_differences(methods)}


def paired_differences(methods: dict[str, dict], base: str = "mpnas") -> dict[str, dict[str, Any]]:
    """{other: {"per_seed", "mean", "std", "wins"}}: `base` minus each other method's mean test top-1, seed by seed.

    Runs of one seed share the data order and initialisation seed, so the seed-to-seed swing (several points per
    domain) largely cancels in the difference: a consistent sign over seeds is stronger evidence than two means whose
    stds overlap. Only the seeds both methods ran count."""
    def by_seed(m: dict) -> dict[int, Optional[float]]:  # an aggregate_seeds entry; {} for a single metrics.json
        return {s: r.get("mean_top1_test") for s, r in zip(m.get("seeds") or [], m.get("runs") or [])}

    if base not in methods:
        return {}
    mine = by_seed(methods[base])
    out: dict[str, dict[str, Any]] = {}
    for name, m in methods.items():
        if name == base:
            continue
        theirs = by_seed(m)
        seeds = [s for s in mine if s in theirs and mine[s] is not None and theirs[s] is not None]
        diffs = {s: mine[s] - theirs[s] for s in seeds}
        mean, std = mean_std(list(diffs.values()))
        out[name] = {"base": base, "per_seed": diffs, "mean": mean, "std": std,
                     "wins": sum(d > 0 for d in diffs.values()), "seeds": len(diffs)}
    return out


def paper_targets(rows: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The claims of MPNAS (mean top-1 >= independent NAS with <=30% of its params and <=70% of its FLOPs, above both
    multi-head baselines, ABDP >= uniform) evaluated on these rows, plus two of ours: MPNAS at least as accurate as
    the shared backbone with per-domain BN within its parameters + 10% (issue 17), and above the no-signal control
    search (its architectures must come from the reward, not from the search's mechanics)."""
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
        check(f"mpnas mean top-1 >= {SHARED_DOMAIN_BN}", get("mpnas", "mean_top1_test"), ">=",
              get(SHARED_DOMAIN_BN, "mean_top1_test")),
        check(f"mpnas params <= 110% of {SHARED_DOMAIN_BN}", get("mpnas", "params_total"), "<=",
              None if get(SHARED_DOMAIN_BN, "params_total") is None else 1.1 * get(SHARED_DOMAIN_BN, "params_total")),
        check(f"mpnas mean top-1 > {NULL_CONTROL} (no-signal search)", get("mpnas", "mean_top1_test"), ">",
              get(NULL_CONTROL, "mean_top1_test")),
    ]


def _pct(v: Optional[float]) -> str:
    return "n/a" if v is None else f"{100 * v:.1f}"


def _num(v: Optional[float], unit: float = 1.0, digits: int = 2) -> str:
    return "n/a" if v is None else f"{v / unit:,.{digits}f}"


def _pct_std(v: Optional[float], std: Optional[float]) -> str:
    """`41.2 ± 0.8` (percent), or just the mean where there is no std (one seed)."""
    return _pct(v) if std is None or v is None else f"{100 * v:.1f} ± {100 * std:.1f}"


def _seeds_note(rows: dict[str, dict[str, Any]]) -> str:
    seeds = {tuple(r["seeds"]) for r in rows.values() if r.get("seeds")}
    if not seeds:
        return ""
    listed = "; ".join(", ".join(str(s) for s in t) for t in sorted(seeds))
    return (f"Seeds: {listed}. Values are means over seeds; ± is the sample standard deviation over seeds; "
            f"parameters and FLOPs of searched methods are means too (each seed searches its own architecture).")


def comparison_markdown(summary: dict[str, Any]) -> str:
    rows, domains = summary["rows"], summary["domains"]
    out = ["## Summary", "",
           f"Decathlon score: E_max = 2 x the test error of `{summary['reference']}` per domain; ratios are to "
           f"`{summary['backbone']}`. {_seeds_note(rows)}".rstrip(), "",
           "| method | mean top-1 test % | mean top-1 val % | decathlon score | params (M) | params ratio | "
           "FLOPs sum of paths (M) | FLOPs ratio | FLOPs union (M) | Jaccard mean |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, r in rows.items():
        out.append(f"| {name} | {_pct_std(r['mean_top1_test'], r.get('std_top1_test'))} | {_pct(r['mean_top1_val'])} | "
                   f"{_num(r['decathlon_score_vs_reference'], 1, 0)} | {_num(r['params_total'], 1e6)} | "
                   f"{_num(r['params_ratio_to_backbone'])} | {_num(r['flops_sum_paths'], 1e6, 1)} | "
                   f"{_num(r['flops_sum_ratio_to_backbone'])} | {_num(r['flops_union'], 1e6, 1)} | "
                   f"{_num(r['jaccard_mean'])} |")
    out += ["", "## Test top-1 per domain (%)", "",
            "| method | " + " | ".join(domains) + " |", "|---|" + "---:|" * len(domains)]
    for name, r in rows.items():
        std = r.get("top1_test_std") or {}
        out.append(f"| {name} | " + " | ".join(_pct_std(r["top1_test"][d], std.get(d)) for d in domains) + " |")
    out += ["", "## Targets (the paper's claims)", "", "| target | value | bound | met |", "|---|---:|---:|---|"]
    for t in summary["targets"]:
        big = t["value"] is not None and abs(t["value"]) > 10
        fmt = (lambda v: _num(v, 1e6)) if big else _pct
        met = "n/a" if t["met"] is None else ("yes" if t["met"] else "**no**")
        out.append(f"| {t['target']} | {fmt(t['value'])}{'M' if big else ''} | {fmt(t['bound'])}{'M' if big else ''} "
                   f"| {met} |")
    return "\n".join(out + _paired_markdown(summary.get("paired") or {})
                     + _references_markdown(summary.get("abdp_references") or {})) + "\n"


def _paired_markdown(paired: dict[str, dict[str, Any]]) -> list[str]:
    if not paired or all(p["seeds"] < 2 for p in paired.values()):
        return []
    base = next(iter(paired.values()))["base"]
    out = ["", f"## Paired differences: {base} minus each method, seed by seed (points of mean test top-1)", "",
           "| method | per seed | mean ± std | seeds where " + base + " is ahead |", "|---|---|---:|---:|"]
    for name, p in paired.items():
        per_seed = ", ".join(f"{100 * d:+.1f}" for d in p["per_seed"].values())
        mean = "n/a" if p["mean"] is None else (f"{100 * p['mean']:+.1f}" + ("" if p["std"] is None
                                                                            else f" ± {100 * p['std']:.1f}"))
        out.append(f"| {name} | {per_seed} | {mean} | {p['wins']} of {p['seeds']} |")
    return out


def _references_markdown(refs: dict[str, dict[str, str]]) -> list[str]:
    if not refs:
        return []
    out = ["", "## ABDP reference per run", "",
           "The attainable accuracy each ABDP training steered by (docs/weighting.md).", "",
           "| method | seed | reference |", "|---|---:|---|"]
    return out + [f"| {name} | {seed} | {label} |" for name, by_seed in refs.items() for seed, label in by_seed.items()]


def save_figure(fig: plt.Figure, path: str | Path, **savefig: Any) -> Path:
    """Write `fig` as a PNG to a temp name beside `path`, rename it into place, and close the figure."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", **savefig)
    plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue())


def accuracy_cost_figure(summary: dict[str, Any], path: str | Path) -> Path:
    """Mean test top-1 against total parameters and against FLOPs (sum of paths), one point per method (with the
    seed standard deviation as an error bar)."""
    rows = {n: r for n, r in summary["rows"].items() if r["mean_top1_test"] is not None}
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, label in ((axes[0], "params_total", "parameters (M)"),
                           (axes[1], "flops_sum_paths", "FLOPs, sum over domain paths (M)")):
        for name, r in rows.items():
            if r[key] is None:
                continue
            x, y = r[key] / 1e6, 100 * r["mean_top1_test"]
            ax.scatter([x], [y], s=60, marker="*" if name == "mpnas" else "o")
            if r.get("std_top1_test"):  # seed spread of the mean top-1
                ax.errorbar([x], [y], yerr=[100 * r["std_top1_test"]], fmt="none", ecolor="grey", capsize=3)
            ax.annotate(name, (x, y), textcoords="offset points", xytext=(5, 4), fontsize=8)
        ax.set_xlabel(label)
        ax.set_ylabel("mean test top-1 (%)")
        ax.grid(alpha=0.3)
    fig.suptitle("Accuracy against model cost")
    fig.tight_layout()
    return save_figure(fig, path, dpi=120)


def merge_results(results: list[dict[str, Any]], sources: Optional[list[str]] = None) -> dict[str, Any]:
    """One comparison from several comparison.json results of the same data (for example one run per seed, run on
    different machines): every method's runs are regrouped by seed and aggregated again, exactly as one multi-seed
    run would. Refuses results of different data (content hash), or two runs of one method with the same seed."""
    sources = sources or [f"result {i}" for i in range(len(results))]
    if not results:
        raise ValueError("merge_results: nothing to merge")
    data = results[0].get("data")

    def identity(result: dict[str, Any]) -> Any:  # the content hash; paths and DVC's md5 differ between copies
        d = result.get("data")
        return d.get("content_hash", d) if isinstance(d, dict) else d

    runs: dict[str, dict[int, dict]] = {}
    for src, result in zip(sources, results):
        if identity(result) != identity(results[0]):
            raise ValueError(f"{src}: its data version differs from {sources[0]}'s; only results on the same "
                             f"prepared data can be merged")
        for name, entry in result["methods"].items():
            for seed, metrics in zip(entry["seeds"], entry["runs"]):
                if seed in runs.setdefault(name, {}):
                    raise ValueError(f"{src}: method {name!r} seed {seed} is already in an earlier result")
                runs[name][seed] = metrics
    table = {name: aggregate_seeds(by_seed) for name, by_seed in runs.items()}
    seeds = sorted({s for by_seed in runs.values() for s in by_seed})
    out = {"methods": table, "summary": compare_methods(table), "seeds": seeds, "data": data,
           "data_copies": [r.get("data") for r in results]}
    if len(results) == 1 and "val_curves" in results[0]:  # curves hold seed means only: kept from a single input
        out["val_curves"] = results[0]["val_curves"]
    return out
