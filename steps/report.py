"""The per-run report directory: reports/<run name>/ (metrics.json, report.md, figures, export manifest, lineage
summary) and the reports/latest symlink; the same files are logged to MLflow."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Annotated, Optional

from zenml import step

from mpnas.config import MpnasConfig, config_to_yaml
from mpnas.utils.io import atomic_dir, atomic_write_json, atomic_write_text
from steps import tracking
from steps._support import TRACKER
from steps.artifacts import EvalDir, ExportDir, ModelDir
from steps.contracts import DatasetRef
from steps.workdirs import current_run_name

FIGURE_SUFFIXES = (".png", ".svg")


def update_latest(reports_root: Path, target: Path) -> None:
    """Point reports/latest at `target` atomically (a new symlink renamed over the old one)."""
    link = reports_root / "latest"
    tmp = reports_root / f".latest.{os.getpid()}"
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    tmp.symlink_to(target.name)
    os.replace(tmp, link)


def write_report(reports_root: str | Path, run_name: str, files: dict[str, str], extra_dirs: dict[str, Path],
                 json_files: dict[str, object], latest: bool = True) -> Path:
    """Write reports_root/run_name atomically: text files, copied directories' figures/manifests, and JSON; with
    `latest`, point reports_root/latest at it (main-pipeline runs only)."""
    root = Path(reports_root)
    if root.exists() and not root.is_dir():
        raise NotADirectoryError(f"reports root {root} exists and is not a directory")
    final = root / run_name
    with atomic_dir(final, overwrite=True) as tmp:
        for name, text in files.items():
            atomic_write_text(tmp / name, text)
        for name, obj in json_files.items():
            atomic_write_json(tmp / name, obj)
        for sub, src in extra_dirs.items():
            for f in sorted(Path(src).rglob("*")):
                if f.is_file() and (f.suffix in FIGURE_SUFFIXES or f.name.startswith(("manifest", "export_report"))):
                    dst = tmp / sub / f.relative_to(src)
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(f, dst)
        for p in [tmp, *tmp.rglob("*")]:  # temp dirs/files are private (0700/0600); reports are for reading
            p.chmod(0o755 if p.is_dir() else 0o644)
    if latest:
        update_latest(root, final)
    return final


def _markdown(run_name: str, method: str, dataset: DatasetRef, eval_report: str, sharing: Optional[dict],
              export_manifest: Optional[dict], commit: str) -> str:
    lines = [f"# mpnas run `{run_name}`", "", f"- method: `{method}`",
             f"- data: `{dataset.path}` (content hash `{dataset.content_hash[:16]}`, dvc md5 `{dataset.dvc_md5}`)",
             f"- code commit: `{commit}`", ""]
    if sharing:
        lines += ["## Merged model: node sharing", "", sharing.get("markdown", ""), ""]
    lines += ["## Evaluation", "", eval_report, ""]
    if export_manifest is not None:
        lines += ["## Mobile export", "",
                  "See `export/manifest.json` and `export/export_report.md` (formats, files, parity, latency).", ""]
    return "\n".join(lines)


@step(experiment_tracker=TRACKER)
def report(config: MpnasConfig, dataset: DatasetRef, sharing: dict, model: ModelDir, evaluation: EvalDir,
           mobile_export: ExportDir, reports_root: str, method: str = "mpnas") -> Annotated[str, "report_dir"]:
    """Collect this run's outputs into reports/<run name>/ and log them (and the comparable tags) to MLflow."""
    run_name = current_run_name()
    commit = tracking.git_commit()
    manifest_path = mobile_export.file("manifest.json")
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else None
    eval_md = evaluation.file("report.md").read_text() if evaluation.file("report.md").is_file() else ""
    out = write_report(
        reports_root, run_name,
        files={"report.md": _markdown(run_name, method, dataset, eval_md, sharing, manifest, commit),
               "config.yaml": config_to_yaml(config)},
        extra_dirs={"figures": Path(evaluation.path), "export": Path(mobile_export.path)},
        json_files={"metrics.json": evaluation.metrics(), "data_version.json": dataset.model_dump(mode="json"),
                    "architecture.json": model.architecture(), "sharing.json": sharing})
    # cached steps log nothing to this run's MLflow run: the report always carries the config and the headline metrics
    tracking.log_config(config, "report")
    tracking.log_metrics(evaluation.metrics(), prefix=f"eval/{method}/")
    tracking.set_tags({"method": method, "dataset": dataset.name, "data_hash": dataset.content_hash[:16],
                       "git_commit": commit})
    tracking.log_dir(out, "report")
    return str(out)
