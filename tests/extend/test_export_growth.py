"""Exporting the grown model: one more .pte method, and the new method stores only what add-domain added (its new
nodes, its classifier, its per-domain BN scale/shift vectors); the reused nodes' weights are the old methods' blobs."""

import torch

from mpnas.export import pte
from mpnas.export.programs import domain_program
from mpnas.export.sharing import constant_tables
from mpnas.extend import add_domain
from mpnas.models.blocks import DomainBatchNorm2d

from .conftest import save_parent


def test_grown_pte_has_one_more_method_and_stores_shared_weights_once(add_cfg, add_data, tmp_path):
    parent_dir = save_parent(add_cfg, add_data, tmp_path / "parent")
    grown = add_domain(add_cfg, parent_dir, add_data, "gamma", tmp_path / "out").model.eval()
    example = torch.zeros(1, 3, 16, 16)
    edge = pte.lower({f"forward_{d}": pte.export_program(domain_program(grown, d), example) for d in grown.domains})
    tables = constant_tables(edge)
    assert sorted(tables) == ["forward_alpha", "forward_beta", "forward_gamma"]
    old = set(tables["forward_alpha"]) | set(tables["forward_beta"])
    own_bytes = sum(n for h, n in tables["forward_gamma"].items() if h not in old)

    summary = grown.meta["added_domain"]
    path = grown.domain_module("gamma")
    bn_vectors = sum(2 * 4 * bn.running_mean.shape[-1] for bn in path.modules() if isinstance(bn, DomainBatchNorm2d))
    new_weights = 4 * sum(p.numel() for k in summary["new_nodes"] for m in grown.nodes[k].modules()
                          if not isinstance(m, DomainBatchNorm2d)  # BN becomes the scale/shift vectors
                          for p in m.parameters(recurse=False))
    classifier = 4 * sum(p.numel() for p in grown.classifiers["gamma"].parameters())
    bound = new_weights + classifier + bn_vectors
    reused = 4 * sum(p.numel() for k in grown.paths["gamma"] if k is not None and k not in summary["new_nodes"]
                     for p in grown.nodes[k].parameters() if p.ndim > 1)
    assert reused > 0, "the searched path should reuse at least the stem"
    assert own_bytes <= bound, (own_bytes, bound)  # a re-stored reused weight would add `reused` bytes
