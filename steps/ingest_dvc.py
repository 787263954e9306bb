"""The ingest step's DVC stage: `mpnas data prepare` for one run config, defined once (prepare_stage), declared in
the workspace's dvc.yaml only when it changed, and `dvc repro`d. No ZenML here: the tests drive it directly.

The stage depends on the data code prepare runs (prepare_code), watches only the config values prepare reads
(mpnas.data.prepare.PREPARE_FIELDS) and owns the prepared directory; dvc.lock's md5 of that directory is the data
version downstream artifacts carry.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, NamedTuple, Optional

import yaml

from mpnas.config import DataConfig, MpnasConfig
from mpnas.data.prepare import PREPARE_FIELDS
from mpnas.data.version import dvc_lock_entry
from mpnas.utils.io import atomic_write_text

DVC = str(Path(sys.executable).parent / "dvc")


def _dvc(workspace: Path, *args: str) -> str:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    res = subprocess.run([DVC, *args], cwd=workspace, capture_output=True, text=True, env=env)
    if res.returncode != 0:
        raise RuntimeError(f"`dvc {' '.join(args)}` failed in {workspace}:\n{res.stdout}{res.stderr}")
    return res.stdout


def ensure_dvc_repo(workspace: Path) -> None:
    """`dvc init --no-scm` once, analytics off. Without DVC's git integration the generated dvc.yaml and dvc.lock
    can be git-ignored local state (DVC refuses git-ignored pipeline files otherwise), so a run leaves git clean."""
    if not (workspace / ".dvc").is_dir():
        _dvc(workspace, "init", "-q", "--no-scm")
        _dvc(workspace, "config", "core.analytics", "false")


# The checkout holding the `mpnas` package: the prepare stage depends on the data code found under it.
CODE_ROOT = Path(__file__).resolve().parents[1]
# `mpnas data prepare` (the stage's command) and the modules it runs, followed through their imports inside these
# packages. mpnas.config is left out on purpose: the params file carries every value prepare reads.
PREPARE_ENTRY = ("mpnas.cli.data", "mpnas.data.prepare")
DATA_PACKAGES = ("mpnas.data", "mpnas.utils")


def _module_file(code_root: Path, module: str) -> Optional[Path]:
    base = code_root.joinpath(*module.split("."))
    return next((p for p in (base.with_suffix(".py"), base / "__init__.py") if p.is_file()), None)


def _imported(path: Path) -> set[str]:
    """Every absolute module name `path` imports (`from a.b import c` may name the module a.b.c)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


def prepare_code(code_root: Optional[Path] = None) -> list[Path]:
    """The source files `mpnas data prepare` runs: the entry modules and, transitively, what they import from the
    data packages (package __init__ files included). A change to any of them re-runs the prepare stage; a change to
    other code (the training loader, say) does not."""
    code_root = code_root or CODE_ROOT
    todo, seen = list(PREPARE_ENTRY), set()
    while todo:
        module = todo.pop()
        path = _module_file(code_root, module)
        if module in seen or path is None:
            continue
        seen.add(module)
        parents = [module.rsplit(".", k)[0] for k in range(1, module.count("."))]
        todo += [m for m in [*_imported(path), *parents] if m.startswith(tuple(f"{p}." for p in DATA_PACKAGES))
                 or m in DATA_PACKAGES]
    return sorted(_module_file(code_root, m) for m in seen)


def _dep_path(path: Path, workspace: Path) -> str:
    """Relative to the workspace when inside it (portable), else absolute (a test workspace outside the repo)."""
    path = path.resolve()
    try:
        return str(path.relative_to(workspace))
    except ValueError:
        return str(path)


def stage_name(cfg: MpnasConfig) -> str:
    return "pipeline_" + re.sub(r"[^A-Za-z0-9_]+", "_", Path(cfg.data.prepared_dir).name)


