"""`mpnas schedule`: a cron entry or systemd user timer that runs the retrain pipeline on the local stack.

The local ZenML orchestrator cannot schedule runs, so local scheduling is left to the OS. Prints by default;
`--install` adds the cron entry (idempotently, marked by a comment) or writes and enables the systemd user units.
Orchestrators with native schedules (Kubeflow, Kubernetes) use configs/schedule_kubeflow.yaml instead.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
from pathlib import Path

MARKER = "# mpnas-retrain"
UNIT = "mpnas-retrain"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("schedule", help="print (or install) a cron entry / systemd timer for the retrain pipeline",
                       description=__doc__.split("\n\n")[0] + " Prints unless --install is given.")
    p.add_argument("--config", default="configs/retrain.yaml", help="ZenML run config (default: configs/retrain.yaml)")
    p.add_argument("--project", type=Path, default=Path.cwd(), help="project root (default: current directory)")
    p.add_argument("--format", choices=["cron", "systemd"], default="cron")
    p.add_argument("--cron", default="0 3 * * 1", help="cron schedule (default: Mondays 03:00)")
    p.add_argument("--on-calendar", default="Mon *-*-* 03:00:00", help="systemd OnCalendar (default: Mondays 03:00)")
    p.add_argument("--install", action="store_true", help="install it for the current user (never done by tests)")
    p.set_defaults(func=_run)


def command(project: Path, config: str) -> str:
    """The shell command a scheduler runs: the project's venv, its ZenML/MLflow state, a log file."""
    root = project.resolve()
    if not (root / config).is_file():
        raise FileNotFoundError(f"{root / config}: run config not found (give --config or --project)")
    env = (f"ZENML_CONFIG_PATH={shlex.quote(str(root / '.zen-config'))} ZENML_ANALYTICS_OPT_IN=false "
           f"MLFLOW_TRACKING_URI={shlex.quote('sqlite:///' + str(root / 'mlruns' / 'mlflow.db'))}")
    return (f"cd {shlex.quote(str(root))} && mkdir -p logs && {env} .venv/bin/zenml pipeline run "
            f"pipelines.retrain_pipeline.retrain_pipeline -c {shlex.quote(config)} >> logs/retrain.log 2>&1")


def cron_entry(project: Path, config: str, cron: str) -> str:
    if len(cron.split()) != 5:
        raise ValueError(f"--cron {cron!r}: expected five fields (minute hour day month weekday)")
    return f"{cron} {command(project, config)} {MARKER}\n"


def systemd_units(project: Path, config: str, on_calendar: str) -> dict[str, str]:
    service = ("[Unit]\nDescription=mpnas retrain pipeline\n\n[Service]\nType=oneshot\n"
               f"ExecStart=/bin/bash -lc {shlex.quote(command(project, config))}\n")
    timer = (f"[Unit]\nDescription=Run {UNIT} on a schedule\n\n[Timer]\nOnCalendar={on_calendar}\nPersistent=true\n\n"
             "[Install]\nWantedBy=timers.target\n")
    return {f"{UNIT}.service": service, f"{UNIT}.timer": timer}


def install_cron(entry: str) -> None:
    current = subprocess.run(["crontab", "-l"], capture_output=True, text=True)
    lines = [l for l in (current.stdout if current.returncode == 0 else "").splitlines() if not l.endswith(MARKER)]
    subprocess.run(["crontab", "-"], input="\n".join([*lines, entry.rstrip("\n")]) + "\n", text=True, check=True)


def install_systemd(units: dict[str, str]) -> Path:
    target = Path.home() / ".config" / "systemd" / "user"
    target.mkdir(parents=True, exist_ok=True)
    for name, text in units.items():
        (target / name).write_text(text)
    subprocess.run(["systemctl", "--user", "daemon-reload"], check=True)
    subprocess.run(["systemctl", "--user", "enable", "--now", f"{UNIT}.timer"], check=True)
    return target


def _run(args: argparse.Namespace) -> int:
    if args.format == "cron":
        entry = cron_entry(args.project, args.config, args.cron)
        print(entry, end="")
        if args.install:
            install_cron(entry)
            print("installed in the current user's crontab (remove the line ending with '# mpnas-retrain')")
    else:
        units = systemd_units(args.project, args.config, args.on_calendar)
        for name, text in units.items():
            print(f"# {name}\n{text}")
        if args.install:
            print(f"installed and enabled in {install_systemd(units)}")
    return 0
