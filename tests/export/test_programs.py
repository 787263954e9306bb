import torch

from mpnas.export.programs import domain_program, entry_names
from mpnas.models.blocks import DomainBatchNorm2d


def test_domain_program_matches_eager_per_domain(tiny):
    x = torch.randn(3, 3, 16, 16)
    outs = {}
    for d in tiny.domains:
        program = domain_program(tiny, d)
        assert not any(isinstance(m, DomainBatchNorm2d) for m in program.modules())
        with torch.no_grad():
            outs[d] = program(x)
            torch.testing.assert_close(outs[d], tiny(x, d), rtol=1e-5, atol=1e-5)
    # the per-domain statistics matter: the shared stem under alpha's statistics differs from beta's
    a, b = domain_program(tiny, "alpha"), domain_program(tiny, "beta-2")
    assert not torch.allclose(a.nodes[0].bn.shift, b.nodes[0].bn.shift)


def test_domain_program_keeps_shared_weights_identical_and_model_untouched(tiny):
    a, b = domain_program(tiny, "alpha"), domain_program(tiny, "beta-2")
    assert torch.equal(a.nodes[0].conv.weight, b.nodes[0].conv.weight)
    assert any(isinstance(m, DomainBatchNorm2d) for m in tiny.modules())


def test_entry_names_are_unique_identifiers():
    names = entry_names(["alpha", "beta-2", "beta_2", "3d", "ü"])
    assert names["beta-2"] == "beta_2" and names["beta_2"] == "beta_2_2"
    assert all(n.isidentifier() and n.isascii() for n in names.values())
    assert len(set(names.values())) == 5



def test_per_domain_affine_folds_each_domains_own_bn(tiny, per_domain_affine_model):
    m = per_domain_affine_model(tiny, tiny.genotypes)
    x = torch.randn(3, 3, 16, 16)
    programs = {d: domain_program(m, d) for d in m.domains}
    for d, program in programs.items():
        with torch.no_grad():
            torch.testing.assert_close(program(x), m(x, d), rtol=1e-5, atol=1e-5)
    a, b = programs["alpha"], programs["beta-2"]
    assert torch.equal(a.nodes[0].conv.weight, b.nodes[0].conv.weight)  # shared conv stays byte-identical
    scale_a, _ = m.nodes["L00/conv_k3"].bn.folded(0)
    assert torch.equal(a.nodes[0].bn.scale.flatten(), scale_a)
    assert not torch.allclose(a.nodes[0].bn.scale, b.nodes[0].bn.scale)
