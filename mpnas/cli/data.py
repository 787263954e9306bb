"""`mpnas data prepare|info|generate`: build the canonical prepared dataset, describe one, or write the raw
embedded set (decathlon layout) for inspection."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from mpnas.cli._common import add_config_args, config_from_args, writing
from mpnas.config import DataConfig, format_errors


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="prepare and inspect datasets",
                       description="Prepare a dataset (embedded default, Visual Decathlon, ImageFolder) into the "
                                   "canonical memory-mapped format, or describe a prepared one.")
    dsub = p.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    pr = dsub.add_parser("prepare", help="build a prepared dataset",
                         description="Resize (shorter side to --size, centre crop), hold out a stratified searchval "
                                     "split from train, write arrays + manifest.parquet + stats.json + meta.json "
                                     "atomically. Defaults come from the config's `data` section; flags override.")
    pr.add_argument("--source", choices=["embedded", "decathlon", "imagefolder"])
    pr.add_argument("--root", type=Path, help="input root (decathlon: holds annotations/ and data/; imagefolder: "
                                              "root/<domain>/{train,val[,test]}/<class>/); embedded: optional, "
                                              "a previously generated set")
    pr.add_argument("--out", type=Path, help="output directory (default: data.prepared_dir)")
    pr.add_argument("--size", type=int, help="stored image size in pixels (default 36)")
    pr.add_argument("--domains", help="comma-separated subset of domains")
    pr.add_argument("--searchval-fraction", type=float)
    pr.add_argument("--on-bad-image", choices=["error", "skip"])
    pr.add_argument("--seed", type=int)
    pr.add_argument("--max-train-per-domain", type=int)
    pr.add_argument("--scale", type=float, default=1.0,
                    help="embedded only: multiply every split size (e.g. 0.05 for a smoke-test set)")
    pr.add_argument("--workers", type=int, default=2, help="decoding/generation processes")
    pr.add_argument("--overwrite", action="store_true", help="replace --out if it exists (only once complete)")
    add_config_args(pr)
    pr.set_defaults(func=_prepare)

    info = dsub.add_parser("info", help="summarise a prepared dataset and check its arrays",
                           description="Print domains, classes and split sizes; exit 1 naming each array that is "
                                       "missing, truncated or inconsistent with meta.json.")
    info.add_argument("path", type=Path)
    info.add_argument("--json", action="store_true", help="print meta, stats and version as JSON")
    info.set_defaults(func=_info)

    gen = dsub.add_parser("generate", help="write the raw embedded set in the decathlon-1.0 layout")
    gen.add_argument("--out", type=Path, required=True)
    gen.add_argument("--size", type=int, default=36)
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("--scale", type=float, default=1.0)
    gen.add_argument("--domains", help="comma-separated subset of the ten domains")
    gen.add_argument("--workers", type=int, default=2)
    gen.add_argument("--overwrite", action="store_true")
    gen.set_defaults(func=_generate)


def _domains(text: str | None) -> list[str] | None:
    if text is None:
        return None
    names = [d.strip() for d in text.split(",") if d.strip()]
    if not names:
        raise ValueError("--domains is empty")
    return names


# `mpnas data prepare` flags that set a field of the config's `data` section (the rest are prepare's own options).
DATA_FLAGS = ("source", "root", "size", "domains", "searchval_fraction", "on_bad_image", "seed", "max_train_per_domain")


def _data_config(args: argparse.Namespace) -> DataConfig:
    """The config's `data` section with the flags given on top, validated as a whole (DataConfig's limits).

    `crop` is a training setting that must not exceed `size`: a smaller --size lowers it rather than failing. A bad
    flag exits 1 (ValueError), a bad config file or --set 2 (ConfigError), as before."""
    from pydantic import ValidationError

    data = config_from_args(args).data
    flags = {f: getattr(args, f) for f in DATA_FLAGS if getattr(args, f) is not None}
    if "domains" in flags:
        flags["domains"] = _domains(flags["domains"])
    if not flags:
        return data
    merged = {**data.model_dump(), **flags}
    merged["crop"] = min(merged["crop"], merged["size"])
    try:
        return DataConfig.model_validate(merged)
    except ValidationError as exc:
        given = " ".join(f"--{f.replace('_', '-')} {getattr(args, f)}" for f in flags)
        raise ValueError(format_errors(exc, f"mpnas data prepare {given}").replace("\n  ", "\n  data.")) from None


def _prepare(args: argparse.Namespace) -> int:
    from mpnas.data.prepare import prepare

    cfg = _data_config(args)
    out = args.out if args.out is not None else cfg.prepared_dir
    with writing(out, root=cfg.root):
        prepare(cfg, out, overwrite=args.overwrite, scale=args.scale, workers=args.workers,
                log=lambda s: print(s, flush=True))
    return 0


def _generate(args: argparse.Namespace) -> int:
    from mpnas.data.embedded import generate_embedded

    with writing(args.out):
        generate_embedded(args.out, seed=args.seed, size=args.size, scale=args.scale, domains=_domains(args.domains),
                          workers=args.workers, overwrite=args.overwrite, log=lambda s: print(s, flush=True))
    return 0


def _info(args: argparse.Namespace) -> int:
    from mpnas.data.prepared import PreparedDataset
    from mpnas.data.version import data_version

    ds = PreparedDataset(args.path)
    stats_path = args.path / "stats.json"
    stats = json.loads(stats_path.read_text()) if stats_path.is_file() else {}
    version = data_version(args.path)
    if args.json:
        print(json.dumps({"meta": ds.meta, "stats": stats, "version": version, "problems": ds.problems()},
                         indent=2))
        return _report_problems(ds)
    print(f"{args.path}: {len(ds.domains)} domain(s), {ds.size}x{ds.size} px, source {ds.meta.get('source')}")
    print(f"content hash {ds.content_hash}" + (f"  (dvc md5 {version['dvc_md5']})" if version["dvc_md5"] else ""))
    header = f"{'domain':<16s}{'classes':>8s}{'train':>8s}{'searchval':>10s}{'val':>7s}{'test':>7s}  mean / std"
    print(header)
    for name in ds.domains:
        d = ds.info(name)
        s = d.split_sizes
        test = f"{s.get('test', 0)}" + ("" if d.labeled.get("test") else "*")
        print(f"{name:<16s}{d.num_classes:>8d}{s.get('train', 0):>8d}{s.get('searchval', 0):>10d}{s.get('val', 0):>7d}"
              f"{test:>7s}  " + " ".join(f"{v:.3f}" for v in d.mean) + " / " + " ".join(f"{v:.3f}" for v in d.std))
    if any(not ds.info(n).labeled.get("test") for n in ds.domains):
        print("* test split without labels")
    if stats.get("skipped"):
        print(f"skipped items: {len(stats['skipped'])} (see {stats_path})")
    return _report_problems(ds)


def _report_problems(ds) -> int:
    """`info` vouches for a dataset only when every array opens and matches meta.json."""
    problems = ds.problems()
    for p in problems:
        print(f"error: {p}", file=sys.stderr)
    return 1 if problems else 0
