"""The `mpnas` command line. Each module in this package adds one subcommand through `register(subparsers)`."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from typing import Optional

from mpnas import __version__
from mpnas.config import ConfigError
from mpnas.utils.io import OutputLockedError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mpnas",
        description="Multi-path neural architecture search for on-device multi-domain image classification.",
        epilog="Run `mpnas COMMAND --help` for the options of each command.")
    parser.add_argument("--version", action="version", version=f"mpnas {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for mod in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if not mod.name.startswith("_"):
            importlib.import_module(f"{__name__}.{mod.name}").register(sub)
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    except (ValueError, OSError, OutputLockedError) as exc:  # OSError: a file in the way, a full disk, permissions
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
