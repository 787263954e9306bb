"""The project-local ZenML stack: SQLite ZenML store under ZENML_CONFIG_PATH, the local artifact store, an MLflow
experiment tracker backed by a SQLite store inside the project, and ZenML's local orchestrator extended to run
independent steps side by side when a run config asks for it (pipelines/parallel_orchestrator.py). Registration is
idempotent, and a stack registered before the orchestrator existed is moved onto it."""

from __future__ import annotations

import os
from pathlib import Path

from steps._support import TRACKER

ROOT = Path(__file__).resolve().parents[1]
STACK = "mpnas_local"
ORCHESTRATOR = "mpnas_orchestrator"
ORCHESTRATOR_FLAVOR_SOURCE = "pipelines.parallel_orchestrator.ParallelLocalOrchestratorFlavor"


def tracking_uri() -> str:
    """MLFLOW_TRACKING_URI if set (the Makefile and the tests set it), else the project's sqlite store."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{ROOT / 'mlruns' / 'mlflow.db'}"


def artifact_root(uri: str | None = None) -> Path:
    """MLflow artifacts live beside the sqlite database (never in the current directory)."""
    uri = uri or tracking_uri()
    if uri.startswith("sqlite:///"):
        return Path(uri[len("sqlite:///"):]).parent / "artifacts"
    return ROOT / "mlruns" / "artifacts"


def ensure_local_stack(uri: str | None = None, activate: bool = True) -> str:
    """Register the MLflow tracker and the `mpnas_local` stack if missing (or re-point the tracker), then activate."""
    from zenml.client import Client
    from zenml.enums import StackComponentType

    uri = uri or tracking_uri()
    if uri.startswith("sqlite:///"):
        Path(uri[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    if not (ROOT / ".zen").is_dir():
        Client.initialize(ROOT)  # the source root ZenML resolves step sources (steps.*, pipelines.*) against
    client = Client()
    trackers = client.list_stack_components(type=StackComponentType.EXPERIMENT_TRACKER.value, name=TRACKER,
                                             hydrate=True)
    if trackers.total == 0:
        client.create_stack_component(name=TRACKER, flavor="mlflow",
                                      component_type=StackComponentType.EXPERIMENT_TRACKER,
                                      configuration={"tracking_uri": uri})
    elif trackers.items[0].configuration.get("tracking_uri") != uri:
        client.update_stack_component(TRACKER, StackComponentType.EXPERIMENT_TRACKER,
                                      configuration={"tracking_uri": uri})
    ensure_orchestrator(client)
    if client.list_stacks(name=STACK).total == 0:
        client.create_stack(name=STACK, components={
            StackComponentType.ORCHESTRATOR: ORCHESTRATOR,
            StackComponentType.ARTIFACT_STORE: "default",
            StackComponentType.EXPERIMENT_TRACKER: TRACKER})
    else:
        stack = client.get_stack(STACK)
        if stack.components[StackComponentType.ORCHESTRATOR][0].name != ORCHESTRATOR:
            client.update_stack(STACK, component_updates={StackComponentType.ORCHESTRATOR: ORCHESTRATOR})
    if activate and client.active_stack_model.name != STACK:
        client.activate_stack(STACK)
    return STACK


def ensure_orchestrator(client) -> None:
    """Register the parallel-capable local orchestrator's flavor and one component of it (one step at a time unless
    a run config's `settings.orchestrator.max_parallel_steps` says otherwise)."""
    from zenml.enums import StackComponentType

    from pipelines.parallel_orchestrator import FLAVOR

    kind = StackComponentType.ORCHESTRATOR
    if client.list_flavors(name=FLAVOR, type=kind.value).total == 0:
        client.create_flavor(source=ORCHESTRATOR_FLAVOR_SOURCE, component_type=kind)
    if client.list_stack_components(type=kind.value, name=ORCHESTRATOR).total == 0:
        client.create_stack_component(name=ORCHESTRATOR, flavor=FLAVOR, component_type=kind, configuration={})


# MLflow 3's UI opens an experiment on its GenAI overview (traces, latency, tokens) unless the experiment says it
# is a model-training one: then it opens on the runs table.
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}


def ensure_experiment(name: str, uri: str | None = None) -> str:
    """Create the MLflow experiment as a model-training experiment, with its artifact location inside the project
    (ZenML would use ./mlruns); an existing experiment gets the kind tag if it lacks it."""
    import mlflow

    uri = uri or tracking_uri()
    client = mlflow.MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(name)
    if exp is None:
        location = artifact_root(uri) / name
        location.mkdir(parents=True, exist_ok=True)
        return client.create_experiment(name, artifact_location=location.as_uri(), tags=EXPERIMENT_KIND)
    for key, value in EXPERIMENT_KIND.items():
        if exp.tags.get(key) != value:
            client.set_experiment_tag(exp.experiment_id, key, value)
    return exp.experiment_id


def active_tracking_uri() -> str:
    """The tracking URI of the active stack's MLflow tracker (what steps will log to), else `tracking_uri()`."""
    from zenml.client import Client

    tracker = Client().active_stack.experiment_tracker
    return tracker.get_tracking_uri() if tracker is not None else tracking_uri()
