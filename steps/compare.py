"""One comparison table over methods trained on the same prepared data (markdown + JSON)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated, Any

from zenml import step

from mpnas.evaluation.comparison import accuracy_cost_figure, compare_methods
from mpnas.evaluation.comparison import comparison_markdown as summary_markdown
from steps import tracking
from steps._support import TRACKER
from steps.report import write_report
from steps.workdirs import current_run_name

METHODS = ("mpnas", "mpnas_uniform", "independent_nas", "multi_head_nas", "single_path_multi_head")


COLUMNS = (("mean top-1 (test)", "mean_top1_test"), ("mean top-1 (val)", "mean_top1_val"),
           ("decathlon score", "decathlon_score"), ("params", "params_total"), ("FLOPs (union)", "flops_union"),
           ("Jaccard (mean)", "jaccard_mean_off_diagonal"))


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


@step(experiment_tracker=TRACKER)
def compare(dataset: dict, reports_root: str, mpnas: dict, mpnas_uniform: dict, independent_nas: dict,
            multi_head_nas: dict, single_path_multi_head: dict) -> Annotated[dict, "comparison"]:
    """{"methods": {name: metrics.json}} plus comparison.md, written to reports/<run>/ and logged to MLflow."""
    table = {"mpnas": mpnas, "mpnas_uniform": mpnas_uniform, "independent_nas": independent_nas,
             "multi_head_nas": multi_head_nas, "single_path_multi_head": single_path_multi_head}
    summary = compare_methods(table)
    result = {"methods": table, "summary": summary,
              "data": {"path": dataset["path"], "content_hash": dataset["content_hash"],
                       "dvc_md5": dataset.get("dvc_md5")}}
    md = (f"# Method comparison (data `{dataset['content_hash'][:16]}`)\n\n" + comparison_markdown(table) + "\n"
          + summary_markdown(summary) + "\n![accuracy against cost](figures/accuracy_vs_cost.png)\n")
    with tempfile.TemporaryDirectory() as figs:
        accuracy_cost_figure(summary, Path(figs) / "accuracy_vs_cost.png")
        out = write_report(reports_root, current_run_name(), files={"comparison.md": md, "report.md": md},
                           extra_dirs={"figures": Path(figs)},
                           json_files={"comparison.json": result, "data_version.json": dataset}, latest=False)
    for name, metrics in table.items():
        tracking.log_metrics(metrics, prefix=f"compare/{name}/")
    tracking.set_tags({"method": "comparison", "dataset": dataset["path"].rsplit("/", 1)[-1],
                       "data_hash": dataset["content_hash"][:16], "git_commit": tracking.git_commit()})
    tracking.log_dir(out, "report")
    return result
