"""The typed step contracts (steps/contracts.py): config sections carry exactly what a step uses and rebuild the
same MpnasConfig the library gets; genotypes are checked at the boundary; artifacts are stored as JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from mpnas.config import MpnasConfig
from steps.contracts import (AddDomainSections, DataSections, DatasetRef, EvalSections, ExportSections, Genotypes,
                             ModelVersionRef, SearchSections, TrainSections)

ROOT = Path(__file__).resolve().parents[2]
ALL_SECTIONS = (DataSections, EvalSections, ExportSections, SearchSections, TrainSections, AddDomainSections)


@pytest.fixture(scope="module")
def smoke_config() -> MpnasConfig:
    from pipelines.config import read_run_config

    return MpnasConfig.model_validate(read_run_config(ROOT / "configs" / "smoke.yaml"))


@pytest.mark.parametrize("kind", ALL_SECTIONS, ids=lambda k: k.__name__)
def test_sections_carry_only_their_sections_and_rebuild_the_config(smoke_config: MpnasConfig, kind):
    sections = kind.of(smoke_config)
    names = set(kind.model_fields)
    dump = smoke_config.model_dump(mode="json")
    assert sections.model_dump(mode="json") == {k: dump[k] for k in dump if k in names}
    full = sections.full().model_dump(mode="json")
    default = MpnasConfig().model_dump(mode="json")
    for key in dump:  # what the step gets is the run's value; what it does not take stays at the default
        assert full[key] == (dump[key] if key in names else default[key]), key
    assert kind.model_validate(json.loads(sections.model_dump_json())) == sections  # a step parameter's round trip


def test_sections_refuse_missing_and_unknown_sections(smoke_config: MpnasConfig):
    with pytest.raises(ValidationError, match=r"(?s)space.*Field required.*search.*Field required"):
        SearchSections.model_validate({"name": "x", "seed": 0, "data": {}})
    with pytest.raises(ValidationError, match="train"):
        EvalSections.model_validate({**EvalSections.of(smoke_config).model_dump(), "train": {}})
    with pytest.raises(ValidationError, match=r"search\.steps"):
        SearchSections.model_validate({**SearchSections.of(smoke_config).model_dump(mode="json"),
                                       "search": {"steps": 0}})


def test_genotypes_are_checked_at_the_boundary():
    from mpnas.space import genotypes_from_strings

    good = {"a": ["conv_k3", "ir_k3_e2", "zero"], "b": ["conv_k3", "ir_k5_e6_se", "ir_k3_e1"]}
    decoded = genotypes_from_strings(good)
    g = Genotypes(good)
    assert g.decoded() == decoded and Genotypes.of(decoded) == g
    with pytest.raises(ValidationError, match=r"genotypes\.b"):
        Genotypes({"a": good["a"], "b": ["not_a_block"]})
    with pytest.raises(ValidationError, match="no domain"):
        Genotypes({})


def test_contracts_are_stored_as_json_by_zenml(zenml_stack):
    import uuid

    from zenml.client import Client
    from zenml.materializers.materializer_registry import materializer_registry
    from zenml.materializers.pydantic_materializer import PydanticMaterializer

    ref = DatasetRef(path="/data/prepared/x", name="x", content_hash="ab" * 32, domains=["a", "b"], size=36,
                     dvc_stage="pipeline_x", dvc_md5="0123.dir", dvc_files=7, dvc_lock="/ws/dvc.lock")
    parent = ModelVersionRef(model="mpnas", version="3", version_id="v-id", model_artifact_id="a-id")
    for kind in (DatasetRef, ModelVersionRef, Genotypes, SearchSections):
        assert materializer_registry[kind] is PydanticMaterializer, kind
    for i, value in enumerate((ref, parent, Genotypes({"a": ["conv_k3", "zero"]}))):
        store = Path(Client().active_stack.artifact_store.path) / "contract-tests" / f"{uuid.uuid4().hex}-{i}"
        store.mkdir(parents=True)
        PydanticMaterializer(str(store)).save(value)
        assert {p.name for p in store.iterdir()} == {"data_v2.json"}
        assert json.loads((store / "data_v2.json").read_text()) == value.model_dump(mode="json")
        assert PydanticMaterializer(str(store)).load(type(value)) == value
