"""`train_variants --genotypes comparison:PATH:METHOD`: each seed gets that seed's run of METHOD; a wrong method or
seed is refused naming the file and what it holds."""

import json

import pytest

from benchmarks.train_variants import genotypes_from_comparison

PATH_A = ["conv_k3", "ir_k3_e3", "zero", "ir_k5_e3_se", "zero"]
PATH_B = ["conv_k3", "ir_k5_e6", "ir_k3_e3", "zero", "zero"]


@pytest.fixture
def comparison(tmp_path):
    runs = [{"domains": {"a": {"genotype": PATH_A}, "b": {"genotype": PATH_A}}},
            {"domains": {"a": {"genotype": PATH_B}, "b": {"genotype": PATH_A}}}]
    path = tmp_path / "comparison.json"
    path.write_text(json.dumps({"methods": {"mpnas": {"seeds": [3, 7], "runs": runs}}}))
    return path


def test_each_seed_gets_its_own_run(comparison):
    seed7 = genotypes_from_comparison(f"comparison:{comparison}:mpnas", 7)
    assert seed7["a"].to_strings() == PATH_B and seed7["b"].to_strings() == PATH_A
    assert genotypes_from_comparison(f"comparison:{comparison}:mpnas", 3)["a"].to_strings() == PATH_A


@pytest.mark.parametrize("method,seed,message", [("bundle", 3, "no method 'bundle'.*mpnas"),
                                                 ("mpnas", 5, r"has seeds \[3, 7\], not 5")])
def test_a_missing_method_or_seed_is_named(comparison, method, seed, message):
    with pytest.raises(SystemExit, match=message):
        genotypes_from_comparison(f"comparison:{comparison}:{method}", seed)
