"""One comparison table over methods trained on the same prepared data and seeds (markdown + JSON)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated, Any

from zenml import step

from mpnas.evaluation.comparison import accuracy_cost_figure, aggregate_seeds, compare_methods, run_weighting
from mpnas.evaluation.comparison import comparison_markdown as summary_markdown
from mpnas.evaluation.curves import aggregate_curves, learning_curves_figure, read_run_curve
from steps import tracking
from steps._support import TRACKER
from steps.artifacts import ModelDir
from steps.contracts import DatasetRef
from steps.report import write_report
from steps.workdirs import current_run_name


COLUMNS = (("mean top-1 (test)", "mean_top1_test"), ("std over seeds", "std_top1_test"),
           ("mean top-1 (val)", "mean_top1_val"), ("decathlon score", "decathlon_score"), ("params", "params_total"),
           ("FLOPs (union)", "flops_union"), ("Jaccard (mean)", "jaccard_mean_off_diagonal"))


def _cell(v: Any) -> str:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return "n/a"
    return f"{v:.4f}" if abs(v) < 10 else f"{v:,.0f}"


def comparison_markdown(table: dict[str, dict[str, Any]]) -> str:
    """Rows: methods; columns: headline keys of evaluate_model's metrics.json."""
    lines = ["| method | " + " | ".join(c for c, _ in COLUMNS) + " |", "|---|" + "---:|" * len(COLUMNS)]
    for name, metrics in table.items():
        lines.append(f"| {name} | " + " | ".join(_cell(metrics.get(k)) for _, k in COLUMNS) + " |")
    return "\n".join(lines) + "\n"


def group_runs(metrics: list[dict], methods: list[str], seeds: list[int]) -> dict[str, dict[int, dict]]:
    """{method: {seed: metrics.json}} from the parallel lists the pipeline passes (method order kept)."""
    if not len(metrics) == len(methods) == len(seeds):
        raise ValueError(f"compare: {len(metrics)} metrics for {len(methods)} method names and {len(seeds)} seeds")
    runs: dict[str, dict[int, dict]] = {}
    for m, name, seed in zip(metrics, methods, seeds):
        if seed in runs.setdefault(name, {}):
            raise ValueError(f"compare: method {name!r} has two runs with seed {seed}")
        runs[name][seed] = m
    return runs


def method_curves(methods: list[str], models: list[ModelDir]) -> dict[str, dict[str, Any]]:
    """{method: val top-1 against training steps, mean and std over its seeds} from each run's history.parquet."""
    by_method: dict[str, list[dict[int, float]]] = {}
    for name, model in zip(methods, models):
        by_method.setdefault(name, []).append(read_run_curve(model.path))
    return {name: aggregate_curves(runs) for name, runs in by_method.items()}


@step(experiment_tracker=TRACKER)
def compare(dataset: DatasetRef, reports_root: str, metrics: list[dict], methods: list[str], seeds: list[int],
            models: list[ModelDir]) -> Annotated[dict, "comparison"]:
    """{"methods": {name: mean over seeds + runs}, "summary", "seeds"} plus comparison.md, written to reports/<run>/
    and logged to MLflow. `models` (parallel to `metrics`): each run's trained model, whose train_config.yaml says
    which loss weighting and ABDP reference it used (runs[i].weighting, summary.abdp_references)."""
    if len(models) != len(metrics):
        raise ValueError(f"compare: {len(models)} models for {len(metrics)} metrics")
    metrics = [{**m, "weighting": run_weighting(model.path)} for m, model in zip(metrics, models)]
    table = {name: aggregate_seeds(runs) for name, runs in group_runs(metrics, methods, seeds).items()}
    summary = compare_methods(table)
    curves = method_curves(methods, models)
    result = {"methods": table, "summary": summary, "seeds": sorted(set(seeds)), "data": dataset.version(),
              "val_curves": curves}
    md = (f"# Method comparison (data `{dataset.content_hash[:16]}`, seeds {', '.join(map(str, result['seeds']))})"
          f"\n\n" + comparison_markdown(table) + "\n"
          + summary_markdown(summary) + "\n![accuracy against cost](figures/accuracy_vs_cost.png)\n"
          + "\n![val top-1 against training steps](figures/val_top1_vs_steps.png)\n")
    with tempfile.TemporaryDirectory() as figs:
        accuracy_cost_figure(summary, Path(figs) / "accuracy_vs_cost.png")
        learning_curves_figure(curves, Path(figs) / "val_top1_vs_steps.png")
        out = write_report(reports_root, current_run_name(), files={"comparison.md": md, "report.md": md},
                           extra_dirs={"figures": Path(figs)},
                           json_files={"comparison.json": result, "data_version.json": dataset.model_dump(mode="json")},
                           latest=False)
    for name, entry in table.items():
        tracking.log_metrics({k: v for k, v in entry.items() if k != "runs"}, prefix=f"compare/{name}/")
    tracking.set_tags({"method": "comparison", "dataset": dataset.name, "data_hash": dataset.content_hash[:16],
                       "git_commit": tracking.git_commit()})
    tracking.log_dir(out, "report")
    return result
