"""Honest evaluation of a trained model directory: per-domain top-1 (val, test), parameters, FLOPs and CPU latency
per path, whole-model costs counting shared nodes once, path similarity, and the decathlon score.

Writes OUT/metrics.json (stable keys: dataset, method, domains{name: top1_val, top1_test, params_path, flops_path,
latency_ms_cpu}, mean_top1_val, mean_top1_test, decathlon_score, params_total, flops_sum_paths, flops_union,
flops_prefix_tree (mpnas.evaluation.costs says which FLOPs figure means what),
jaccard{domains, matrix}, plus extras), OUT/report.md, OUT/architecture.png, OUT/jaccard.png and, when the model
directory holds a training history, OUT/weights.png.

A bundle of independent models is evaluated the same way: it is a MultiPathNet trained with share_nodes=False, so
params_total and flops_union are the sums over the bundle.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import pandas as pd
import torch

from mpnas.config import EvaluateConfig, resolve_device
from mpnas.data.prepared import PreparedDataset
from mpnas.evaluation.added import added_summary
from mpnas.evaluation.costs import cpu_latency_ms, path_flops, prefix_tree_flops, union_flops
from mpnas.evaluation.figures import architecture_figure, jaccard_figure, weights_figure
from mpnas.evaluation.metrics import decathlon_score, official_e_max, reference_e_max, split_accuracy
from mpnas.evaluation.report import render_report
from mpnas.models.multipath import WEIGHTS_FILE, MultiPathNet, load_model
from mpnas.models.sharing import jaccard_matrix, mean_off_diagonal, sharing_report
from mpnas.utils.io import atomic_write_json, atomic_write_text, read_json, sha256_file


def _mean(values: list[Optional[float]]) -> Optional[float]:
    known = [v for v in values if v is not None]
    return sum(known) / len(known) if known else None


def _e_max(domains: list[str], cfg: EvaluateConfig) -> tuple[Optional[dict[str, float]], str]:
    official = official_e_max(domains)
    if official is not None:
        return official, "official Visual Decathlon baselines (NIPS'17 Finetune accuracies), E_max = 2 x error"
    if cfg.reference_metrics is not None:
        path = Path(cfg.reference_metrics)
        ref = read_json(path, "set by evaluate.reference_metrics")
        return reference_e_max(ref, domains, str(path)), f"E_max = 2 x the test error of the reference {path}"
    return None, "not computed: the domains are not the official decathlon ones and no reference metrics were given"


def evaluate_model(model_dir: str | Path, data_dir: str | Path, out_dir: str | Path, cfg: EvaluateConfig,
                   method: str = "mpnas", dataset_name: Optional[str] = None) -> dict:
    """Evaluate MODEL_DIR on the prepared data and write metrics.json, report.md and figures into OUT_DIR."""
    model_dir, data_dir, out_dir = Path(model_dir), Path(data_dir), Path(out_dir)
    model, ds, crop = _load_checked(model_dir, data_dir, out_dir)
    domains = _domain_metrics(model, ds, crop, cfg)
    jac = jaccard_matrix(model)
    sharing = sharing_report(model)
    params_total = model.num_parameters()
    flops_paths = [v["flops_path"] for v in domains.values()]
    trained_hash = model.meta.get("data", {}).get("content_hash")
    metrics = {
        "dataset": dataset_name or data_dir.name, "method": method, "domains": domains,
        "mean_top1_val": _mean([v["top1_val"] for v in domains.values()]),
        "mean_top1_test": _mean([v["top1_test"] for v in domains.values()]),
        "params_total": params_total, "flops_sum_paths": sum(flops_paths),
        "flops_union": union_flops(model), "jaccard": jac,
        "flops_prefix_tree": prefix_tree_flops(model, {d: v["flops_path"] for d, v in domains.items()}),
        **_decathlon(domains, cfg),
        # extras
        "flops_mean_path": sum(flops_paths) / len(flops_paths),
        "params_ratio": params_total / cfg.params_reference if cfg.params_reference else None,
        "params_reference": cfg.params_reference,
        "jaccard_mean_off_diagonal": mean_off_diagonal(jac["matrix"]),
        "jaccard_with_zero": jaccard_matrix(model, include_zero=True)["matrix"],
        "sharing": {k: sharing[k] for k in ("nodes_total", "nodes_shared", "nodes_exclusive", "heads", "share_nodes")}
        | {"top_block_fraction": {row["layer"]: row["top_block_fraction"] for row in sharing["layers"]}},
        "sharing_layers": sharing["layers"],
        "bn_mode": model.bn_mode, "input_size": model.space.input_size,
        "latency": {"device": "cpu", "batch": 1, "threads": torch.get_num_threads(),
                    "repeats": cfg.latency_repeats, "warmup": cfg.latency_warmup, "statistic": "median"},
        "data_dir": str(data_dir), "data_hash": ds.content_hash, "data_hash_at_training": trained_hash,
        "data_hash_matches_training": (trained_hash == ds.content_hash) if trained_hash else None,
        "model_dir": str(model_dir), "model_hash": sha256_file(model_dir / WEIGHTS_FILE),
        "train": model.meta.get("train"),
        "added": added_summary(model.meta, str(model_dir / "architecture.json")),  # mpnas add-domain, else None
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    metrics["figures"] = _figures(model, model_dir, out_dir, jac, f"{method} on {metrics['dataset']}: "
                                  f"{sharing['nodes_total']} nodes, {sharing['nodes_shared']} shared")
    atomic_write_json(out_dir / "metrics.json", metrics)
    atomic_write_text(out_dir / "report.md", render_report(metrics, sharing))
    return metrics


def _load_checked(model_dir: Path, data_dir: Path, out_dir: Path) -> tuple[MultiPathNet, PreparedDataset, int]:
    """The model, the data and the crop, refusing a report inside the model or data that does not fit the model."""
    if out_dir.resolve() == model_dir.resolve():
        raise ValueError(f"--out {out_dir}: choose a report directory other than the model directory")
    model = load_model(model_dir)
    ds = PreparedDataset(data_dir)
    ds.require_domains(model.domains, f"model {model_dir}")
    for d in model.domains:
        if ds.num_classes(d) != model.num_classes[d]:
            raise ValueError(f"domain {d!r}: the model has {model.num_classes[d]} classes, "
                             f"{data_dir} has {ds.num_classes(d)}")
    crop = int(model.meta.get("data", {}).get("crop", model.space.input_size))
    if crop != model.space.input_size:
        raise ValueError(f"{model_dir}/architecture.json: data.crop {crop} != input_size {model.space.input_size}")
    return model, ds, crop


def _domain_metrics(model: MultiPathNet, ds: PreparedDataset, crop: int, cfg: EvaluateConfig) -> dict[str, dict]:
    """Per domain: top-1 on val and test (on cfg.device), then params, FLOPs and CPU latency of its path."""
    device = resolve_device(cfg.device)
    model.to(device)
    top1 = {d: {s: split_accuracy(model, ds, d, s, crop, cfg.batch_size, device) for s in ("val", "test")}
            for d in model.domains}
    model.cpu().eval()
    domains: dict[str, dict] = {}
    with torch.inference_mode():
        for d in model.domains:
            domains[d] = {"top1_val": top1[d]["val"], "top1_test": top1[d]["test"],
                          "params_path": model.path_parameters(d), "flops_path": path_flops(model, d),
                          "latency_ms_cpu": cpu_latency_ms(model.domain_module(d).eval(), model.space.input_size,
                                                           cfg.latency_repeats, cfg.latency_warmup),
                          "num_classes": model.num_classes[d], "genotype": model.genotypes[d].to_strings()}
    return domains


def _decathlon(domains: dict[str, dict], cfg: EvaluateConfig) -> dict:
    """decathlon_score (test) and its details (E_max source, per-domain scores, the val score)."""
    e_max, e_max_source = _e_max(list(domains), cfg)
    score = score_val = per_test = per_val = None
    if e_max is not None:
        score, per_test = decathlon_score({d: v["top1_test"] for d, v in domains.items()}, e_max)
        score_val, per_val = decathlon_score({d: v["top1_val"] for d, v in domains.items()}, e_max)
    return {"decathlon_score": score,
            "decathlon": {"e_max_source": e_max_source, "e_max": e_max, "per_domain_test": per_test,
                          "score_val": score_val, "per_domain_val": per_val}}


def _figures(model: MultiPathNet, model_dir: Path, out_dir: Path, jac: dict, title: str) -> list[str]:
    architecture_figure(model, out_dir / "architecture.png", title=title)
    jaccard_figure(jac, out_dir / "jaccard.png")
    figures = ["architecture.png", "jaccard.png"]
    history_path = model_dir / "history.parquet"
    if history_path.is_file():
        weights_figure(pd.read_parquet(history_path), model.domains, out_dir / "weights.png")
        figures.append("weights.png")
    return figures
