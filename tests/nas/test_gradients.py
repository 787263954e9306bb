"""Every parameter that should learn gets a gradient, in every search mode: all supernet and classifier weights
during the op warm-up (every layer runs the mixture of its ops), and every controller (and the shared prior) once
REINFORCE runs."""

import pytest
import torch

from mpnas.data.prepared import PreparedDataset
from mpnas.nas.search import SearchEngine, build_space

MODES = ["multi_path", "multi_head", "independent"]
DOMAINS = ["alpha", "beta", "gamma"]


def _engine(tiny_config, tiny_data, mode, *overrides):
    cfg = tiny_config(f"search.mode={mode}", "search.steps=8", *overrides)
    return SearchEngine(cfg, PreparedDataset(tiny_data), DOMAINS, build_space(cfg))


def _without_gradient(named) -> list[str]:
    return [n for n, p in named if p.grad is None or not torch.isfinite(p.grad).all() or not p.grad.abs().sum() > 0]


@pytest.mark.parametrize("mode", MODES)
def test_warm_up_step_gives_every_weight_a_gradient(tiny_config, tiny_data, mode):
    engine = _engine(tiny_config, tiny_data, mode, "search.op_warmup_fraction=0.25")  # step 0: all layers mix
    engine.run_step()
    assert len(engine.nets) == (3 if mode == "independent" else 1)
    assert not _without_gradient(engine.nets.named_parameters())
    assert not _without_gradient(engine.classifiers.named_parameters())
    assert all(p.grad is None for p in engine.controllers.parameters())  # RL is delayed: the policy did not move


@pytest.mark.parametrize("mode,prior", [(m, "none") for m in MODES] + [("multi_path", "shared")])
def test_reinforce_gives_every_controller_a_gradient(tiny_config, tiny_data, mode, prior):
    engine = _engine(tiny_config, tiny_data, mode, "search.op_warmup_fraction=0", "search.rl_delay_fraction=0",
                     f"search.tying.prior={prior}")
    for _ in range(2):  # step 1's EMA baseline is its own reward (zero advantage): step 2 is the first to learn
        engine.run_step()
        engine.step += 1
    assert len(engine.controllers) == (1 if mode == "multi_head" else 3)
    assert not _without_gradient(engine.controllers.named_parameters())
    if prior == "shared":
        assert not _without_gradient(engine.prior.named_parameters())
