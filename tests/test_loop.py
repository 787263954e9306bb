"""The loop toolkit shared by search and training: RNG state round-trips, one schedule, one decay rule, one time
format."""

import math
import random

import numpy as np
import pytest
import torch
from torch import nn

from mpnas.loop import (decay_groups, format_duration, rng_states, seed_everything, set_rng_states, warmup_cosine,
                        warmup_steps)


def _draws():
    return torch.rand(3).tolist(), np.random.rand(3).tolist(), [random.random() for _ in range(3)]


def test_rng_states_restore_every_generator():
    seed_everything(3)
    state = rng_states()
    first = _draws()
    set_rng_states(state)
    assert _draws() == first


def test_one_schedule_warms_up_then_decays_to_zero():
    assert warmup_steps(0.025, 60) == 1 and warmup_steps(0.29, 100) == 29 and warmup_steps(0.0, 10) == 0
    lrs = [warmup_cosine(t, 20, 4, peak=0.5) for t in range(20)]
    assert lrs[:4] == pytest.approx([0.125, 0.25, 0.375, 0.5])
    assert all(a >= b for a, b in zip(lrs[3:], lrs[4:])) and lrs[-1] < 0.01
    assert warmup_cosine(0, 10, 0) == 1.0  # no warm-up: full rate at the first step


def test_decay_skips_norms_biases_classifiers_and_extras():
    net = nn.ModuleDict({"body": nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)),
                         "classifiers": nn.ModuleList([nn.Linear(4, 2)])})
    extra = nn.Parameter(torch.zeros(2))
    decay, plain = decay_groups(net.named_parameters(), 0.1, [extra])
    assert decay["weight_decay"] == 0.1 and plain["weight_decay"] == 0.0
    assert [p.shape for p in decay["params"]] == [torch.Size([4, 3, 3, 3])]
    assert len(plain["params"]) == 6 and plain["params"][-1] is extra


def test_one_time_format():
    assert format_duration(59.6) == "1m00s" and format_duration(3723) == "1h02m03s"
    assert format_duration(math.inf) == "?" and format_duration(math.nan) == "?" and format_duration(-1) == "0m00s"
