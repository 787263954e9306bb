"""Train and test fixed architectures over several seeds: recipe and baseline studies at an equal budget.

`--genotypes reference` trains the space's single-path reference genotype for every domain (with
`--set train.bn_mode=per_domain_affine` that is the shared-backbone, per-domain-BN baseline `shared_domain_bn`);
a path pattern with `{seed}` (e.g. runs/signal/real/seed{seed}/search/genotypes.json) trains each seed's own
searched genotypes; `comparison:PATH:METHOD` takes each seed's genotypes from a comparison.json (or a
partial_comparison.json) that holds METHOD's run for that seed, e.g. the mpnas genotypes of RESULTS.md's session 7:
`comparison:results/mini_real_2h/partial_comparison.json:mpnas_uniform`. Stages whose outputs exist are skipped, so
an interrupted study continues.

    python -m benchmarks.train_variants -c configs/mini_real_quick.yaml --data data/prepared/mini_real \
        --genotypes reference --name shared_domain_bn --set train.bn_mode=per_domain_affine --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from mpnas.cli._common import load_any_config
from mpnas.evaluation.evaluate import evaluate_model
from mpnas.nas.search import build_space
from mpnas.data.prepared import PreparedDataset
from mpnas.space import Genotype, genotypes_from_json, genotypes_from_strings
from mpnas.training.trainer import train_model


def genotypes_from_comparison(spec: str, seed: int) -> dict[str, Genotype]:
    """`comparison:PATH:METHOD` -> METHOD's genotypes for `seed` (its runs are listed in the order of its seeds)."""
    _, path, method = spec.split(":", 2)
    doc = json.loads(Path(path).read_text())
    entry = doc.get("methods", {}).get(method)
    if entry is None:
        raise SystemExit(f"{path}: no method {method!r} under 'methods' (has: {sorted(doc.get('methods', {}))})")
    if seed not in entry.get("seeds", []):
        raise SystemExit(f"{path}: method {method!r} has seeds {entry.get('seeds')}, not {seed}")
    run = entry["runs"][entry["seeds"].index(seed)]
    return genotypes_from_strings({d: m["genotype"] for d, m in run["domains"].items()})


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-c", "--config", required=True, help="mpnas config or run config (parameters.config)")
    ap.add_argument("--data", required=True, help="prepared data directory")
    ap.add_argument("--genotypes", required=True, help="'reference', a genotypes.json path with {seed}, or comparison:PATH:METHOD")
    ap.add_argument("--name", required=True, help="study name: results go to OUT/NAME/seed<k>/")
    ap.add_argument("--out", default="runs/train_variants")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override (repeatable)")
    a = ap.parse_args(argv)
    for seed in a.seeds:
        cfg = load_any_config(a.config, [*a.set, f"seed={seed}", "evaluate.latency_repeats=3", "evaluate.latency_warmup=1"])
        base = Path(a.out) / a.name / f"seed{seed}"
        t0 = time.perf_counter()
        if a.genotypes == "reference":
            ref = build_space(cfg).reference_genotype()
            genos = {d: ref for d in PreparedDataset(a.data).subset(cfg.data.domains)}
        elif a.genotypes.startswith("comparison:"):
            genos = genotypes_from_comparison(a.genotypes, seed)
        else:
            genos = genotypes_from_json(Path(a.genotypes.format(seed=seed)).read_text())
        if not (base / "model" / "architecture.json").is_file():
            train_model(cfg, a.data, genos, base / "model", resume=True, progress=True)
        if not (base / "eval" / "metrics.json").is_file():
            evaluate_model(base / "model", a.data, base / "eval", cfg.evaluate, method=a.name)
        met = json.loads((base / "eval" / "metrics.json").read_text())
        print(json.dumps({"name": a.name, "seed": seed, "mean_top1_test": met["mean_top1_test"],
                          "params_total": met["params_total"], "seconds": time.perf_counter() - t0}), flush=True)


if __name__ == "__main__":
    main()
