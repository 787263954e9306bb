"""What every step needs from outside its own module, so imports go one way (pipelines -> steps -> mpnas): the name
of the stack's MLflow experiment tracker. (The typed inputs and outputs of steps live in steps/contracts.py.)"""

from __future__ import annotations

TRACKER = "mlflow_local"  # the experiment tracker component of the mpnas_local stack (pipelines/stack.py registers it)
