"""`make setup`'s last step: initialise project-local state (DVC repo; the ZenML stack with its MLflow tracker,
both stored under the project: ZENML_CONFIG_PATH and MLFLOW_TRACKING_URI come from the Makefile)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    if not (ROOT / ".dvc").is_dir():
        args = ["dvc", "init", "-q"] + ([] if (ROOT / ".git").exists() else ["--no-scm"])
        subprocess.run([str(Path(sys.executable).parent / args[0]), *args[1:]], cwd=ROOT, check=True)
        subprocess.run([str(Path(sys.executable).parent / "dvc"), "config", "core.analytics", "false"], cwd=ROOT,
                       check=True)
    from pipelines.stack import STACK, ensure_local_stack, tracking_uri

    ensure_local_stack()
    print(f"setup: ok (.venv ready, DVC initialised, ZenML stack {STACK} active with MLflow at {tracking_uri()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
