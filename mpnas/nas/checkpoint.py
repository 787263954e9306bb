"""Atomic search checkpoints and the global RNG states they must carry for an exact resume."""

from __future__ import annotations

import io
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mpnas.utils.io import atomic_write_bytes

FORMAT = "mpnas.search_checkpoint/1"


def rng_states() -> dict[str, Any]:
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def set_rng_states(s: dict[str, Any]) -> None:
    torch.set_rng_state(s["torch"])
    np.random.set_state(s["numpy"])
    random.setstate(s["python"])
    if s.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(s["cuda"])


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    buf = io.BytesIO()
    torch.save({"format": FORMAT, **state}, buf)
    return atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)  # our own file: it holds numpy RNG states
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means the same thing to the user
        raise ValueError(f"{path}: not a readable search checkpoint ({exc})") from exc
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(f"{path}: not a search checkpoint (expected format {FORMAT!r})")
    return state
