"""What every step needs from outside its own module, so imports go one way (pipelines -> steps -> mpnas): the name
of the stack's MLflow experiment tracker and the config rebuild from a `sections` dump."""

from __future__ import annotations

from typing import Any

from mpnas.config import MpnasConfig

TRACKER = "mlflow_local"  # the experiment tracker component of the mpnas_local stack (pipelines/stack.py registers it)


def rebuild(partial: dict[str, Any]) -> MpnasConfig:
    """A full MpnasConfig from a `sections` dump (the other sections at their defaults)."""
    return MpnasConfig.model_validate(partial)
