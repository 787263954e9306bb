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

from mpnas.config import ConfigError, MpnasConfig, format_errors, apply_overrides, load_config, read_yaml


def run_config_path() -> Optional[str]:
    """The `-c` file of the run being compiled (`zenml pipeline run -c` / `with_options(config_path=...)`), if any."""
    from zenml.pipelines.compilation_context import PipelineCompilationContext

    ctx = PipelineCompilationContext.get()
    return getattr(ctx.pipeline, "_run_args", {}).get("config_path") if ctx is not None else None


def check_run_config_file(path: str | Path) -> None:
    """Refuse a run-config file with unknown top-level keys (a typo such as `paramters:` would otherwise be ignored
    and the built-in defaults run) or without parameters.config / parameters.config_path."""
    from zenml.config.pipeline_run_configuration import PipelineRunConfiguration

    path = Path(path)
    raw = read_yaml(path)
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping (run_name, parameters, ...)")
    unknown = sorted(set(raw) - set(PipelineRunConfiguration.model_fields))
    if unknown:
        raise ConfigError(f"{path}: unknown top-level key(s) {', '.join(map(repr, unknown))} (check the spelling; "
                          f"a run config has {', '.join(sorted(PipelineRunConfiguration.model_fields))})")
    params = raw.get("parameters")
    if not isinstance(params, dict) or not ({"config", "config_path"} & set(params)):
        raise ConfigError(f"{path}: no parameters.config (the mpnas sections data, space, search, ...) and no "
                          f"parameters.config_path; see configs/default.yaml. A plain mpnas config is for the "
                          f"`mpnas` commands, not for `zenml pipeline run -c`.")


def resolve_config(config: Optional[dict[str, Any]] = None, config_path: Optional[str] = None,
                   overrides: Optional[list[str]] = None, source: Optional[str] = None) -> MpnasConfig:
    """Validate the mpnas config of a pipeline run; raise ConfigError naming the file and the field.

    The run-config file being compiled (if any) is checked first, and a run with neither `config` nor `config_path`
    is refused: silently running the built-in defaults is never what a typo meant."""
    run_file = run_config_path() if source is None else None
    if run_file is not None:
        check_run_config_file(run_file)
    if config is not None and config_path is not None:
        raise ConfigError(f"{source or run_file or '<run config>'}: give either parameters.config or "
                          f"parameters.config_path")
    if config is None and config_path is None:
        raise ConfigError(f"{source or run_file or '<pipeline arguments>'}: no mpnas config; pass "
                          f"`-c configs/default.yaml` (or a run config with parameters.config)")
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
        msg = format_errors(exc, source)
        raise ConfigError(msg.replace("\n  ", "\n  parameters.config.")) from None


def read_run_config(path: str | Path) -> dict[str, Any]:
    """The mpnas mapping inside a run-config file (for `mpnas` CLI tools that read configs/*.yaml)."""
    path = Path(path)
    raw = read_yaml(path)
    params = raw.get("parameters", {}) if isinstance(raw, dict) else {}
    if not isinstance(params, dict) or "config" not in params:
        raise ConfigError(f"{path}: no parameters.config mapping (is this a ZenML run config from configs/?)")
    return params["config"]
