"""Model Control Plane: metrics on the `mpnas` model version, stages, and the retrain promotion rule.

Promotion rule (retrain_pipeline): the production model and the retrained candidate are both evaluated on the val
split of the NEW data version; the candidate is promoted to `production` iff its mean val top-1 over domains is not
worse than production's (candidate >= production - tolerance, tolerance 0 by default). Otherwise it stays
`staging` and production is untouched. mpnas_pipeline versions go to `staging`, or to `production` when there is
none yet (the first model).
"""

from __future__ import annotations

from typing import Annotated, Any, Optional, Tuple

from zenml import get_step_context, log_metadata, step
from zenml.client import Client
from zenml.enums import ModelStages

from steps import tracking
from steps._support import TRACKER
from steps.artifacts import ExportDir, ModelDir
from steps.contracts import DatasetRef, EvalSections, Genotypes, ModelVersionRef

MODEL_NAME = "mpnas"


def production_version(model_name: str = MODEL_NAME):
    """The model version in stage production, or None."""
    try:
        return Client().get_model_version(model_name, ModelStages.PRODUCTION)
    except KeyError:
        return None


def should_promote(candidate: Optional[float], production: Optional[float], tolerance: float = 0.0) -> bool:
    """The documented rule: promote iff candidate mean val top-1 >= production's - tolerance (no production: yes)."""
    if candidate is None:
        return False
    if production is None:
        return True
    return candidate >= production - tolerance


def mean_val_top1(model: ModelDir, dataset: DatasetRef, config: EvalSections) -> Tuple[Optional[float], dict]:
    """Mean over the model's domains of val top-1 on `dataset` (the comparison both sides of the rule use)."""
    from mpnas.config import resolve_device
    from mpnas.evaluation.metrics import split_accuracy

    ds = dataset.open()
    device = resolve_device(config.evaluate.device)
    net = model.load(str(device))
    ds.require_domains(net.domains, f"model {model.path}")
    crop = int(net.meta.get("data", {}).get("crop", config.data.crop))
    per = {d: split_accuracy(net, ds, d, "val", crop, config.evaluate.batch_size, device) for d in net.domains}
    known = [v for v in per.values() if v is not None]
    return (sum(known) / len(known) if known else None), per


@step(enable_cache=False, experiment_tracker=TRACKER)
def register(config: EvalSections, dataset: DatasetRef, model: ModelDir, metrics: dict,
             mobile_export: Optional[ExportDir] = None, stage: str = "staging") -> Annotated[dict, "registration"]:
    """Attach metrics to this run's `mpnas` model version; stage it (production if there is none yet); log the
    model (with the export's .pte and ONNX files) as the MLflow run's logged model, each side naming the other."""
    mv = get_step_context().model_version
    first = production_version(mv.model.name) is None
    mean, per = mean_val_top1(model, dataset, config)
    target = ModelStages.PRODUCTION.value if first else stage
    mlflow_model = log_mlflow_model(model, mobile_export, dataset, mv, mean, per, metrics)
    log_metadata(metadata={"mean_top1_val": mean, "top1_val": per, "metrics": _numbers(metrics),
                           "data_content_hash": dataset.content_hash, "dvc_md5": str(dataset.dvc_md5),
                           **mlflow_model}, infer_model=True)
    mv.set_stage(target, force=True)
    tracking.set_tags({"model_version": f"{mv.model.name}:{mv.number}", "model_stage": target})
    tracking.log_metrics({"mean_top1_val": mean}, prefix="model/")
    return {"model": mv.model.name, "version": str(mv.number), "stage": target, "mean_top1_val": mean,
            **mlflow_model}


