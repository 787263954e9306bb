"""Options shared by several subcommands."""

from __future__ import annotations

import argparse

from mpnas.config import MpnasConfig, load_config


def add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("-c", "--config", help="YAML config file (default: built-in defaults)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field by dotted name, e.g. --set train.steps=3 (repeatable)")


def config_from_args(args: argparse.Namespace) -> MpnasConfig:
    return load_config(args.config, args.overrides)
