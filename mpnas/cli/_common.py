"""Options and guards shared by several subcommands."""

from __future__ import annotations

import argparse
import contextlib
import os
from pathlib import Path
from typing import Any, Iterator, Optional

from pydantic import ValidationError

from mpnas.config import ConfigError, MpnasConfig, format_errors, apply_overrides, load_config, read_yaml
from mpnas.utils.io import check_out_path, lock_path, output_lock, refuse_nonempty, refuse_overlap

# Top-level keys that mark a ZenML run configuration (configs/*.yaml) rather than a plain mpnas config.
RUN_CONFIG_KEYS = {"run_name", "parameters", "enable_cache", "enable_artifact_metadata", "enable_artifact_visualization",
                   "enable_step_logs", "enable_pipeline_logs", "settings", "steps", "schedule", "model", "extra",
                   "build", "config_path", "tags", "retry", "failure_hook_source", "success_hook_source",
                   "substitutions", "cache_policy", "environment", "secrets"}


def add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("-c", "--config", help="YAML config file: a plain mpnas config (sections data, space, search, "
                                          "...) or a pipeline run config from configs/ (its parameters.config is "
                                          "used); default: built-in defaults")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field by dotted name, e.g. --set train.steps=3 (repeatable)")


def load_any_config(path: Optional[str | Path], overrides: list[str]) -> MpnasConfig:
    """A plain mpnas config, or the `parameters.config` (or `parameters.config_path`) of a pipeline run config."""
    if path is None:
        return load_config(None, overrides)
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    raw = read_yaml(path)
    if not isinstance(raw, dict) or not (set(raw) & RUN_CONFIG_KEYS):
        return load_config(path, overrides)
    params = raw.get("parameters")
    if not isinstance(params, dict) or not ({"config", "config_path"} & set(params)):
        raise ConfigError(f"{path}: a pipeline run config without parameters.config (or parameters.config_path); "
                          f"put the mpnas sections under parameters.config as in configs/default.yaml")
    all_overrides = [*(params.get("overrides") or []), *overrides]
    if params.get("config_path") is not None:
        inner = Path(params["config_path"])
        return load_config(inner if inner.is_absolute() or inner.is_file() else path.parent / inner, all_overrides)
    mpnas_raw: Any = params["config"]
    if not isinstance(mpnas_raw, dict):
        raise ConfigError(f"{path}: parameters.config must be a mapping of sections (data, search, train, ...)")
    source = str(path) + (" with --set " + " ".join(overrides) if overrides else "")
    raw_cfg = apply_overrides(dict(mpnas_raw), all_overrides) if all_overrides else mpnas_raw
    try:
        return MpnasConfig.model_validate(raw_cfg)
    except ValidationError as exc:
        raise ConfigError(format_errors(exc, source).replace("\n  ", "\n  parameters.config.")) from None


def config_from_args(args: argparse.Namespace) -> MpnasConfig:
    return load_any_config(args.config, args.overrides)


def torchrun_peer() -> bool:
    """A rank other than 0 of a torchrun launch (`torchrun --nproc_per_node=N mpnas train ...`): it shares rank 0's
    output, so it must neither take the output lock rank 0 holds nor refuse the directory rank 0 has begun to write."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and int(os.environ.get("RANK", "0")) != 0


@contextlib.contextmanager
def writing(out: str | Path, overwrite: bool = False, resume: Optional[bool] = None,
            **inputs: Optional[str | Path]) -> Iterator[Path]:
    """Guard a command that writes `out`: refuse an `out` that overlaps an input (naming both), lies under a file,
    or (when `resume` is given: search/train) holds an earlier run; then hold the output lock until the end."""
    refuse_overlap(out, **inputs)
    check_out_path(out)
    if torchrun_peer():  # rank 0 holds the lock and checks `out`; only it writes (mpnas.distributed)
        yield lock_path(out)
        return
    with output_lock(out) as lock:
        if resume is not None:
            refuse_nonempty(out, overwrite, resume)
        yield lock


def physical_memory() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def check_step_memory(field: str, batch: int, crop: int, n_domains: int, batches: float = 1.0) -> None:
    """Refuse a batch size whose float32 input batches alone (a lower bound: activations come on top) exceed this
    machine's memory, before any data is read or a tensor allocated."""
    need = int(batch * batches * n_domains * crop * crop * 3 * 4)
    total = physical_memory()
    if need > total:
        raise ValueError(f"{field}={batch}: one step needs at least {need / 2**30:.1f} GiB for its input batches "
                         f"alone ({n_domains} domains at {crop} px), more than this machine's {total / 2**30:.1f} "
                         f"GiB of memory; lower {field} (or data.crop)")
