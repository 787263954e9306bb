"""Evaluation numbers are exact: FLOPs per path and of the union equal the analytic costs, top-1 and the decathlon
score are right on hand-made predictions."""

import numpy as np
import pytest
import torch
from torch import nn

from mpnas.data.prepared import channel_stats, write_meta, write_split
from mpnas.data.prepared import PreparedDataset
from mpnas.evaluation.costs import path_flops, union_flops
from mpnas.evaluation.metrics import (DECATHLON_BASELINE_ACC, decathlon_score, domain_score, official_e_max,
                                      reference_e_max, split_accuracy)
from mpnas.models.multipath import MultiPathNet
from mpnas.space import Genotype, SearchSpace


@pytest.fixture
def model(tiny_cfg):
    space = SearchSpace.from_config(tiny_cfg.space, 16)
    g = {"a": Genotype.from_strings(["conv_k3", "ir_k3_e2", "zero", "ir_k5_e2_se", "ir_k3_e1"]),
         "b": Genotype.from_strings(["conv_k3", "ir_k3_e2", "ir_k5_e1_se", "ir_k3_e2", "zero"])}
    return MultiPathNet(space, g, {"a": 3, "b": 7}, space_config=tiny_cfg.space)


@pytest.mark.parametrize("share", [True, False])
def test_flops_match_analytic_costs(model, tiny_cfg, share):
    if not share:
        model = MultiPathNet(model.space, model.genotypes, model.num_classes, share_nodes=False)
    s = model.space
    for d, g in model.genotypes.items():
        assert path_flops(model, d) == s.path_flops(g, model.num_classes[d])
    nodes = {(i, str(c)) for g in model.genotypes.values() for i, c in enumerate(g.choices) if not c.is_zero}
    node_madds = sum(s.layers[i].cost(next(c for c in s.layers[i].choices() if str(c) == b))[0] for i, b in nodes)
    if not share:
        node_madds = sum(s.path_cost(g)[0] - s.head_cost()[0] for g in model.genotypes.values())
    heads = 1 if share else 2
    clf = sum(s.head_widths[-1] * k for k in model.num_classes.values())
    assert union_flops(model) == 2 * (node_madds + heads * s.head_cost()[0] + clf)


def test_decathlon_score_official_baselines():
    e_max = official_e_max(list(DECATHLON_BASELINE_ACC))
    base = {d: a / 100 for d, a in DECATHLON_BASELINE_ACC.items()}
    total, per = decathlon_score(base, e_max)
    assert total == pytest.approx(2500.0) and all(v == pytest.approx(250.0) for v in per.values())
    assert decathlon_score({d: 1.0 for d in base}, e_max)[0] == pytest.approx(10000.0)
    # svhn: baseline error .0345, E_max .069; accuracy .9655 - .0345 = .931 -> error .069 = E_max -> 0 points
    assert domain_score(1 - 0.069, e_max["svhn"]) == pytest.approx(0.0, abs=1e-9)
    # dtd: E_max .8894, error .2 -> 1000 * ((.8894 - .2) / .8894)^2
    assert domain_score(0.8, e_max["dtd"]) == pytest.approx(1000 * ((0.8894 - 0.2) / 0.8894) ** 2)
    assert domain_score(0.0, e_max["gtsrb"]) == 0.0  # worse than E_max is clipped at zero
    assert official_e_max(["dtd", "texture"]) is None
    assert decathlon_score({"dtd": None}, {"dtd": 0.5})[0] is None


def test_reference_e_max():
    ref = {"domains": {"x": {"top1_test": 0.75}, "y": {"top1_test": 1.0}}}
    assert reference_e_max(ref, ["x", "y"], "ref.json") == {"x": 0.5, "y": 0.0}
    assert domain_score(1.0, 0.0) == 1000.0 and domain_score(0.99, 0.0) == 0.0
    with pytest.raises(ValueError, match=r"ref.json.*domains.z.top1_test"):
        reference_e_max(ref, ["z"], "ref.json")


class _Scripted(nn.Module):
    """Returns pre-set predictions batch by batch (iterate_split is ordered), whatever the input."""

    def __init__(self, preds: list[int], n_classes: int):
        super().__init__()
        self.logits = torch.nn.functional.one_hot(torch.tensor(preds), n_classes).float()
        self.pos = 0

    def forward(self, x, domain):
        out = self.logits[self.pos:self.pos + len(x)]
        self.pos += len(x)
        return out


def test_top1_on_hand_made_predictions(tmp_path):
    labels = np.array([0, 1, 2, 0, 1, 2, 0, 1])
    imgs = np.zeros((8, 8, 8, 3), np.uint8)
    for split in ("train", "searchval", "val", "test"):
        write_split(tmp_path, "x", split, imgs, labels)
    mean, std = channel_stats(imgs)
    write_meta(tmp_path, 8, "test", {"x": {"classes": ["a", "b", "c"], "splits": {s: 8 for s in
               ("train", "searchval", "val", "test")}, "labeled": {"train": True, "searchval": True, "val": True,
               "test": False}, "mean": mean, "std": std}})
    ds = PreparedDataset(tmp_path)
    preds = [0, 1, 2, 1, 1, 0, 0, 2]  # 5 of 8 right, across batches of 3
    assert split_accuracy(_Scripted(preds, 3), ds, "x", "val", 8, batch_size=3) == 5 / 8
    assert split_accuracy(_Scripted(preds, 3), ds, "x", "test", 8, batch_size=3) is None  # unlabelled test split
