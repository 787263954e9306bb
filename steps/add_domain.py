"""Add-domain steps: thin wrappers over mpnas.extend.add_domain, and the model-version registration whose lineage
points to the parent model version and the new data version (docs/add_domain.md)."""

from __future__ import annotations

from typing import Annotated

from zenml import get_step_context, log_metadata, step
from zenml.client import Client
from zenml.enums import ModelStages

from steps import tracking
from steps._support import TRACKER
from steps.artifacts import ModelDir
from steps.contracts import AddDomainSections, DatasetRef, EvalSections, ModelVersionRef
from steps.registry import MODEL_NAME, log_mlflow_model, mean_val_top1, model_version_ref
from steps.workdirs import keyed_dir


def parent_artifact(version: str = "production", model_name: str = MODEL_NAME):
    """The parent version's `model` artifact for a pipeline body: inside a pipeline ZenML's client answers lazily, so
    the artifact is resolved when the step runs and enters it as a real input (lineage: parent artifact -> step)."""
    return Client().get_model_version(model_name, version).get_artifact("model")


@step(enable_cache=False)
def describe_parent(version: str = "production", model_name: str = MODEL_NAME
                    ) -> Annotated[ModelVersionRef, "parent_info"]:
    """Name, number and ids of the parent model version (a stage name or a number), for the child's lineage."""
    ref, _ = model_version_ref(version, model_name, hint="run mpnas_pipeline first, or pass parent=<stage or number>")
    return ref


@step(experiment_tracker=TRACKER)
def add_domain(config: AddDomainSections, dataset: DatasetRef, parent: ModelDir, parent_info: ModelVersionRef,
               domain: str, workspace: str) -> Annotated[ModelDir, "model"]:
    """Search, grow and train the new domain over the parent; resumable through its keyed work dir. Search and
    training curves go to MLflow under add_domain/search/ and add_domain/train/, what was added under
    add_domain/summary/ (and add_domain.json as an artifact)."""
    from mpnas.extend import add_domain as add_domain_to_model

    cfg = config.full()
    out = keyed_dir(workspace, "add_domain", cfg.model_dump(mode="json"), parent_info.model_artifact_id, domain,
                    dataset.content_hash)
    tracking.log_config(cfg, "add_domain")
    tracking.set_tags({"method": "add_domain", "added_domain": domain, "parent_model_version": parent_info.label})
    result = add_domain_to_model(cfg, parent.path, dataset.path, domain, out, resume=True, log=print,
                                 on_log=lambda phase, k, m: tracking.log_metrics(m, k, f"add_domain/{phase}/"))
    s = result.summary
    added = {"added_parameters": s["added_parameters"], "added_fraction": s["added_fraction"],
             "new_nodes": len(s["new_nodes"]), "reused_nodes": len(s["reused_nodes"]),
             "top1_val": s["accuracy"]["val"], "top1_test": s["accuracy"]["test"],
             "old_domains_identical": int(all(s["old_domains_identical"].values())),
             "search_wall_time_s": s["search"]["wall_time_s"], "train_wall_time_s": s["train"]["wall_time_s"]}
    tracking.log_metrics(added, prefix="add_domain/summary/")
    tracking.set_tags({"added_nodes": ", ".join(s["new_nodes"]) or "none"})
    tracking.log_dir(out, "add_domain")
    log_metadata(metadata={"add_domain": {**added, "domain": domain, "new_node_ids": s["new_nodes"],
                                          "genotype": " ".join(s["genotype"])}},
                 infer_artifact=True, artifact_name="model")
    return ModelDir(str(out))


@step(enable_cache=False, experiment_tracker=TRACKER)
def register_added(config: EvalSections, dataset: DatasetRef, model: ModelDir, parent_info: ModelVersionRef,
                   domain: str) -> Annotated[dict, "registration"]:
    """This run's `mpnas` model version (staging): metrics, and lineage to the parent version and the data version."""
    mv = get_step_context().model_version
    mean, per = mean_val_top1(model, dataset, config)
    added = model.architecture().get("added_domain", {})
    mlflow_model = log_mlflow_model(model, None, dataset, mv, mean, per, {})
    lineage = {"parent_model_version": parent_info.label, "parent_model_version_id": parent_info.version_id,
               "parent_model_artifact_id": parent_info.model_artifact_id,
               "data_content_hash": dataset.content_hash, "dvc_md5": str(dataset.dvc_md5),
               "added_domain": domain, "new_nodes": ", ".join(added.get("new_nodes", [])) or "none",
               "added_parameters": added.get("added_parameters")}
    log_metadata(metadata={"mean_top1_val": mean, "top1_val": per, "lineage": lineage, **mlflow_model},
                 infer_model=True)
    mv.set_stage(ModelStages.STAGING.value, force=True)
    tracking.set_tags({"model_version": f"{mv.model.name}:{mv.number}", "model_stage": "staging",
                       "parent_model_version": lineage["parent_model_version"]})
    return {"model": mv.model.name, "version": str(mv.number), "stage": "staging", "mean_top1_val": mean, **lineage}
