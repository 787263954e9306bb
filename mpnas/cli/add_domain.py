"""`mpnas add-domain`: add one domain to a trained merged model; the other domains stay bit-for-bit identical."""

from __future__ import annotations

import argparse

from mpnas.cli._common import add_config_args, check_step_memory, config_from_args, writing


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("add-domain", help="add a domain to a trained model without touching the others",
                       description="Search one new path for DOMAIN over the trained model MODEL (its nodes are frozen "
                                   "and free to reuse; new nodes come from a supernet trained on DOMAIN only, at the "
                                   "cost of their parameters: search.share_beta), then grow the model by that path "
                                   "and train only what is new (new nodes, the new classifier, the new domain's "
                                   "batch-norm rows; search.* and train.* settings). Writes a model directory "
                                   "(model.safetensors, architecture.json) plus add_domain.json (new nodes, added "
                                   "parameters, the parent's lineage, the check that every old domain's test "
                                   "logits are unchanged), histories and checkpoints. Docs: docs/add_domain.md.")
    add_config_args(p)
    p.add_argument("--model", required=True, help="trained model directory (from `mpnas train`)")
    p.add_argument("--data", required=True, help="prepared dataset holding DOMAIN (the same --size as the model)")
    p.add_argument("--domain", required=True, help="the new domain's name in --data (not already in the model)")
    p.add_argument("--out", required=True, help="model directory to write (not inside --model or --data)")
    p.add_argument("--resume", action="store_true", help="continue from OUT's checkpoints if present (the same "
                                                         "model, data, domain and config are required)")
    p.add_argument("--overwrite", action="store_true",
                   help="start anew in a non-empty OUT, replacing its files (refused otherwise)")
    p.add_argument("--quiet", action="store_true", help="no per-step progress lines")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from mpnas.extend import add_domain

    cfg = config_from_args(args)
    check_step_memory("search.batch_size", cfg.search.batch_size, cfg.data.crop, 1, 1 + cfg.search.val_batch_multiplier)
    check_step_memory("train.batch_size", cfg.train.batch_size, cfg.data.crop, 1)
    with writing(args.out, args.overwrite, args.resume, model=args.model, data=args.data):
        result = add_domain(cfg, args.model, args.data, args.domain, args.out, resume=args.resume,
                            log=None if args.quiet else (lambda msg: print(msg, flush=True)))
    s = result.summary
    acc = s["accuracy"]
    same = all(s["old_domains_identical"].values())
    print(f"{s['domain']}: {' '.join(s['genotype'])}")
    new = ", ".join(s["new_nodes"]) or "none"
    print(f"  new nodes {len(s['new_nodes'])} ({new}), reused {len(s['reused_nodes'])}; "
          f"added {s['added_parameters']} parameters ({100 * s['added_fraction']:.1f}% of {s['parent_parameters']})")
    print(f"  val top-1 {acc['val']:.4f}" + (f", test top-1 {acc['test']:.4f}" if acc.get("test") is not None else ""))
    print(f"  old domains' test logits identical: {'yes' if same else 'NO'} "
          f"({', '.join(s['old_domains_identical']) or 'none of them in --data'}); model in {result.model_dir}")
    return 0 if same else 3