def log_mlflow_model(model: ModelDir, mobile_export: Optional[ExportDir], dataset: DatasetRef, mv,
                     mean: Optional[float], per: dict, metrics: dict) -> dict[str, str]:
    """The MLflow logged model of this run, tagged with the ZenML model version; returns the ids for the version's
    metadata (the link back). Empty without an active MLflow run."""
    headline = {k: metrics.get(k) for k in ("mean_top1_test", "decathlon_score", "params_total", "flops_union")}
    model_metrics = {"mean_top1_val": mean, **{f"top1_val.{d}": v for d, v in per.items()}, **headline}
    model_id = tracking.log_model(
        model.path, mobile_export.path if mobile_export is not None else None, dataset,
        {"model": mv.model.name, "model_version": str(mv.number), "model_version_id": str(mv.id)},
        {k: v for k, v in model_metrics.items() if v is not None})
    if model_id is None:
        return {}
    return {"mlflow_model_id": model_id, "mlflow_model_uri": f"models:/{model_id}",
            "mlflow_run_id": str(tracking.run_id())}


def model_version_ref(version: str, model_name: str = MODEL_NAME,
                      hint: str = "run mpnas_pipeline first") -> Tuple[ModelVersionRef, Any]:
    """(ref, `model` artifact) of a model version given as a stage name or a number; a clear error if either is
    missing (`hint` says what to do)."""
    try:
        mv = Client().get_model_version(model_name, version)
    except KeyError:
        raise RuntimeError(f"no `{model_name}` model version {version!r}: {hint}") from None
    art = mv.get_artifact("model")
    if art is None:
        raise RuntimeError(f"model version {model_name}:{mv.number} has no `model` artifact")
    return ModelVersionRef(model=model_name, version=str(mv.number), version_id=str(mv.id),
                           model_artifact_id=str(art.id)), art


@step(enable_cache=False)
def production_architecture() -> Tuple[Annotated[Genotypes, "genotypes"], Annotated[ModelVersionRef, "production"]]:
    """The production model's genotypes (retraining keeps the architecture: no search) and where it lives."""
    ref, art = model_version_ref(ModelStages.PRODUCTION.value)
    model: ModelDir = art.load()
    return Genotypes(model.genotypes()), ref


@step(enable_cache=False, experiment_tracker=TRACKER)
def promote(config: EvalSections, dataset: DatasetRef, model: ModelDir, production: ModelVersionRef,
            tolerance: float = 0.0) -> Annotated[dict, "promotion"]:
    """Apply the promotion rule (module docstring) on the new data's val split and set the stages accordingly."""
    prod_model: ModelDir = Client().get_artifact_version(production.model_artifact_id).load()
    cand_mean, cand_per = mean_val_top1(model, dataset, config)
    prod_mean, prod_per = mean_val_top1(prod_model, dataset, config)
    promoted = should_promote(cand_mean, prod_mean, tolerance)
    mv = get_step_context().model_version
    stage = ModelStages.PRODUCTION.value if promoted else ModelStages.STAGING.value
    mv.set_stage(stage, force=True)
    decision = {"promoted": promoted, "stage": stage, "candidate_version": str(mv.number),
                "production_version": production.version, "candidate_mean_top1_val": cand_mean,
                "production_mean_top1_val": prod_mean, "tolerance": tolerance,
                "candidate_top1_val": cand_per, "production_top1_val": prod_per,
                "rule": "promote iff candidate mean val top-1 >= production mean val top-1 - tolerance, both on "
                        "the new data version's val split"}
    mlflow_model = log_mlflow_model(model, None, dataset, mv, cand_mean, cand_per, {})  # no export: no .pte/ONNX
    log_metadata(metadata={"mean_top1_val": cand_mean, "promotion": {k: v for k, v in decision.items()
                                                                     if not isinstance(v, dict)}, **mlflow_model},
                 infer_model=True)
    tracking.log_metrics({"candidate_mean_top1_val": cand_mean, "production_mean_top1_val": prod_mean,
                          "promoted": int(promoted)}, prefix="retrain/")
    return decision


def _numbers(d: dict) -> dict:
    """The numeric leaves of a nested dict (model-version metadata stays small and comparable)."""
    from mpnas.config import flatten

    return {k: v for k, v in flatten(d).items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
