"""GPU readiness on the CPU (issue 12): a search step reads device values back to the host exactly twice (the weight
step's scalars, the rewards), and the controllers live on the CPU whatever the training device."""

import sys

import torch

from mpnas.data.prepared import PreparedDataset
from mpnas.nas.search import SearchEngine, build_space

READS = ("item", "tolist", "cpu", "numpy", "__float__")


def test_one_step_reads_back_twice(tiny_config, tiny_data, monkeypatch):
    cfg = tiny_config("search.steps=4", "search.rl_delay_fraction=0", "search.op_warmup_fraction=0",
                      "search.paths_per_domain=2")
    engine = SearchEngine(cfg, PreparedDataset(tiny_data), ["alpha", "beta", "gamma"], build_space(cfg))
    engine.run_step()  # first step builds caches
    engine.step += 1
    controller_params = {id(p) for p in engine.controllers.parameters()}
    calls = []
    for name in READS:
        original = getattr(torch.Tensor, name)

        def counted(self, *a, _orig=original, _name=name, **kw):
            caller = sys._getframe(1).f_code.co_filename
            # reads by the engine or the supernet of values computed on the training device
            if caller.endswith(("nas/search.py", "nas/supernet.py")) and id(self) not in controller_params:
                calls.append(_name)
            return _orig(self, *a, **kw)
        monkeypatch.setattr(torch.Tensor, name, counted)
    engine.run_step()
    assert calls == ["tolist", "cpu", "numpy"], calls  # weight-step scalars, then the rewards (one .cpu().numpy())


def test_controllers_stay_on_the_cpu(tiny_config, tiny_data):
    cfg = tiny_config("search.tying.prior=shared")
    engine = SearchEngine(cfg, PreparedDataset(tiny_data), ["alpha", "beta", "gamma"], build_space(cfg),
                          )
    assert all(p.device.type == "cpu" for p in engine.controllers.parameters())
    assert engine.prior.logits.device.type == "cpu"
