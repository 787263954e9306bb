"""The schedule replay: list scheduling in virtual time gives the makespan by hand, and longest chain first beats the
layer order when a chain is gated behind independent steps."""

from benchmarks.schedule_replay import replay
from pipelines.parallel_orchestrator import start_order


def test_replay_makespans_by_hand():
    upstream = {"a": [], "t1": ["a"], "t2": ["a"], "u": ["a"], "eval_u": ["u"], "m": ["eval_u"]}
    seconds = {"a": 1, "t1": 10, "t2": 10, "u": 10, "eval_u": 1, "m": 10}
    # layer order: a | t1 t2 | u (+eval_u, m alone) = 1 + 10 + 10 + 1 + 10
    assert replay(upstream, seconds, 2, list(upstream)) == 32
    # chain first: a | u t1 | eval_u m after u, t2 beside them = 1 + 10 + max(1 + 10, 10)
    assert replay(upstream, seconds, 2, start_order(upstream)) == 22
    assert replay(upstream, seconds, 1, list(upstream)) == sum(seconds.values())
