"""Search-space spec, block strings, genotype validation and analytic costs."""

import pytest

from mpnas.config import SpaceConfig, StageConfig, load_config
from mpnas.space import (Choice, Genotype, SearchSpace, genotypes_from_json, genotypes_to_json, jaccard,
                         make_divisible)


@pytest.fixture
def space() -> SearchSpace:
    return SearchSpace.from_config(load_config().space, 32)


@pytest.mark.parametrize("text", ["zero", "conv_k3", "ir_k5_e6_se", "ir_k3_e1", "ir_k7_e2.5"])
def test_block_string_round_trip(text):
    assert str(Choice.parse(text)) == text


@pytest.mark.parametrize("bad", ["ir_k5", "conv", "skip", "ir_k5_e6_se_x"])
def test_bad_block_string(bad):
    with pytest.raises(ValueError, match="unknown block string"):
        Choice.parse(bad)


def test_zero_only_where_shape_is_kept(space):
    for layer in space.layers:
        keeps = layer.stride == 1 and layer.in_ch == layer.out_ch and layer.kind == "ir"
        assert layer.allow_zero == keeps, layer.name
        assert (Choice("zero") in layer.choices()) == keeps


def test_choice_count_and_decisions(space):
    layer = next(l for l in space.layers if l.allow_zero)
    assert len(layer.choices()) == 1 + 3 * 6 * 2
    assert list(layer.decisions()) == ["op", "kernel", "expansion", "se"]
    assert layer.choice_from_decisions({"op": "zero", "kernel": 7}) == Choice("zero")


def test_genotype_validation_names_layer(space):
    g = space.reference_genotype()
    strings = g.to_strings()
    strings[3] = "zero"  # s2.l0 changes stride and width
    with pytest.raises(ValueError, match="s2.l0.*zero"):
        Genotype.from_strings(strings).validate(space)
    with pytest.raises(ValueError, match="layers"):
        Genotype(g.choices[:-1]).validate(space)


def test_genotypes_json_round_trip(space):
    g = space.reference_genotype()
    other = Genotype((g.choices[0], Choice("zero")) + g.choices[2:])
    text = genotypes_to_json({"a": g, "b": other}, space, mode="multi_path")
    back = genotypes_from_json(text)
    assert back == {"a": g, "b": other}
    with pytest.raises(ValueError, match="genotypes.a"):
        genotypes_from_json('{"genotypes": {"a": ["ir_bogus"]}}')


def test_jaccard_excludes_zero(space):
    g = space.reference_genotype()
    h = Genotype((g.choices[0], Choice("zero"), Choice("zero")) + g.choices[3:])
    n = g.depth()
    assert jaccard(g, g) == 1.0
    assert jaccard(g, h) == pytest.approx((n - 2) / n)


def test_zero_layer_costs_nothing_and_costs_grow(space):
    layer = space.layers[1]
    assert layer.cost(Choice("zero")) == (0, 0)
    small = layer.cost(Choice("ir", 3, 1.0, False))
    big = layer.cost(Choice("ir", 7, 6.0, True))
    assert big[0] > small[0] and big[1] > small[1]


def test_224_tunas_space_expressible():
    sp = SearchSpace.from_config(SpaceConfig(preset="tunas_mnv3_like_224"))
    assert sp.input_size == 224 and sp.final_res == 7
    assert sum(l.allow_zero for l in sp.layers) == 15


def test_custom_space_without_preset_requires_fields():
    with pytest.raises(ValueError, match="space.stages"):
        SearchSpace.from_config(SpaceConfig(preset=None, stem_width=8, stem_stride=1, stem_kernels=[3],
                                            head_widths=[32]), 16)
    sp = SearchSpace.from_config(SpaceConfig(preset=None, stem_width=8, stem_stride=1, stem_kernels=[3],
                                             stages=[StageConfig(width=8, layers=2)], head_widths=[32]), 16)
    assert [l.name for l in sp.layers] == ["stem", "s1.l0", "s1.l1"]


def test_make_divisible():
    assert make_divisible(16 * 6) == 96 and make_divisible(10) == 16 and make_divisible(37) == 40