def _stage_out(data: DataConfig, workspace: Path) -> str:
    out = Path(data.prepared_dir)
    if out.is_absolute():
        try:
            out = out.relative_to(workspace)
        except ValueError:
            raise ValueError(f"data.prepared_dir {out} must lie inside the DVC workspace {workspace}") from None
    return str(out)


class PrepareStage(NamedTuple):
    name: str
    entry: dict[str, Any]  # the stage's dvc.yaml entry, as `dvc stage add` writes it
    params_file: str  # relative to the workspace
    params: str  # the params file's text: the run config's `data` section


def prepare_stage(cfg: MpnasConfig, workspace: Path) -> PrepareStage:
    """The one definition of the prepare stage.

    The command reads the run config's `data` section from the params file; DVC watches only the values prepare
    reads (PREPARE_FIELDS), the data code (prepare_code), the source root if any, and owns the prepared dir."""
    name, out = stage_name(cfg), _stage_out(cfg.data, workspace)
    params_file = f"data/params/{name}.yaml"
    data = {**cfg.data.model_dump(mode="json"), "prepared_dir": out}
    deps = [_dep_path(p, workspace) for p in prepare_code()]
    if cfg.data.root is not None:
        deps.append(_dep_path(workspace / cfg.data.root, workspace))
    entry = {"cmd": f"mpnas data prepare --overwrite -c {params_file}", "deps": deps,
             "params": [{params_file: sorted(f"data.{f}" for f in PREPARE_FIELDS)}], "outs": [out]}
    return PrepareStage(name, entry, params_file, yaml.safe_dump({"data": data}, sort_keys=False))


def _stage_add_args(stage: PrepareStage) -> list[str]:
    """`dvc stage add` arguments that write `stage.entry` (DVC validates it: an output another stage owns is
    refused with DVC's reason)."""
    deps = [a for d in stage.entry["deps"] for a in ("-d", d)]
    outs = [a for o in stage.entry["outs"] for a in ("-o", o)]
    keys = ",".join(stage.entry["params"][0][stage.params_file])
    return ["stage", "add", "--force", "-n", stage.name, *deps, "-p", f"{stage.params_file}:{keys}", *outs,
            stage.entry["cmd"]]


def declare_stage(workspace: Path, stage: PrepareStage) -> bool:
    """Write the params file and the stage only where they differ from what is there; True when dvc.yaml changed.

    A run with an unchanged config and code leaves dvc.yaml as it was (DVC's own check then decides to skip)."""
    params_path = workspace / stage.params_file
    if not params_path.is_file() or params_path.read_text() != stage.params:
        atomic_write_text(params_path, stage.params)
    dvc_yaml = workspace / "dvc.yaml"
    current = (yaml.safe_load(dvc_yaml.read_text()) or {}) if dvc_yaml.is_file() else {}
    if (current.get("stages") or {}).get(stage.name) == stage.entry:
        return False
    _dvc(workspace, *_stage_add_args(stage))
    return True


def dvc_prepare(cfg: MpnasConfig, workspace: Path) -> dict[str, Any]:
    """Declare `mpnas data prepare` as a DVC stage (prepare_stage) and `dvc repro` it.

    DVC skips the stage when neither the watched params, the data code, the source nor the output changed, and
    dvc.lock records the output's md5: the data version downstream artifacts carry."""
    ensure_dvc_repo(workspace)
    stage = prepare_stage(cfg, workspace)
    declare_stage(workspace, stage)
    log = _dvc(workspace, "repro", stage.name)
    print(f"[ingest] dvc stage {stage.name}: {'reproduced' if 'Running stage' in log else 'up to date, reused'}")
    out = stage.entry["outs"][0]
    entry = dvc_lock_entry(workspace / out)
    if entry is None:
        raise RuntimeError(f"{workspace / 'dvc.lock'}: no entry for {out} after `dvc repro {stage.name}`")
    return {"dvc_stage": stage.name, "dvc_md5": entry["md5"], "dvc_files": entry["nfiles"],
            "dvc_lock": str(workspace / "dvc.lock")}
