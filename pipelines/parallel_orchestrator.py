"""ZenML's local orchestrator, able to run several independent steps at once, each in its own process.

Why: ZenML's local orchestrator runs one step at a time, in the pipeline's process. On a 2-core machine two one-thread
trainings side by side get 1.36x the work through the machine that one two-thread training does (BENCHMARKS.md,
"Two cores, several trainings"), and the comparison pipeline is mostly independent searches and trainings. A run
config opts in with

    settings:
      orchestrator: {max_parallel_steps: 2}

`max_parallel_steps: 1` (the default) is exactly ZenML's local orchestrator: in-process, one step at a time. With
more, each step runs in a child process (ZenML's own step entrypoint, same checkout and stores) as soon as its
upstream steps have finished, at most `max_parallel_steps` at once, each with `threads_per_step` torch threads
(default: the cores divided among the steps). The first step runs alone, so it opens the run's MLflow run before any
two steps could race to create it. A failed step skips its downstream steps; under the execution mode `fail_fast` no
further step starts, and the running ones finish (their outputs stay in the cache for the rerun). Each child's output
is passed through with its step name in front.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from typing import IO, TYPE_CHECKING, Callable, Collection, Dict, List, Optional, Type
from uuid import uuid4

from pydantic import ConfigDict, Field
from zenml.config.base_settings import BaseSettings
from zenml.entrypoints.step_entrypoint_configuration import StepEntrypointConfiguration
from zenml.enums import ExecutionMode
from zenml.orchestrators.local.local_orchestrator import (LocalOrchestrator, LocalOrchestratorConfig,
                                                          LocalOrchestratorFlavor)

if TYPE_CHECKING:
    from zenml.models import PipelineRunResponse, PipelineSnapshotResponse
    from zenml.orchestrators import SubmissionResult
    from zenml.stack import Stack

FLAVOR = "mpnas_local"
RUN_ID_ENV = "MPNAS_ZENML_ORCHESTRATOR_RUN_ID"  # set in every step process: the run id they report to ZenML
POLL_S = 0.2


class ParallelLocalSettings(BaseSettings):
    """Per-run settings (`settings.orchestrator` of a run config) and the component's defaults; a misspelt key is
    refused (ZenML's settings would keep it and run with the defaults)."""

    model_config = ConfigDict(extra="forbid")

    max_parallel_steps: int = Field(1, ge=1, description="steps run at once; 1 runs them in-process, in order")
    threads_per_step: Optional[int] = Field(None, ge=1, description="torch threads of each step process; "
                                                                    "default: CPU cores // max_parallel_steps")


class ParallelLocalOrchestratorConfig(LocalOrchestratorConfig, ParallelLocalSettings):
    """The component's configuration (same fields as the settings)."""

    model_config = ConfigDict(extra="ignore")  # a stack component's configuration, as ZenML builds it


# ------------------------------------------------------------------------------------------------- the scheduler
def chain_lengths(upstream: Dict[str, List[str]]) -> Dict[str, int]:
    """Step -> number of steps on its longest downstream chain, itself included (1 for a step nothing depends on)."""
    downstream: Dict[str, List[str]] = {n: [] for n in upstream}
    for name, ups in upstream.items():
        for u in ups:
            downstream.setdefault(u, []).append(name)
    lengths: Dict[str, int] = {}

    def length(name: str) -> int:
        if name not in lengths:
            lengths[name] = 1 + max((length(d) for d in downstream[name]), default=0)
        return lengths[name]

    return {n: length(n) for n in upstream}


def start_order(upstream: Dict[str, List[str]]) -> List[str]:
    """The order in which ready steps start: longest downstream chain first (`chain_lengths`), ties in the dict's
    order. A step that gates a chain (the comparison's mpnas_uniform training, whose evaluation steers mpnas's ABDP)
    then does not wait behind independent ones and leave a core idle at the end."""
    chain = chain_lengths(upstream)
    index = {name: i for i, name in enumerate(upstream)}
    return sorted(upstream, key=lambda n: (-chain[n], index[n]))


def steps_to_start(waiting: List[str], upstream: Dict[str, List[str]], done: Collection[str], running: int,
                   limit: int) -> List[str]:
    """The waiting steps to start now, in `waiting`'s order: those whose upstream steps are all done, as many as
    keep at most `limit` running. The one start rule of the orchestrator and of benchmarks/schedule_replay.py."""
    ready = [name for name in waiting if all(u in done for u in upstream[name])]
    return ready[:max(0, limit - running)]


def run_dag(upstream: Dict[str, List[str]], launch: Callable[[str], "subprocess.Popen[bytes]"], max_parallel: int,
            mode: ExecutionMode = ExecutionMode.CONTINUE_ON_FAILURE, first_alone: bool = True,
            log: Callable[[str], None] = print) -> tuple[list[str], list[str], list[str]]:
    """Run every step once its upstream steps completed, at most `max_parallel` at a time, in `start_order`.

    `launch(name)` starts a step's process. Returns (completed, failed, skipped). A failed step skips its downstream
    steps; `fail_fast` and `stop_on_failure` start nothing after the first failure and wait for the running steps.
    Ctrl-C terminates the running processes and re-raises."""
    start = time.time()
    waiting = start_order(upstream)
    running: Dict[str, subprocess.Popen] = {}
    completed: list[str] = []
    failed: list[str] = []
    skipped: list[str] = []
    try:
        while waiting or running:
            for name, proc in list(running.items()):
                rc = proc.poll()
                if rc is None:
                    continue
                del running[name]
                (completed if rc == 0 else failed).append(name)
                log(f"step {name} " + ("finished" if rc == 0 else f"failed (exit {rc})") +
                    f": {len(completed)}/{len(upstream)} steps done, {len(running)} running, "
                    f"{(time.time() - start) / 60:.1f} min elapsed")
            stop = bool(failed) and mode in (ExecutionMode.FAIL_FAST, ExecutionMode.STOP_ON_FAILURE)
            for name in list(waiting):
                if stop or any(u in failed or u in skipped for u in upstream[name]):
                    waiting.remove(name)
                    skipped.append(name)
                    log(f"step {name} skipped: " + ("an earlier step failed" if stop else
                                                    "an upstream step failed or was skipped"))
            limit = 1 if first_alone and not completed and not failed else max_parallel
            for name in steps_to_start(waiting, upstream, completed, len(running), limit):
                waiting.remove(name)
                running[name] = launch(name)
            time.sleep(POLL_S)
    except BaseException:
        for proc in running.values():
            proc.terminate()
        for proc in running.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        raise
    return completed, failed, skipped


def _relay(stream: IO[bytes], prefix: str) -> None:
    """Copy a child's output to ours line by line, the step name in front (two steps' lines interleave)."""
    for line in iter(stream.readline, b""):
        sys.stdout.write(f"{prefix}{line.decode(errors='replace').rstrip()}\n")
        sys.stdout.flush()
    stream.close()


# ------------------------------------------------------------------------------------------------- ZenML parts
class LocalStepEntrypointConfiguration(StepEntrypointConfiguration):
    """ZenML's step entrypoint for a child process on this machine: the code is already here (no download, and no
    change of directory to a container's /app)."""

    def prepare_code_environment(self) -> None:
        if os.getcwd() not in sys.path:
            sys.path.insert(0, os.getcwd())


class ParallelLocalOrchestrator(LocalOrchestrator):
    """The local orchestrator with `max_parallel_steps` (module docstring)."""

    @property
    def settings_class(self) -> Optional[Type[BaseSettings]]:
        return ParallelLocalSettings

    @property
    def run_init_cleanup_at_step_level(self) -> bool:
        return RUN_ID_ENV in os.environ  # a step process shares no memory with the run

    def get_orchestrator_run_id(self) -> str:
        if RUN_ID_ENV in os.environ:
            return os.environ[RUN_ID_ENV]
        return super().get_orchestrator_run_id()

    def submit_pipeline(self, snapshot: "PipelineSnapshotResponse", stack: "Stack", base_environment: Dict[str, str],
                        step_environments: Dict[str, Dict[str, str]],
                        placeholder_run: Optional["PipelineRunResponse"] = None) -> Optional["SubmissionResult"]:
        settings = self.get_settings(snapshot)
        assert isinstance(settings, ParallelLocalSettings)
        if settings.max_parallel_steps <= 1 or len(snapshot.step_configurations) <= 1:
            return super().submit_pipeline(snapshot, stack, base_environment, step_environments, placeholder_run)
        from zenml.utils.source_utils import get_source_root

        threads = settings.threads_per_step or max(1, (os.cpu_count() or 1) // settings.max_parallel_steps)
        run_id = str(uuid4())
        self._orchestrator_run_id = run_id
        cwd = get_source_root()
        steps = snapshot.step_configurations
        width = max(len(n) for n in steps)
        relays: list[threading.Thread] = []

        def launch(name: str) -> "subprocess.Popen[bytes]":
            env = {**os.environ, **step_environments[name], RUN_ID_ENV: run_id,
                   "ZENML_ACTIVE_STACK_ID": str(stack.id),
                   "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
            cmd = [sys.executable, "-m", "zenml.entrypoints.entrypoint",
                   *LocalStepEntrypointConfiguration.get_entrypoint_arguments(step_name=name,
                                                                              snapshot_id=snapshot.id)]
            print(f"[{name}] started ({threads} thread{'s' if threads > 1 else ''})", flush=True)
            proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            relay = threading.Thread(target=_relay, args=(proc.stdout, f"[{name:<{width}}] "), daemon=True)
            relay.start()
            relays.append(relay)
            return proc

        start = time.time()
        mode = snapshot.pipeline_configuration.execution_mode
        print(f"running up to {settings.max_parallel_steps} steps at once, {threads} torch thread(s) each",
              flush=True)
        try:
            # steps the cache already answered are gone from the snapshot: they count as done
            upstream = {n: [u for u in s.spec.upstream_steps if u in steps] for n, s in steps.items()}
            _, failed, _ = run_dag(upstream, launch, settings.max_parallel_steps, mode)
        finally:
            for relay in relays:
                relay.join(timeout=5)
            self._orchestrator_run_id = None
        if failed:
            raise RuntimeError(f"Pipeline run has failed due to failure in step(s): {', '.join(failed)}; their "
                               f"output is above, each line led by the step name")
        print(f"pipeline run finished in {time.time() - start:.0f} s", flush=True)
        return None


class ParallelLocalOrchestratorFlavor(LocalOrchestratorFlavor):
    """Registered by pipelines/stack.py as the `mpnas_local` stack's orchestrator."""

    @property
    def name(self) -> str:
        return FLAVOR

    @property
    def config_class(self) -> Type[ParallelLocalOrchestratorConfig]:
        return ParallelLocalOrchestratorConfig

    @property
    def implementation_class(self) -> Type[ParallelLocalOrchestrator]:
        return ParallelLocalOrchestrator
