"""How a ZenML run config carries the mpnas config, and its validation before any step runs.

A run config (configs/*.yaml) is a ZenML `PipelineRunConfiguration` whose `parameters.config` holds the mpnas sections
(data, space, search, train, evaluate, export), optionally with `parameters.overrides` (dotted KEY=VALUE strings) or
`parameters.config_path` (a plain mpnas YAML instead of the embedded mapping). Each pipeline body calls
`resolve_config` first: pydantic validates the whole thing while ZenML compiles the pipeline, so a bad field stops
the run before any step, with the run-config file and the dotted field (`parameters.config.train.steps`) named.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import yaml
from pydantic import ValidationError

from mpnas.config import ConfigError, MpnasConfig, _format_errors, apply_overrides, load_config


def run_config_path() -> Optional[str]:
    """The `-c` file of the run being compiled (`zenml pipeline run -c` / `with_options(config_path=...)`), if any."""
    from zenml.pipelines.compilation_context import PipelineCompilationContext

    ctx = PipelineCompilationContext.get()
    return getattr(ctx.pipeline, "_run_args", {}).get("config_path") if ctx is not None else None


def resolve_config(config: Optional[dict[str, Any]] = None, config_path: Optional[str] = None,
                   overrides: Optional[list[str]] = None, source: Optional[str] = None) -> MpnasConfig:
    """Validate the mpnas config of a pipeline run; raise ConfigError naming the file and the field."""
    if config is not None and config_path is not None:
        raise ConfigError(f"{source or '<run config>'}: give either parameters.config or parameters.config_path")
    if config_path is not None:
        return load_config(config_path, overrides)
    source = source or run_config_path() or "<pipeline arguments>"
    if config is not None and not isinstance(config, dict):
        raise ConfigError(f"{source}: parameters.config must be a mapping of sections (data, search, train, ...)")
    raw = yaml.safe_load(yaml.safe_dump(config or {}))  # deep copy, plain types
    if overrides:
        raw = apply_overrides(raw, list(overrides))
    try:
        return MpnasConfig.model_validate(raw)
    except ValidationError as exc:
        msg = _format_errors(exc, source)
        raise ConfigError(msg.replace("\n  ", "\n  parameters.config.")) from None


def sections(cfg: MpnasConfig, *names: str) -> dict[str, Any]:
    """The JSON dump of some sections (+ name and seed): steps get only what they use, so caching stays precise."""
    dump = cfg.model_dump(mode="json")
    return {k: dump[k] for k in ("name", "seed", *names)}


def read_run_config(path: str | Path) -> dict[str, Any]:
    """The mpnas mapping inside a run-config file (for `mpnas` CLI tools that read configs/*.yaml)."""
    path = Path(path)
    raw = yaml.safe_load(path.read_text()) or {}
    params = raw.get("parameters", {}) if isinstance(raw, dict) else {}
    if not isinstance(params, dict) or "config" not in params:
        raise ConfigError(f"{path}: no parameters.config mapping (is this a ZenML run config from configs/?)")
    return params["config"]
