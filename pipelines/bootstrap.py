"""`make setup`'s last step: initialise project-local state (DVC repo; the ZenML stack with its MLflow tracker,
both stored under the project: ZENML_CONFIG_PATH and MLFLOW_TRACKING_URI come from the Makefile)."""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def browser() -> str | None:
    """A headless-capable Chromium on the PATH (the UI tests drive `make ui` and `make dashboard` with it)."""
    return next((shutil.which(b) for b in BROWSERS if shutil.which(b)), None)


def _check_browser() -> None:
    if browser() is None:
        print("setup: no Chromium found; the browser tests of `make ui` and `make dashboard` will be skipped. "
              "Install the system package `chromium` (Debian/Ubuntu: sudo apt-get install chromium).")


DVC_CONFIG = {"core.analytics": "false", "core.no_scm": "true"}


def _dvc_config_value(key: str) -> str | None:
    """`key` (section.option) as the project's .dvc/config sets it, None when unset or unreadable."""
    section, option = key.split(".", 1)
    parser = configparser.ConfigParser()
    try:
        parser.read(ROOT / ".dvc" / "config")
        return parser.get(section, option, fallback=None)
    except configparser.Error:
        return None


def main() -> int:
    dvc = str(Path(sys.executable).parent / "dvc")
    if not (ROOT / ".dvc").is_dir():
        subprocess.run([dvc, "init", "-q", "--no-scm"], cwd=ROOT, check=True)
    # no_scm: the generated dvc.yaml/dvc.lock are git-ignored local state, which DVC accepts only without git
    for key, value in DVC_CONFIG.items():
        if _dvc_config_value(key) != value:  # each `dvc config` is a DVC start-up, paid again by every `make run`
            subprocess.run([dvc, "config", key, value], cwd=ROOT, check=True)
    _check_browser()
    from pipelines.stack import STACK, ensure_local_stack, tracking_uri

    ensure_local_stack()
    print(f"setup: ok (.venv ready, DVC initialised, ZenML stack {STACK} active with MLflow at {tracking_uri()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
