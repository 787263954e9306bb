"""`make dashboard`: the ZenML dashboard (runs, DAGs, artifact lineage, the Model Control Plane) served from the
project-local ZenML store, without `zenml login --local`, which would re-point the project's client at a server.

It starts the ZenML server in this process the way ZenML's local daemon does: no authentication, bound to
127.0.0.1, its own config directory under the project's ZENML_CONFIG_PATH, and the client's SQLite store.

    python -m pipelines.dashboard --port 8237
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def server_environment(config_path: Path) -> dict[str, str]:
    """The environment ZenML's local daemon gives its server, pointed at the client store under `config_path`."""
    client = yaml.safe_load((config_path / "config.yaml").read_text()) if (config_path / "config.yaml").is_file() \
        else {}
    env = {"ZENML_SERVER": "true", "ZENML_SERVER_ALLOW_LOCAL_FILE_ACCESS": "true",
           "ZENML_CONFIG_PATH": str(config_path / "dashboard-server"),
           "ZENML_LOCAL_STORES_PATH": str(config_path / "local_stores"),
           "ZENML_SERVER_AUTH_SCHEME": "NO_AUTH", "ZENML_SERVER_DEPLOYMENT_TYPE": "local",
           "ZENML_SERVER_AUTO_ACTIVATE": "True", "ZENML_DISABLE_DATABASE_MIGRATION": "True",
           "ZENML_ANALYTICS_OPT_IN": "false"}
    if client.get("user_id"):
        env["ZENML_USER_ID"] = str(client["user_id"])
    return env


def skip_onboarding_survey() -> None:
    """A fresh store's dashboard first asks its single local user for a name and an email; answer it (no email,
    no newsletter) so the dashboard opens on the project's runs."""
    from zenml.client import Client
    from zenml.config.global_config import GlobalConfiguration

    client = Client()
    user = client.active_user
    meta = dict(user.metadata.user_metadata or {}) if user.metadata else {}
    if user.body.email_opted_in is None or not meta.get("finished_onboarding_survey"):
        client.update_user(user.id, updated_email_opt_in=False,
                           updated_metadata={**meta, "finished_onboarding_survey": True})
    GlobalConfiguration._reset_instance()  # the server below must read its own configuration, not the client's
    Client._reset_instance()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make dashboard", description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8237)
    args = parser.parse_args(argv)
    config_path = Path(os.environ.get("ZENML_CONFIG_PATH") or ROOT / ".zen-config")
    store = config_path / "local_stores" / "default_zen_store" / "zenml.db"
    if not store.is_file():
        print(f"error: no ZenML store at {store}; run `make setup` (or `make run`) first", file=sys.stderr)
        return 1
    skip_onboarding_survey()
    os.environ.update(server_environment(config_path))
    import uvicorn

    print(f"ZenML dashboard: http://{args.host}:{args.port}  (store {store}; Ctrl-C stops it)", flush=True)
    uvicorn.run("zenml.zen_server.zen_server_api:app", host=args.host, port=args.port, log_level="warning",
                server_header=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
