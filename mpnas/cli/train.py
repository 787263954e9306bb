"""`mpnas train`: train the merged multi-path model of a genotypes file from scratch."""

from __future__ import annotations

import argparse
from pathlib import Path

from mpnas.cli._common import add_config_args, check_step_memory, config_from_args, writing
from mpnas.space import genotypes_from_json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train the merged multi-path model of searched genotypes",
                       description="Merge the per-domain paths of GENOTYPES (shared nodes share weights) and train "
                                   "the model from scratch on the prepared data; writes a model directory "
                                   "(model.safetensors, architecture.json, history.parquet, checkpoint.pt).")
    add_config_args(p)
    p.add_argument("--data", required=True, help="prepared dataset directory")
    p.add_argument("--genotypes", required=True, help="genotypes.json (domain -> block strings)")
    p.add_argument("--out", required=True, help="model directory to write")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt if present (the same "
                                                         "config, genotypes and data are required)")
    p.add_argument("--overwrite", action="store_true",
                   help="train anew in a non-empty OUT, replacing its files (refused otherwise)")
    p.add_argument("--no-share", action="store_true",
                   help="give every domain its own copy of every node and head (the independent bundle baseline)")
    p.add_argument("--quiet", action="store_true", help="no per-step progress lines")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from mpnas.training.trainer import resolve_space, train_model

    cfg = config_from_args(args)
    path = Path(args.genotypes)
    if not path.is_file():
        raise FileNotFoundError(f"--genotypes {path}: file not found")
    genotypes = genotypes_from_json(path.read_text(), str(path))
    _check_genotypes(genotypes, resolve_space(cfg), path)
    check_step_memory("train.batch_size", cfg.train.batch_size, cfg.data.crop,
                      len(cfg.data.domains or genotypes))
    with writing(args.out, args.overwrite, args.resume, data=args.data, genotypes=path):
        result = train_model(cfg, args.data, genotypes, args.out, resume=args.resume, progress=not args.quiet,
                             share_nodes=not args.no_share)
    print(f"best mean val top-1 {result.best_mean_val:.4f} at step {result.best_step}; model in {result.model_dir}")
    return 0


def _check_genotypes(genotypes: dict, space, path: Path) -> None:
    """Each path must fit the configured space; say which file and domain does not (before any data is read)."""
    for domain, g in genotypes.items():
        try:
            g.validate(space)
        except ValueError as exc:
            raise ValueError(f"{path}: genotype of domain {domain!r}: {exc} (was it searched with another space "
                             f"config?)") from None
