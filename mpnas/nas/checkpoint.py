"""Atomic checkpoints (search and training) that load with `torch.load(weights_only=True)` (the RNG states they
carry for an exact resume come from mpnas.loop).

A pickle runs code on load, so a planted checkpoint.pt must never be unpickled. Everything we store is therefore
reduced to what the weights-only unpickler accepts (tensors, dicts, lists, tuples, str, int, float, bool, None):
numpy arrays become tagged tensors, numpy scalars tagged Python numbers, and they are turned back on load, so the
restored state is bit-identical.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from mpnas.utils.io import atomic_write_bytes

FORMAT = "mpnas.search_checkpoint/2"
_ND, _NS = "__ndarray__", "__npscalar__"


# ------------------------------------------------------------------------------------------- safe (de)serialising
def encode(obj: Any) -> Any:
    """`obj` with numpy arrays and scalars replaced by tagged tensors / numbers (weights-only loadable)."""
    if isinstance(obj, np.ndarray):
        arr = np.ascontiguousarray(obj)
        wide = arr.astype(np.int64) if arr.dtype in (np.uint16, np.uint32) else arr  # torch lacks these dtypes
        return {_ND: torch.from_numpy(wide.copy()), "dtype": arr.dtype.str, "shape": list(arr.shape)}
    if isinstance(obj, np.generic):
        return {_NS: obj.item(), "dtype": obj.dtype.str}
    if isinstance(obj, dict):
        return {k: encode(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        items = [encode(v) for v in obj]
        return items if isinstance(obj, list) else tuple(items)
    return obj


def decode(obj: Any) -> Any:
    """The inverse of `encode`."""
    if isinstance(obj, dict):
        if _ND in obj:
            return obj[_ND].numpy().astype(np.dtype(obj["dtype"]), copy=True).reshape(obj["shape"])
        if _NS in obj:
            return np.dtype(obj["dtype"]).type(obj[_NS])
        return {k: decode(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [decode(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(decode(v) for v in obj)
    return obj


def save_state(path: str | Path, state: dict[str, Any]) -> Path:
    """Write `state` atomically in a weights-only loadable form."""
    buf = io.BytesIO()
    torch.save(encode(state), buf)
    return atomic_write_bytes(path, buf.getvalue())


def load_state(path: str | Path, what: str = "checkpoint", map_location: Any = "cpu") -> dict[str, Any]:
    """Load a `save_state` file with weights_only=True (a pickle that wants to run code is refused, not run)."""
    path = Path(path)
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means the same thing to the user
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"{path}: not a readable {what} (refused or damaged: {first}); delete it or start a new "
                         f"run in another --out") from None
    if not isinstance(state, dict):
        raise ValueError(f"{path}: not a {what} (top level is {type(state).__name__})")
    return decode(state)


def check_data_hash(state: dict[str, Any], data_hash: str, source: str | Path, data_dir: str | Path) -> None:
    """Refuse to resume on data other than the checkpoint's: the results would claim the wrong data version."""
    saved = state.get("data_hash")
    if saved != data_hash:
        raise ValueError(f"{source}: written for data with content hash {str(saved)[:12] or 'unknown'}, but "
                         f"{data_dir} has {data_hash[:12]}; resume with the same --data, or start a new run in "
                         f"another --out (or pass --overwrite without --resume)")


# ------------------------------------------------------------------------------------------------ search checkpoint
def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    return save_state(path, {"format": FORMAT, **state})


def load_checkpoint(path: str | Path, data_hash: Optional[str] = None, data_dir: str | Path = "--data"
                    ) -> dict[str, Any]:
    """A search checkpoint; with `data_hash`, one written for other data is refused."""
    state = load_state(path, "search checkpoint")
    if state.get("format") != FORMAT:
        raise ValueError(f"{path}: not a search checkpoint of this version (format {state.get('format')!r}, "
                         f"expected {FORMAT!r}); start a new search in another --out")
    if data_hash is not None:
        check_data_hash(state, data_hash, path, data_dir)
    return state
