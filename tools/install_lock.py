"""Install requirements.lock into a venv with uv, falling back to pip: the fast half of `make setup`.

Why: `pip install -r requirements.lock` took 262 s on a quiet 2-core machine (5.5 GB of torch/CUDA wheels unpacked
one at a time, then byte-compiled). uv resolves the same pinned lock, downloads and unpacks in parallel and links
files from its cache, without byte-compiling (BENCHMARKS.md, "Setup"). uv reads no pip configuration, so the
indexes, find-links and constraints pip is configured with (pip.conf or PIP_* variables: a local wheel mirror, say)
are passed on, and uv takes the best match across them, as pip does. Any uv failure falls back to plain pip, so a
machine without network access to uv still installs. Standard library only: it runs before the venv has anything.

    python3.11 tools/install_lock.py --venv .venv --lock requirements.lock
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
from pathlib import Path

UV_VERSION = "0.13.9"  # pinned like every other dependency
SOURCE_KEYS = {"index-url": "--index-url", "extra-index-url": "--extra-index-url", "find-links": "--find-links",
               "constraint": "--constraint"}


def pip_sources(config_list: str) -> list[str]:
    """uv arguments for the package sources in `pip config list` output (global, install and PIP_* env entries).

    Each entry reads `<scope>.<key>='<value>'`; a value may hold several space-separated URLs or paths."""
    args: list[str] = []
    for line in config_list.splitlines():
        name, sep, raw = line.partition("=")
        if not sep or "." not in name:
            continue
        scope, key = name.rsplit(".", 1)
        if key not in SOURCE_KEYS or scope not in {"global", "install", ":env:"}:
            continue
        for value in shlex.split(raw.strip().strip("'\"")):
            pair = [SOURCE_KEYS[key], value]
            if not _has_pair(args, pair):
                args += pair
    return args


def _has_pair(args: list[str], pair: list[str]) -> bool:
    return any(args[i:i + 2] == pair for i in range(0, len(args), 2))


def run(cmd: list[str], env: dict[str, str] | None = None) -> bool:
    print("+", " ".join(shlex.quote(c) for c in cmd), flush=True)
    return subprocess.run(cmd, env=env).returncode == 0


def install_with_uv(python: Path, lock: Path, project: Path) -> bool:
    """uv into the venv itself (pinned), then the lock and the project; False if any part fails."""
    if not run([str(python), "-m", "pip", "install", "-q", f"uv=={UV_VERSION}"]):
        return False
    uv = python.parent / "uv"
    config = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True).stdout
    common = ["pip", "install", "-q", "--python", str(python), *pip_sources(config)]
    # the lock pins every version, so taking the best match across the mirror and PyPI changes no version
    env = {**os.environ, "UV_INDEX_STRATEGY": "unsafe-best-match"}
    return (run([str(uv), *common, "-r", str(lock)], env)
            and run([str(uv), *common, "--no-deps", "-e", str(project)], env))


def install_with_pip(python: Path, lock: Path, project: Path) -> bool:
    return (run([str(python), "-m", "pip", "install", "-q", "--upgrade", "pip"])
            and run([str(python), "-m", "pip", "install", "-q", "-r", str(lock)])
            and run([str(python), "-m", "pip", "install", "-q", "--no-deps", "-e", str(project)]))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--venv", type=Path, default=Path(".venv"), help="virtual environment (created if missing)")
    ap.add_argument("--lock", type=Path, default=Path("requirements.lock"), help="pinned requirements file")
    ap.add_argument("--project", type=Path, default=Path("."), help="project installed editable, without deps")
    ap.add_argument("--installer", choices=["auto", "uv", "pip"], default=os.environ.get("MPNAS_INSTALLER", "auto"),
                    help="auto: uv, then pip if uv fails (env MPNAS_INSTALLER)")
    a = ap.parse_args(argv)
    if not a.lock.is_file():
        print(f"error: lock file {a.lock} not found; run from the repository root", file=sys.stderr)
        return 2
    python = a.venv / "bin" / "python"
    if not python.exists() and not run([sys.executable, "-m", "venv", str(a.venv)]):
        print(f"error: could not create the venv {a.venv} with {sys.executable}", file=sys.stderr)
        return 1
    if a.installer != "pip" and install_with_uv(python, a.lock, a.project):
        return 0
    if a.installer == "uv":
        print("error: uv install failed (see above); rerun with MPNAS_INSTALLER=pip", file=sys.stderr)
        return 1
    if a.installer == "auto":
        print("setup: uv failed, falling back to pip (slower)", flush=True)
    if install_with_pip(python, a.lock, a.project):
        return 0
    print(f"error: pip could not install {a.lock} into {a.venv}; check the network or pip's index settings",
          file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
