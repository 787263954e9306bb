"""The mpnas_local stack's orchestrator: with `max_parallel_steps: 2` independent steps run at the same time, each in
its own process with its share of the threads, downstream steps wait for their inputs, and a failed step skips only
what depends on it; with the default (1) steps run in the pipeline's process as under ZenML's local orchestrator."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from zenml import pipeline, step

from pipelines.parallel_orchestrator import run_dag


@step(enable_cache=False)
def stamp(tag: str, hold_s: float = 0.0, fail: bool = False) -> dict:
    start = time.time()
    time.sleep(hold_s)
    if fail:
        raise RuntimeError(f"step {tag} fails on purpose")
    import torch

    return {"tag": tag, "pid": os.getpid(), "start": start, "end": time.time(),
            "omp": os.environ.get("OMP_NUM_THREADS"), "torch_threads": torch.get_num_threads()}


@step(enable_cache=False)
def join(a: dict, b: dict) -> list:
    return sorted([a["tag"], b["tag"]])


@pipeline(enable_cache=False)
def fan_out(fail_b: bool = False) -> None:
    first = stamp(tag="first", id="first")
    b = stamp(tag="b", hold_s=4.0, fail=fail_b, id="b", after=[first])
    c = stamp(tag="c", hold_s=4.0, id="c", after=[first])
    join(b, c, id="join")


def _outputs(run) -> dict:
    return {name: s.outputs["output"][0].load() for name, s in run.steps.items() if s.status.value == "completed"}


def _last_run():
    from zenml.client import Client

    client = Client()
    return client.get_pipeline_run(client.list_pipeline_runs(sort_by="desc:created", size=1).items[0].id)


@pytest.mark.slow
def test_two_independent_steps_run_at_once_in_their_own_processes(zenml_stack):
    fan_out.with_options(settings={"orchestrator": {"max_parallel_steps": 2, "threads_per_step": 1}})()
    run = _last_run()
    assert run.status.value == "completed"
    out = _outputs(run)
    first, b, c = out["first"], out["b"], out["c"]
    assert len({first["pid"], b["pid"], c["pid"], os.getpid()}) == 4  # one process per step, none of them ours
    assert b["start"] < c["end"] and c["start"] < b["end"]  # b and c overlapped
    assert first["end"] <= min(b["start"], c["start"])  # both waited for their upstream step
    assert out["join"] == ["b", "c"]
    assert b["omp"] == "1" and b["torch_threads"] == 1


@pytest.mark.slow
def test_a_failed_step_skips_what_depends_on_it_and_nothing_else(zenml_stack):
    with pytest.raises(RuntimeError, match="failure in step\\(s\\): b"):
        fan_out.with_options(settings={"orchestrator": {"max_parallel_steps": 2}})(fail_b=True)
    run = _last_run()
    assert run.steps["b"].status.value == "failed"
    assert run.steps["c"].status.value == "completed"  # the sibling still ran: its output is cached for a rerun
    assert "join" not in run.steps or run.steps["join"].status.value != "completed"


@pytest.mark.slow
def test_one_step_at_a_time_runs_in_the_pipeline_process(zenml_stack):
    fan_out.with_options(enable_cache=False)()
    out = _outputs(_last_run())
    assert {out[n]["pid"] for n in ("first", "b", "c")} == {os.getpid()}
    assert out["b"]["end"] <= out["c"]["start"] or out["c"]["end"] <= out["b"]["start"]


# ------------------------------------------------------------------------------------------------- the scheduler
def _sleeper(seconds: float, rc: int = 0):
    def launch(name: str) -> subprocess.Popen:
        launched.append((name, time.time()))
        code = rc if name == "bad" else 0
        return subprocess.Popen([sys.executable, "-c", f"import time, sys; time.sleep({seconds}); sys.exit({code})"])

    launched: list = []
    return launch, launched


def test_run_dag_keeps_to_the_limit_and_to_dependencies():
    launch, launched = _sleeper(0.6)
    upstream = {"a": [], "b": ["a"], "c": ["a"], "d": ["a"], "e": ["b", "c", "d"]}
    done, failed, skipped = run_dag(upstream, launch, max_parallel=2, log=lambda _: None)
    assert sorted(done) == sorted(upstream) and not failed and not skipped
    order = [n for n, _ in launched]
    assert order[0] == "a" and order[-1] == "e"
    t = dict(launched)
    assert abs(t["b"] - t["c"]) < 0.5  # b and c together, d only once one of them finished
    assert t["d"] - t["b"] > 0.5


def test_run_dag_skips_downstream_of_a_failure_and_continues_elsewhere():
    launch, launched = _sleeper(0.2, rc=3)
    upstream = {"a": [], "bad": ["a"], "after_bad": ["bad"], "other": ["a"]}
    done, failed, skipped = run_dag(upstream, launch, max_parallel=2, log=lambda _: None)
    assert failed == ["bad"] and skipped == ["after_bad"] and sorted(done) == ["a", "other"]


def test_run_dag_fail_fast_starts_nothing_after_a_failure():
    from zenml.enums import ExecutionMode

    launch, launched = _sleeper(0.2, rc=3)
    upstream = {"bad": [], "x": ["bad"], "y": []}
    done, failed, skipped = run_dag(upstream, launch, max_parallel=1, mode=ExecutionMode.FAIL_FAST,
                                    log=lambda _: None)
    assert failed == ["bad"] and sorted(skipped) == ["x", "y"] and not done


@pytest.mark.parametrize("bad", [{"max_parallel_steps": 0}, {"max_paralel_steps": 2}, {"threads_per_step": "two"}])
def test_bad_orchestrator_settings_are_refused_before_any_step(zenml_stack, bad):
    from zenml.client import Client

    before = Client().list_pipeline_runs(size=1).total
    with pytest.raises(Exception, match="max_parallel_steps|max_paralel_steps|threads_per_step"):
        fan_out.with_options(settings={"orchestrator": bad})()
    assert Client().list_pipeline_runs(size=1).total == before


def test_run_dag_starts_the_head_of_the_longest_chain_first():
    """Layer order would run the three independent trainings first and leave the gated chain (train_u -> eval_u ->
    train_m) to run alone at the end; longest chain first starts train_u at once."""
    launch, launched = _sleeper(0.3)
    upstream = {"t1": [], "t2": [], "t3": [], "train_u": [], "eval_u": ["train_u"], "train_m": ["eval_u"]}
    run_dag(upstream, launch, max_parallel=2, first_alone=False, log=lambda _: None)
    order = [n for n, _ in launched]
    assert order[0] == "train_u" and order.index("eval_u") < order.index("t3")
