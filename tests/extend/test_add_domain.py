"""add-domain end to end on tiny synthetic data: old domains identical, only new parameters changed, added
parameters counted, resume, the search's use of the frozen trained nodes."""

import json
import re

import pytest
import torch

from mpnas.data.loading import iterate_split
from mpnas.data.prepared import PreparedDataset
from mpnas.extend import add_domain
from mpnas.extend.grow import grow_model
from mpnas.extend.search import AddDomainSearch
from mpnas.models.multipath import load_model

from .conftest import save_parent


@pytest.fixture(scope="module", params=["per_domain", "per_domain_affine"])
def added(request, tmp_path_factory, add_cfg, add_data):
    root = tmp_path_factory.mktemp(f"add_{request.param}")
    parent_dir = save_parent(add_cfg, add_data, root / "parent", request.param)
    result = add_domain(add_cfg, parent_dir, add_data, "gamma", root / "out")
    return parent_dir, root / "out", result


def test_old_domains_logits_on_their_test_images_are_bit_identical(added, add_data):
    parent_dir, out, _ = added
    parent, grown = load_model(parent_dir), load_model(out)
    ds = PreparedDataset(add_data)
    assert grown.domains == ["alpha", "beta", "gamma"]
    with torch.no_grad():
        for d in parent.domains:
            for x, _ in iterate_split(ds, d, "test", 64, 16):
                assert torch.equal(parent(x, d), grown(x, d)), d


def test_only_new_parameters_changed_and_added_parameters_are_counted(added):
    parent_dir, out, result = added
    parent, grown = load_model(parent_dir), load_model(out)
    before, after = parent.state_dict(), grown.state_dict()
    for name, value in before.items():
        now = after[name]
        assert torch.equal(now[:value.shape[0]] if now.shape != value.shape else now, value), name
    s = json.loads((out / "add_domain.json").read_text())
    new_params = sum(p.numel() for k in s["new_nodes"] for p in grown.nodes[k].parameters())
    new_params += sum(p.numel() for p in grown.classifiers["gamma"].parameters())
    if grown.bn_mode == "per_domain_affine":  # the new row of every BN in the parent's modules (nodes and head)
        new_params += sum(2 * t.shape[-1] for n, t in before.items() if n.endswith(".weight") and t.ndim == 2
                          and t.shape[0] == 2 and ".bn." in n)
    assert s["added_parameters"] == new_params == grown.num_parameters() - parent.num_parameters()
    assert s["added_parameters"] > 0 and s["old_domains_identical"] == {"alpha": True, "beta": True}
    assert set(s["new_nodes"]) == set(grown.nodes) - set(parent.nodes)
    arch = json.loads((out / "architecture.json").read_text())
    assert arch["parent"]["weights_sha256"] == s["parent"]["weights_sha256"]
    assert arch["added_domain"]["new_nodes"] == s["new_nodes"]
    assert result.summary["genotype"] == arch["genotypes"]["gamma"]


def test_search_runs_reused_nodes_with_their_trained_frozen_weights(add_cfg, add_data, tmp_path):
    parent = load_model(save_parent(add_cfg, add_data, tmp_path / "parent"))
    host = grow_model(parent, "gamma", parent.genotypes["alpha"], 3)
    frozen = {k: v.clone() for k, v in host.state_dict().items() if "running" not in k}
    search = AddDomainSearch(add_cfg, PreparedDataset(add_data), "gamma", host)
    ops = list(parent.genotypes["beta"].choices)  # every node exists: the supernet must not be used at all
    x = torch.randn(4, 3, 16, 16)
    search.logits(x, ops).sum().backward()
    assert all(p.grad is None for p in search.supernet.parameters())
    host.train()
    expected = search.classifier(host.heads["shared"](_through(host, parent.paths["beta"], x), 2))
    assert torch.equal(search.logits(x, ops), expected)
    search.run(lambda state: None)
    assert all(torch.equal(v, host.state_dict()[k]) for k, v in frozen.items())


def _through(model, keys, x):
    x = x.contiguous(memory_format=torch.channels_last)
    for k in keys:
        if k is not None:
            x = model.nodes[k](x, 2)
    return x


def test_resume_after_a_finished_run_gives_the_same_model(added, add_cfg, add_data, tmp_path):
    parent_dir, out, result = added
    lines: list[str] = []
    again = add_domain(add_cfg, parent_dir, add_data, "gamma", out, resume=True, log=lines.append)
    assert again.summary["genotype"] == result.summary["genotype"]
    s, t = add_cfg.search.steps, add_cfg.train.steps
    assert f"resuming the add-domain search at step {s}/{s}" in lines
    assert f"resuming the add-domain training at step {t}/{t}" in lines
    assert all(torch.equal(a, b) for a, b in zip(again.model.state_dict().values(),
                                                 result.model.state_dict().values()))


def test_resume_after_an_interrupted_search_continues_bit_for_bit(add_cfg, add_data, tmp_path, monkeypatch):
    cfg = add_cfg.model_copy(update={"search": add_cfg.search.model_copy(update={"checkpoint_every": 3})})
    parent_dir = save_parent(cfg, add_data, tmp_path / "parent")
    straight = add_domain(cfg, parent_dir, add_data, "gamma", tmp_path / "straight")
    real_step = AddDomainSearch.run_step

    def interrupted(self):
        if self.step == 4:
            raise KeyboardInterrupt
        return real_step(self)

    monkeypatch.setattr(AddDomainSearch, "run_step", interrupted)
    with pytest.raises(KeyboardInterrupt):
        add_domain(cfg, parent_dir, add_data, "gamma", tmp_path / "resumed")
    ran = []
    monkeypatch.setattr(AddDomainSearch, "run_step", lambda self: ran.append(self.step) or real_step(self))
    lines, logged = [], []
    resumed = add_domain(cfg, parent_dir, add_data, "gamma", tmp_path / "resumed", resume=True, log=lines.append,
                         on_log=lambda phase, step, m: logged.append((phase, step, "loss" in m)))
    assert ran == [3, 4, 5]  # continued from the step-3 checkpoint, not from the start
    s, t = cfg.search.steps, cfg.train.steps
    assert re.fullmatch(rf"add-domain search {s}/{s} \| [0-9.]+ step/s \| ETA \S+ \| reward .* \| loss [0-9.]+",
                        next(x for x in lines if x.startswith(f"add-domain search {s}/")))
    assert re.fullmatch(rf"add-domain train {t}/{t} \| [0-9.]+ step/s \| ETA \S+ \| loss [0-9.]+ \| train acc [0-9.]+",
                        next(x for x in lines if x.startswith(f"add-domain train {t}/")))
    assert ("search", s, True) in logged and ("train", t, True) in logged
    assert resumed.summary["genotype"] == straight.summary["genotype"]
    for (name, a), b in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), name
