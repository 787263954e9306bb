"""`mpnas config show|validate`: print the resolved configuration or check a file."""

from __future__ import annotations

import argparse

from mpnas.cli._common import add_config_args, config_from_args
from mpnas.config import config_to_yaml


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("config", help="show or validate a configuration",
                       description="Show the fully resolved configuration (defaults + file + --set overrides), "
                                   "or validate it and exit non-zero with the offending field named.")
    p.add_argument("action", choices=["show", "validate"])
    add_config_args(p)
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    if args.action == "show":
        print(config_to_yaml(cfg), end="")
    else:
        print(f"ok: {args.config or '<defaults>'} is valid")
    return 0
