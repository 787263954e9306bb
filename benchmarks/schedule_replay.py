"""Replay a finished pipeline run's measured step durations through the parallel orchestrator's start rule, in
virtual time, under two orders of ready steps: the snapshot's (layer by layer) and longest downstream chain first
(pipelines/parallel_orchestrator.py). What the order alone changes in the makespan, with the same steps and slots.

    python -m benchmarks.schedule_replay --run <pipeline run name or id> --slots 2

It reads the run from the active ZenML store (run it with the Makefile's environment). Step durations are ZenML's
step start-to-end times, so they exclude each step process's start-up, and the replay's makespans are lower bounds
for a real run with that order."""

from __future__ import annotations

import argparse
import heapq
import json
from typing import Dict, List

from pipelines.parallel_orchestrator import start_order, steps_to_start


def replay(upstream: Dict[str, List[str]], seconds: Dict[str, float], slots: int, order: List[str]) -> float:
    """Makespan in virtual time when ready steps start in `order` by the orchestrator's start rule
    (`steps_to_start`); the first step runs alone, as the orchestrator runs it."""
    done: set[str] = set()
    waiting = list(order)
    running: list[tuple[float, str]] = []
    now = 0.0
    while waiting or running:
        for name in steps_to_start(waiting, upstream, done, len(running), slots if done else 1):
            waiting.remove(name)
            heapq.heappush(running, (now + seconds.get(name, 0.0), name))
        now, name = heapq.heappop(running)
        done.add(name)
    return now


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True, help="ZenML pipeline run name or id (a finished run)")
    parser.add_argument("--slots", type=int, default=2, help="steps at once (max_parallel_steps)")
    parser.add_argument("--json", help="also write the result here")
    args = parser.parse_args(argv)

    from zenml.client import Client

    run = Client().get_pipeline_run(args.run)
    order = list(run.snapshot.step_configurations) if run.snapshot else list(run.steps)
    upstream = {n: [u for u in run.steps[n].spec.upstream_steps if u in run.steps] for n in order if n in run.steps}
    seconds = {n: (s.end_time - s.start_time).total_seconds() for n, s in run.steps.items()
               if s.start_time and s.end_time}
    result = {"run": run.name, "slots": args.slots, "steps": len(upstream),
              "sum_of_step_seconds": round(sum(seconds.values()), 1),
              "makespan_snapshot_order_s": round(replay(upstream, seconds, args.slots, list(upstream)), 1),
              "makespan_longest_chain_first_s": round(replay(upstream, seconds, args.slots, start_order(upstream)),
                                                      1)}
    result["lower_bound_s"] = round(result["sum_of_step_seconds"] / args.slots, 1)
    print(json.dumps(result, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
