"""Add a domain: hold-out study (issue 15's targets).

For every seed: (a) search and train MPNAS on every domain of the prepared data but the held-out one (library calls,
no ZenML), (b) add the held-out domain to that model with `mpnas.extend.add_domain`, (c) measure the grown model's
held-out test top-1, check bit for bit that the other domains' logits on *all* their test images equal the parent's,
count the added parameters against the parent's, and time (a) and (b): wall clock, and this process's CPU time
(the fair cost on a shared machine, where the wall clock also measures the other processes; run with
OMP_NUM_THREADS=1 so that CPU time is one core's). The held-out figure is compared with a
reference multi-domain run's figure for the same domain and seed (a JSON laid out as results/mini_real/
quick_studies.json: METHOD.seeds and METHOD.domains.DOMAIN.values, one value per seed).

Each stage is skipped when its output exists, and a seed whose OUT_DIR/seed<k>/result.json exists is not rerun, so an
interrupted study continues where it stopped. The result JSON (mean ± sample std over seeds plus per-seed values) is
written atomically after every seed.

    python -m benchmarks.add_domain_study -c configs/mini_real_quick.yaml --data data/prepared/mini_real \\
        --set train.loss_weighting.name=uniform --seeds 0 1 2 --reference results/mini_real/quick_studies.json \\
        --reference-method mpnas_tied --reference-runs runs/signal/real \\
        --study-dir runs/add_domain_study --out results/mini_real/add_domain_quick.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any, Callable, Optional

from benchmarks.summarize_studies import stats
from mpnas.cli._common import load_any_config
from mpnas.config import MpnasConfig
from mpnas.data.prepared import PreparedDataset
from mpnas.extend import add_domain
from mpnas.extend.run import old_domains_identical
from mpnas.models.multipath import load_model
from mpnas.nas.search import run_search
from mpnas.space import genotypes_from_json
from mpnas.training.trainer import train_model
from mpnas.utils.io import atomic_write_json, read_json

Log = Callable[[str], None]
TARGETS = {"top1_gap_points": 2.0, "added_params_ratio": 0.15, "wall_ratio": 0.25}


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.add_domain_study", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-c", "--config", help="mpnas config or pipeline run config (parameters.config); default: the "
                                           "built-in defaults")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="config override, repeatable (applied to both stages; data.domains is set by the study)")
    ap.add_argument("--data", required=True, help="prepared data directory holding every domain, the held-out one too")
    ap.add_argument("--held-out", default="gtsrb", help="the domain left out of (a) and added in (b) (default gtsrb)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds to run (default 0 1 2)")
    ap.add_argument("--study-dir", default="runs/add_domain_study",
                    help="per-seed stage outputs (seed<k>/{search,model,added,result.json}); stages resume from it")
    ap.add_argument("--out", required=True, help="result JSON to write (atomically, after every seed)")
    ap.add_argument("--reference", help="JSON with a multi-domain run's per-domain test top-1 per seed "
                                        "(quick_studies.json layout); without it no comparison is made")
    ap.add_argument("--reference-method", default="mpnas_tied",
                    help="the key of the reference method in --reference (default mpnas_tied)")
    ap.add_argument("--reference-runs", help="the reference method's run directory (seed<k>/search/summary.json and "
                                             "seed<k>/model/train_metrics.json) for its wall time; optional")
    ap.add_argument("--quiet", action="store_true", help="no per-step progress lines of the stages")
    return ap.parse_args(argv)


# ------------------------------------------------------------------------------------------------------ reference
def load_reference(path: str | Path, method: str, domain: str, seeds: list[int]) -> dict[int, float]:
    """{seed: the reference method's test top-1 on `domain`}; refuses a file that lacks a field or a seed."""
    doc = read_json(path, "pass the JSON of the reference study with --reference")
    if method not in doc:
        raise ValueError(f"{path}: no method {method!r} (it has {', '.join(k for k in doc if not k.startswith('_'))})"
                         f"; pass --reference-method")
    entry = doc[method]
    ref_seeds = entry.get("seeds") if isinstance(entry, dict) else None
    try:
        values = entry["domains"][domain]["values"]
    except (KeyError, TypeError):
        raise ValueError(f"{path}: no field {method}.domains.{domain}.values") from None
    if not isinstance(ref_seeds, list) or len(ref_seeds) != len(values):
        raise ValueError(f"{path}: field {method}.seeds must list one seed per value of "
                         f"{method}.domains.{domain}.values")
    per_seed = {int(s): float(v) for s, v in zip(ref_seeds, values)}
    missing = [s for s in seeds if s not in per_seed]
    if missing:
        raise ValueError(f"{path}: {method}.seeds is {ref_seeds}; it lacks seed(s) {missing} of --seeds")
    return per_seed


def reference_wall_s(runs: str | Path, seed: int) -> Optional[float]:
    """The reference run's search wall time plus its training time (steps / steps per second), or None if absent."""
    search, train = Path(runs) / f"seed{seed}" / "search" / "summary.json", Path(runs) / f"seed{seed}" / "model" / \
        "train_metrics.json"
    if not (search.is_file() and train.is_file()):
        return None
    s, t = read_json(search), read_json(train)
    if not t.get("steps_per_s"):
        return None
    return float(s["wall_time_s"]) + float(t["steps_done"]) / float(t["steps_per_s"])


# ------------------------------------------------------------------------------------------------------- stages
def seed_config(args: argparse.Namespace, seed: int, domains: Optional[list[str]]) -> MpnasConfig:
    sets = [*args.set, f"seed={seed}", f"data.domains={json.dumps(domains) if domains else 'null'}"]
    return load_any_config(args.config, sets)


def parent_stage(cfg: MpnasConfig, data: str, base: Path, say: Log, progress: bool) -> dict[str, float]:
    """(a) Search and train on the kept domains; returns {search_s, train_s} (stored, so a resumed seed keeps them)."""
    times_path = base / "parent_times.json"
    times = read_json(times_path) if times_path.is_file() else {}
    if "search_s" not in times and (base / "search" / "summary.json").is_file():  # finished, then interrupted
        times["search_s"] = float(read_json(base / "search" / "summary.json")["wall_time_s"])
    if "search_s" not in times:
        say("  (a) search on the kept domains")
        t0, c0 = time.perf_counter(), time.process_time()
        run_search(cfg, data, base / "search", resume=True, progress=progress)
        times["search_s"], times["search_cpu_s"] = time.perf_counter() - t0, time.process_time() - c0
        atomic_write_json(times_path, times)
    if "train_s" not in times:
        say("  (a) train the merged model of the searched paths")
        genos = genotypes_from_json((base / "search" / "genotypes.json").read_text())
        t0, c0 = time.perf_counter(), time.process_time()
        train_model(cfg, data, genos, base / "model", resume=True, progress=progress)
        times["train_s"], times["train_cpu_s"] = time.perf_counter() - t0, time.process_time() - c0
        atomic_write_json(times_path, times)
    return times


def add_stage(cfg: MpnasConfig, data: str, domain: str, base: Path, say: Log, progress: bool) -> dict[str, Any]:
    """(b) add-domain on the parent; returns its add_domain.json summary plus the stage's wall time."""
    summary_path, times_path = base / "added" / "add_domain.json", base / "add_times.json"
    if not (summary_path.is_file() and times_path.is_file()):
        say(f"  (b) add {domain} to the trained model")
        t0, c0 = time.perf_counter(), time.process_time()
        add_domain(cfg, base / "model", data, domain, base / "added", resume=True,
                   log=(lambda m: print(m, flush=True)) if progress else None)
        atomic_write_json(times_path, {"add_s": time.perf_counter() - t0, "add_cpu_s": time.process_time() - c0})
    return {**read_json(summary_path), **read_json(times_path)}


def run_seed(args: argparse.Namespace, seed: int, kept: list[str], say: Log) -> dict[str, Any]:
    """Both stages and the checks of one seed; writes and returns seed<k>/result.json (reused when present)."""
    base = Path(args.study_dir) / f"seed{seed}"
    result_path = base / "result.json"
    if result_path.is_file():
        say(f"seed {seed}: {result_path} exists, reusing it")
        return read_json(result_path)
    say(f"seed {seed}: {len(kept)} domains, then add {args.held_out}")
    times = parent_stage(seed_config(args, seed, kept), args.data, base, say, not args.quiet)
    added = add_stage(seed_config(args, seed, None), args.data, args.held_out, base, say, not args.quiet)
    say("  (c) check every kept domain's logits on all its test images")
    parent, grown = load_model(base / "model"), load_model(base / "added")
    identical = old_domains_identical(parent, grown, PreparedDataset(args.data), limit=None)
    parent_s = times["search_s"] + times["train_s"]
    cpu = {"parent_search": times.get("search_cpu_s"), "parent_train": times.get("train_cpu_s"),
           "add": added.get("add_cpu_s")}
    cpu["parent"] = None if None in (cpu["parent_search"], cpu["parent_train"]) else \
        cpu["parent_search"] + cpu["parent_train"]
    cpu_ratio = None if None in (cpu["parent"], cpu["add"]) else cpu["add"] / cpu["parent"]
    row = {"seed": seed, "held_out": args.held_out, "kept_domains": kept,
           "top1_test": added["accuracy"]["test"], "top1_val": added["accuracy"]["val"],
           "logits_identical_all_test": identical, "logits_identical_summary": added["old_domains_identical"],
           "parent_parameters": added["parent_parameters"], "added_parameters": added["added_parameters"],
           "added_params_ratio": added["added_parameters"] / added["parent_parameters"],
           "new_nodes": added["new_nodes"], "reused_nodes": added["reused_nodes"], "genotype": added["genotype"],
           "wall_s": {"parent_search": times["search_s"], "parent_train": times["train_s"], "parent": parent_s,
                      "add": added["add_s"], "add_search": added["search"]["wall_time_s"],
                      "add_train": added["train"]["wall_time_s"]},
           "wall_ratio": added["add_s"] / parent_s, "cpu_s": cpu, "cpu_ratio": cpu_ratio}
    atomic_write_json(result_path, row)
    return row


# ------------------------------------------------------------------------------------------------------ summary
def summarize(args: argparse.Namespace, rows: list[dict], reference: Optional[dict[int, float]]) -> dict[str, Any]:
    """The result document: per-seed rows, mean ± std of every figure, and which issue-15 targets are met."""
    seeds = [r["seed"] for r in rows]
    ref = [reference[s] for s in seeds] if reference else None
    ref_wall = [reference_wall_s(args.reference_runs, s) for s in seeds] if args.reference_runs else None
    identical = all(all(r["logits_identical_all_test"].values()) for r in rows)
    doc: dict[str, Any] = {
        "held_out": args.held_out, "seeds": seeds, "config": args.config, "overrides": args.set, "data": args.data,
        "reference": {"file": args.reference, "method": args.reference_method, "runs": args.reference_runs},
        "top1_test": stats([r["top1_test"] for r in rows]),
        "reference_top1_test": stats(ref) if ref else None,
        "difference_points": stats([100 * (r["top1_test"] - v) for r, v in zip(rows, ref)]) if ref else None,
        "logits_identical": identical,
        "added_parameters": stats([r["added_parameters"] for r in rows]),
        "parent_parameters": stats([r["parent_parameters"] for r in rows]),
        "added_params_ratio": stats([r["added_params_ratio"] for r in rows]),
        "wall_s": {k: stats([r["wall_s"][k] for r in rows]) for k in rows[0]["wall_s"]} if rows else {},
        "reference_wall_s": stats(ref_wall) if ref_wall else None,
        "wall_ratio": stats([r["wall_ratio"] for r in rows]),
        "cpu_s": {k: stats([r["cpu_s"][k] for r in rows]) for k in rows[0]["cpu_s"]} if rows else {},
        "cpu_ratio": stats([r["cpu_ratio"] for r in rows]),
        "wall_ratio_vs_reference": stats([r["wall_s"]["add"] / w if w else None for r, w in zip(rows, ref_wall)])
        if ref_wall else None,
        "targets": TARGETS,
        "per_seed": rows,
    }
    doc["met"] = {"top1_within_2_points": doc["difference_points"]["mean"] >= -TARGETS["top1_gap_points"]
                  if doc["difference_points"] else None,
                  "logits_identical": identical,
                  "added_params_at_most_15pct": doc["added_params_ratio"]["mean"] <= TARGETS["added_params_ratio"]
                  if rows else None,
                  "wall_at_most_25pct": doc["wall_ratio"]["mean"] <= TARGETS["wall_ratio"] if rows else None,
                  "cpu_at_most_25pct": doc["cpu_ratio"]["mean"] <= TARGETS["wall_ratio"] if doc["cpu_ratio"] else None}
    return doc


def _pct(v: Optional[float]) -> str:
    return "n/a" if v is None else f"{100 * v:.1f}"


def _pm(s: Optional[dict], scale: float = 1.0, digits: int = 1) -> str:
    if not s:
        return "n/a"
    std = "" if s["std"] is None else f" ± {scale * s['std']:.{digits}f}"
    return f"{scale * s['mean']:.{digits}f}{std}"


def render_markdown(doc: dict[str, Any]) -> str:
    """The RESULTS.md table: one row per seed and the mean ± sample std (percent, seconds, ratios)."""
    d = doc["held_out"]
    lines = [f"| seed | {d} grown % | reference % | difference (points) | kept domains' logits identical "
             "| added params / parent | add-domain wall s | parent search+train wall s | wall ratio | CPU ratio "
             "| wall / reference |",
             "|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|"]
    for i, r in enumerate(doc["per_seed"]):
        ref = doc["reference_top1_test"]["values"][i] if doc["reference_top1_test"] else None
        vs_ref = doc["wall_ratio_vs_reference"]["values"][i] if doc["wall_ratio_vs_reference"] else None
        same = all(r["logits_identical_all_test"].values())
        cells = [str(r["seed"]), _pct(r["top1_test"]), _pct(ref),
                 "n/a" if ref is None else f"{100 * (r['top1_test'] - ref):+.1f}",
                 f"{'yes' if same else 'NO'} ({len(r['logits_identical_all_test'])} domains)",
                 _pct(r["added_params_ratio"]) + "%", f"{r['wall_s']['add']:.0f}", f"{r['wall_s']['parent']:.0f}",
                 _pct(r["wall_ratio"]) + "%", _pct(r.get("cpu_ratio")) + "%", _pct(vs_ref) + "%"]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append(f"| **mean ± std** | **{_pm(doc['top1_test'], 100)}** | {_pm(doc['reference_top1_test'], 100)} | "
                 f"**{_pm(doc['difference_points'])}** | {'yes' if doc['logits_identical'] else 'NO'} | "
                 f"{_pm(doc['added_params_ratio'], 100)}% | {_pm(doc['wall_s'].get('add'), 1, 0)} | "
                 f"{_pm(doc['wall_s'].get('parent'), 1, 0)} | {_pm(doc['wall_ratio'], 100)}% | "
                 f"{_pm(doc.get('cpu_ratio'), 100)}% | {_pm(doc['wall_ratio_vs_reference'], 100)}% |")
    return "\n".join(lines) + "\n"


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    say = (lambda m: print(m, flush=True))
    ds = PreparedDataset(args.data)
    ds.require_domains([args.held_out], "--held-out")
    kept = [d for d in ds.domains if d != args.held_out]
    if not kept:
        raise ValueError(f"{args.data}: no domain besides --held-out {args.held_out!r}")
    reference = (load_reference(args.reference, args.reference_method, args.held_out, args.seeds)
                 if args.reference else None)
    seed_config(args, args.seeds[0], kept)  # a bad config or override fails here, before any work
    rows = []
    for seed in args.seeds:
        rows.append(run_seed(args, seed, kept, say))
        doc = summarize(args, rows, reference)
        atomic_write_json(args.out, doc)
        r = rows[-1]
        say(f"seed {seed}: {args.held_out} test top-1 {100 * r['top1_test']:.1f}"
            + (f" (reference {100 * reference[seed]:.1f})" if reference else "")
            + f", kept domains identical: {all(r['logits_identical_all_test'].values())}, added params "
            f"{100 * r['added_params_ratio']:.1f}%, wall {r['wall_s']['add']:.0f} s vs {r['wall_s']['parent']:.0f} s "
            f"({100 * r['wall_ratio']:.1f}%), CPU {100 * (r['cpu_ratio'] or float('nan')):.1f}%; wrote {args.out}")
    say(f"met: {json.dumps(doc['met'])}")
    say(render_markdown(doc))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
