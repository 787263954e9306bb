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
def test_a_worker_process_writes_the_same_pte_bytes_as_this_one(tiny):
    """One fp32 and one int8 method (the int8 one in the worker, so its quantized ops must load there); lowering costs
    about 5-10 s a method even for this tiny model, hence one method each."""
    d = tiny.domains[0]
    method = f"forward_{entry_names(tiny.domains)[d]}"
    program = domain_program(tiny, d)
    example = torch.zeros(1, 3, 16, 16)
    calibration = torch.randn(8, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    programs = {"fp32": {method: pte.export_program(program, example)},
                "int8": {method: pte.quantize_pt2e(program, example, calibration)}}
    costs = {"fp32": 5.0, "int8": 1.0}
    assert plan_shares({(p, method): costs[p] for p in programs}, 2, min_per_worker=1) == \
        [[("fp32", method)], [("int8", method)]]
    serial = lower_programs(programs, workers=1)
    with start_workers(2) as pool:  # started before the work exists, as the exporter does
        parallel = lower_programs(programs, workers=2, costs=costs, min_per_worker=1, pool=pool)
    for p in programs:
        assert list(parallel[p].methods) == [method]
        assert pte.to_pte_bytes(parallel[p]) == pte.to_pte_bytes(serial[p]), p
