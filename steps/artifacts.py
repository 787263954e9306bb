"""Typed directory artifacts and their materializers: a step returns a handle to a directory the library wrote, and
ZenML copies the files into its artifact store. Models travel as the model-dir contract (model.safetensors state_dict
+ architecture.json): never a pickled module, and never a pickle of any kind (resume checkpoints stay behind)."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Type

from zenml.enums import ArtifactType, VisualizationType
from zenml.io import fileio
from zenml.materializers.base_materializer import BaseMaterializer

PICKLE_SUFFIXES = (".pt", ".pth", ".pkl", ".pickle", ".ckpt")


@dataclass(frozen=True)
class RunDir:
    """A directory of files produced by one library call (search run, evaluation, export)."""

    path: str
    REQUIRED: ClassVar[tuple[str, ...]] = ()

    def file(self, name: str) -> Path:
        return Path(self.path) / name

    def json(self, name: str) -> Any:
        return json.loads(self.file(name).read_text())

    def check(self) -> None:
        missing = [n for n in self.REQUIRED if not self.file(n).is_file()]
        if missing:
            raise FileNotFoundError(f"{self.path}: missing {', '.join(missing)} for a {type(self).__name__} artifact")


@dataclass(frozen=True)
class SearchRun(RunDir):
    """out_dir of run_search: genotypes.json, history.parquet, summary.json."""

    REQUIRED: ClassVar[tuple[str, ...]] = ("genotypes.json",)


@dataclass(frozen=True)
class ModelDir(RunDir):
    """A model directory (docs/contracts.md): model.safetensors + architecture.json (+ config, history, metrics)."""

    REQUIRED: ClassVar[tuple[str, ...]] = ("model.safetensors", "architecture.json")

    def architecture(self) -> dict:
        return self.json("architecture.json")

    def genotypes(self) -> dict[str, list[str]]:
        return self.architecture()["genotypes"]

    def load(self, device: str = "cpu"):
        from mpnas.models.multipath import load_model

        return load_model(self.path, device)


@dataclass(frozen=True)
class EvalDir(RunDir):
    """out_dir of evaluate_model: metrics.json, report.md and figures."""

    REQUIRED: ClassVar[tuple[str, ...]] = ("metrics.json",)

    def metrics(self) -> dict:
        return self.json("metrics.json")


@dataclass(frozen=True)
class ExportDir(RunDir):
    """out_dir of export_model: per-domain programs, manifest.json and export_report.{json,md}."""

    REQUIRED: ClassVar[tuple[str, ...]] = ("manifest.json",)


def _copy_tree(src: str, dst: str, skip_pickles: bool) -> None:
    for dirpath, _, files in os.walk(src):
        rel = os.path.relpath(dirpath, src)
        target = dst if rel == "." else os.path.join(dst, rel)
        fileio.makedirs(target)
        for f in files:
            if f.startswith(".") or (skip_pickles and f.endswith(PICKLE_SUFFIXES)):
                continue
            fileio.copy(os.path.join(dirpath, f), os.path.join(target, f), overwrite=True)


class RunDirMaterializer(BaseMaterializer):
    """Copies the directory into the artifact store; loading reads it in place (local store) or from a copy."""

    ASSOCIATED_TYPES = (SearchRun, EvalDir, ExportDir)
    ASSOCIATED_ARTIFACT_TYPE = ArtifactType.DATA
    SKIP_PICKLES = False

    def save(self, data: RunDir) -> None:
        data.check()
        _copy_tree(data.path, self.uri, self.SKIP_PICKLES)

    def load(self, data_type: Type[RunDir]) -> RunDir:
        if os.path.isdir(self.uri):  # local artifact store: read in place
            out = data_type(self.uri)
        else:
            local = tempfile.mkdtemp(prefix="mpnas-artifact-")
            for src, dst in _remote_files(self.uri, local):
                fileio.copy(src, dst, overwrite=True)
            out = data_type(local)
        out.check()
        return out

    def save_visualizations(self, data: RunDir) -> dict[str, VisualizationType]:
        report = os.path.join(self.uri, "report.md")
        return {report: VisualizationType.MARKDOWN} if fileio.exists(report) else {}


def _remote_files(uri: str, local: str):
    for dirpath, _, files in fileio.walk(uri):
        dirpath = str(dirpath)
        rel = os.path.relpath(dirpath, uri)
        os.makedirs(os.path.join(local, rel), exist_ok=True)
        for f in files:
            yield os.path.join(dirpath, str(f)), os.path.join(local, rel, str(f))


class ModelDirMaterializer(RunDirMaterializer):
    """state_dict (safetensors) + architecture JSON; checkpoints (torch pickles) are never copied or loaded."""

    ASSOCIATED_TYPES = (ModelDir,)
    ASSOCIATED_ARTIFACT_TYPE = ArtifactType.MODEL
    SKIP_PICKLES = True

    def extract_metadata(self, data: ModelDir) -> dict[str, Any]:
        arch = data.architecture()
        return {"format": arch.get("format", ""), "domains": ", ".join(arch.get("genotypes", {})),
                "input_size": int(arch.get("input_size", 0)), "bn_mode": str(arch.get("bn_mode", "")),
                "data_content_hash": str(arch.get("data", {}).get("content_hash", ""))}
