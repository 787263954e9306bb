"""`train.warm_start`: the merged model starts as the supernet it was searched in. With batch statistics on both sides
(training mode, no dropout), each domain's logits equal the supernet's along that domain's searched path."""

import pytest
import torch
from torch import nn

from mpnas.data.prepared import PreparedDataset
from mpnas.models.blocks import init_classifier
from mpnas.nas.search import run_search
from mpnas.nas.supernet import SuperNet
from mpnas.space import genotypes_from_json
from mpnas.training.trainer import build_model, resolve_space, train_model
from mpnas.training.warm_start import load_supernet_state, warm_start

SEARCH = ["search.steps=4", "search.batch_size=8", "search.val_batch_multiplier=1", "search.log_every=2",
          "search.checkpoint_every=2", "train.dropout=0"]


@pytest.fixture(scope="module")
def searched(tiny_config, tiny_data, tmp_path_factory):
    cfg = tiny_config(*SEARCH)
    out = tmp_path_factory.mktemp("warm") / "search"
    run_search(cfg, tiny_data, out, progress=False)
    return cfg, out


def _supernet_logits(state, cfg, x, genotype, index):
    net = SuperNet(resolve_space(cfg))
    net.load_state_dict({k[2:]: v for k, v in state["nets"].items() if k.startswith("0.")})
    head = nn.Linear(net.head.out_features, state["classifiers"][f"{index}.weight"].shape[0])
    init_classifier(head)
    head.load_state_dict({"weight": state["classifiers"][f"{index}.weight"],
                          "bias": state["classifiers"][f"{index}.bias"]})
    return head(net(x, genotype.choices))


@pytest.mark.parametrize("bn_mode", ["per_domain", "per_domain_affine"])
def test_every_domain_starts_as_the_supernet_along_its_path(searched, tiny_data, bn_mode):
    cfg, out = searched
    cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update={"bn_mode": bn_mode})})
    genotypes = genotypes_from_json((out / "genotypes.json").read_text())
    ds = PreparedDataset(tiny_data)
    domains = list(genotypes)
    state = load_supernet_state(out)
    model = build_model(cfg, ds, genotypes, domains).train()
    warm_start(model, state)
    cold = build_model(cfg, ds, genotypes, domains).train()
    torch.manual_seed(1)
    x = torch.randn(6, 3, cfg.data.crop, cfg.data.crop)
    with torch.no_grad():
        for i, d in enumerate(state["domains"]):
            expected = _supernet_logits(state, cfg, x, genotypes[d], i)
            torch.testing.assert_close(model(x, d), expected, rtol=1e-4, atol=1e-5, msg=f"domain {d}")
            assert not torch.allclose(cold(x, d), expected, atol=1e-3)  # a random start is not the supernet


def test_a_warm_started_training_runs(searched, tiny_data, tmp_path):
    cfg, out = searched
    train = cfg.train.model_copy(update={"warm_start": out / "checkpoint.pt", "steps": 3, "eval_every": 3})
    genotypes = genotypes_from_json((out / "genotypes.json").read_text())
    res = train_model(cfg.model_copy(update={"train": train}), tiny_data, genotypes, tmp_path / "m", progress=False)
    assert len(res.history) == 3
    missing = cfg.train.model_copy(update={"warm_start": tmp_path / "nowhere"})
    with pytest.raises(FileNotFoundError, match="train.warm_start"):  # refused before any step or file
        train_model(cfg.model_copy(update={"train": missing}), tiny_data, genotypes, tmp_path / "m2", progress=False)
    assert not (tmp_path / "m2").exists()


def test_bad_sources_are_refused_naming_the_field(searched, tiny_data, tmp_path):
    cfg, out = searched
    genotypes = genotypes_from_json((out / "genotypes.json").read_text())
    ds = PreparedDataset(tiny_data)

    def build(source):
        warm_start(build_model(cfg, ds, genotypes, list(genotypes)), load_supernet_state(source, ds.content_hash))

    with pytest.raises(FileNotFoundError, match="train.warm_start: .*does not exist"):
        build(tmp_path / "nowhere")
    state = load_supernet_state(out)
    state["domains"] = state["domains"][:1]
    from mpnas.nas.checkpoint import save_checkpoint

    save_checkpoint(tmp_path / "one_domain.pt", state)
    with pytest.raises(ValueError, match="train.warm_start: the search covered"):
        build(tmp_path / "one_domain.pt")
    state = load_supernet_state(out)
    state["data_hash"] = "0" * 64
    save_checkpoint(tmp_path / "other_data.pt", state)
    with pytest.raises(ValueError, match="train.warm_start: .*searched data with content hash 000000000000"):
        build(tmp_path / "other_data.pt")
