"""Where steps let the library write: content-keyed directories, so a rerun of the same inputs resumes (search and
train checkpoints) instead of starting over, and per-run directories for reports."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any


def keyed_dir(workspace: str | Path, kind: str, *inputs: Any) -> Path:
    """runs/<kind>/<12-hex key of the inputs>: the same inputs always map to the same (resumable) directory."""
    key = hashlib.sha1(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()[:12]
    return Path(workspace).resolve() / "runs" / kind / key


def current_run_name() -> str:
    from zenml import get_step_context

    return get_step_context().pipeline_run.name
