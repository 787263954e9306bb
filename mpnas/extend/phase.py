"""What the add-domain search and the add-domain training share: a resumable run of steps.

Both are a `Phase`: steps run one at a time, each appends a row to the history; progress is logged every
`log_every` steps and the state saved every `checkpoint_every` steps and at the end; a checkpoint restores the step,
elapsed time and history besides the phase's own state. `mpnas.extend.run.run_phase` resumes and runs one.
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable, Optional

import torch

from mpnas.loop import OnLog, format_duration, set_lr

Log = Callable[[str], None]


class Phase:
    """One add-domain phase. Subclasses set `name` (its key in checkpoints and on_log: "search" or "train"),
    `noun` (for messages) and the step counts, and define run_step, progress, _state and _load."""

    name: str
    noun: str
    optimizer: torch.optim.Optimizer

    def _start(self, total: int, log_every: int, checkpoint_every: int) -> None:
        self.total, self.log_every, self.checkpoint_every = total, log_every, checkpoint_every
        self.step, self.elapsed = 0, 0.0
        self.history: list[dict[str, Any]] = []

    def run_step(self) -> dict[str, Any]:
        raise NotImplementedError

    def progress(self, row: dict[str, Any]) -> str:
        """The phase's own part of a progress line (after step, rate and ETA)."""
        raise NotImplementedError

    def _state(self) -> dict[str, Any]:
        raise NotImplementedError

    def _load(self, st: dict[str, Any]) -> None:
        raise NotImplementedError

    def descend(self, loss: torch.Tensor, lr: float) -> float:
        """One step of `self.optimizer` on `loss` at `lr`; returns the loss. A non-finite loss stops the phase
        (naming the step and the learning rate to lower) before it can reach the weights."""
        loss_f = float(loss.detach())
        if not math.isfinite(loss_f):
            raise FloatingPointError(f"add-domain {self.noun} step {self.step + 1}: non-finite loss (try a lower "
                                     f"{self.name}.lr)")
        set_lr(self.optimizer, lr)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return loss_f

    # ---- state (weights-only checkpoint contents)
    def state_dict(self) -> dict[str, Any]:
        return {"step": self.step, "elapsed": self.elapsed, "history": list(self.history), **self._state()}

    def load_state_dict(self, st: dict[str, Any]) -> None:
        self._load(st)
        self.step, self.elapsed, self.history = int(st["step"]), float(st["elapsed"]), list(st["history"])

    # ---- loop
    def run(self, save: Callable[[dict[str, Any]], None], log: Optional[Log] = None,
            on_log: Optional[OnLog] = None) -> None:
        """Run the remaining steps; `save(state)` every checkpoint_every steps and at the end."""
        start_step, start, base = self.step, time.perf_counter(), self.elapsed
        while self.step < self.total:
            row = self.run_step()
            self.step += 1
            self.history.append(row)
            self.elapsed = base + time.perf_counter() - start
            done = self.step == self.total
            if self.step % self.log_every == 0 or done:
                rate = (self.step - start_step) / max(1e-9, time.perf_counter() - start)
                eta = (self.total - self.step) / rate if rate > 0 else math.inf
                if log is not None:
                    log(f"add-domain {self.name} {self.step}/{self.total} | {rate:.2f} step/s | "
                        f"ETA {format_duration(eta)} | {self.progress(row)}")
                if on_log is not None:
                    on_log(self.step, {k: float(v) for k, v in row.items() if isinstance(v, (int, float))})
            if self.step % self.checkpoint_every == 0 or done:
                save(self.state_dict())
