"""Lowering shared among processes gives the same .pte bytes as lowering in one, for fp32 and int8 programs."""

from __future__ import annotations

import pytest
import torch

from mpnas.export import pte
from mpnas.export.parallel import (INT8_COST, WORKER_START_COST, lower_programs, plan_shares, processes_for,
                                   start_workers)
from mpnas.export.programs import domain_program, entry_names


def test_plan_shares_balances_cost_and_keeps_two_methods_per_worker():
    costs = {("int8", f"m{k}"): INT8_COST for k in range(4)} | {("fp32", f"m{k}"): 1.0 for k in range(4)}
    shares = plan_shares(costs, workers=2)
    assert len(shares) == 2 and sorted(sum(shares, [])) == sorted(costs)
    loads = [sum(costs[i] for i in s) + (WORKER_START_COST if k else 0) for k, s in enumerate(shares)]
    assert abs(loads[0] - loads[1]) <= INT8_COST  # no share is more than one method behind the other
    assert len(plan_shares(costs, workers=16)) == 4  # never fewer than two methods a worker
    three = {("fp32", "m0"): 1.0, ("fp32", "m1"): 1.0, ("fp32", "m2"): 1.0}
    assert plan_shares(three, workers=2) == [sorted(three)]  # one process when a worker would get under two
    assert len(plan_shares(three, workers=2, min_per_worker=1)) == 2
    assert processes_for({"fp32": 10}, 2) == 2 and processes_for({"fp32": 3}, 2) == 1
    assert processes_for({"fp32": 10, "int8": 10}, 16, {"int8": INT8_COST}) == 10


@pytest.mark.slow
def test_a_program_lowered_half_here_half_in_a_worker_has_the_same_pte_bytes(tiny):
    """A two-method fp32 program, one method lowered here and one in a worker, reassembled: the same bytes as one
    lowering (each lowering call costs seconds even for this tiny model, hence so few). The int8 program in a worker
    is exercised by the package's full export (`exported`: int8 on, two domains, so two processes)."""
    example = torch.zeros(1, 3, 16, 16)
    names = entry_names(tiny.domains)
    methods = {f"forward_{names[d]}": pte.export_program(domain_program(tiny, d), example) for d in tiny.domains}
    programs = {"fp32": methods}
    assert [len(share) for share in plan_shares({("fp32", m): 1.0 for m in methods}, 2, min_per_worker=1)] == [1, 1]
    serial = lower_programs(programs, workers=1)
    with start_workers(2) as pool:  # started before the work exists, as the exporter does
        parallel = lower_programs(programs, workers=2, min_per_worker=1, pool=pool)
    assert parallel["fp32"].methods == set(methods)  # a set in ExecuTorch; the order is checked by the bytes below
    assert pte.to_pte_bytes(parallel["fp32"]) == pte.to_pte_bytes(serial["fp32"])
