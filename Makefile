# mpnas: `make run` (main pipeline on the embedded default data) and `make test` (the test suite).
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat requirements.lock pyproject.toml | sha1sum | cut -c1-12)
export ZENML_ANALYTICS_OPT_IN := false
export ZENML_CONFIG_PATH := $(CURDIR)/.zen-config
export ZENML_LOGGING_VERBOSITY := WARN
export MLFLOW_TRACKING_URI := sqlite:///$(CURDIR)/mlruns/mlflow.db
export AUTO_OPEN_DASHBOARD := false
# Python may cache the bytecode of what it imports (some machines set PYTHONDONTWRITEBYTECODE=1, and uv installs
# without .pyc files): otherwise every process (the pipeline, each DVC call, each export worker, each test subprocess)
# compiles torch, ExecuTorch, ZenML and MLflow from source again, about 10 s per process here (BENCHMARKS.md).
unexport PYTHONDONTWRITEBYTECODE
export MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR := false
CONFIG ?= configs/default.yaml
BENCH ?= all

.PHONY: setup test bench run ui dashboard clean help

help:  ## list targets
	@grep -E '^[a-z]+:.*##' Makefile | sed 's/:.*## /\t/'

$(STAMP): requirements.lock pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; install Python 3.11 or pass PYTHON=..."; exit 1; }
	$(PYTHON) tools/install_lock.py --venv $(VENV) --lock requirements.lock  # uv, pip if uv fails (MPNAS_INSTALLER=pip)
	@rm -f $(VENV)/.installed-*
	@touch $@

setup: $(STAMP)  ## create .venv from the lock file and initialise DVC/ZenML/MLflow state (idempotent)
	@$(BIN)/python -m pipelines.bootstrap

# One process by default: on 2 cores two xdist workers are no faster (fresh clone, quiet machine, 460 tests: 378 s
# with 0, 385 s with TEST_WORKERS=2 and OMP_NUM_THREADS=1; session 3, 411 tests: 464 s vs 490 s with 2 workers),
# since torch already uses both cores and tests/pipelines dominates one worker.
# TEST_WORKERS=N runs N xdist workers; tests/conftest.py groups the tests that share costly fixtures.
TEST_WORKERS ?= 0
test: setup  ## run the test suite (TEST_WORKERS=N: N pytest-xdist workers)
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadgroup --no-loadscope-reorder tests

bench: setup  ## run benchmarks (BENCH=data|search|train|export|all) and update BENCHMARKS.md
	$(BIN)/python -m benchmarks.run $(BENCH)

run: setup  ## run the main pipeline (CONFIG=configs/default.yaml): reports/<run>/, reports/latest, MLflow, ZenML
	$(BIN)/zenml pipeline run pipelines.mpnas_pipeline.mpnas_pipeline -c $(CONFIG)
	@echo "report: reports/latest/report.md   lineage: .venv/bin/mpnas lineage   UI: make ui"

UI_PORT ?= 5000
ui:  ## start the MLflow UI on 127.0.0.1:$(UI_PORT) (Ctrl-C stops it)
	@mkdir -p mlruns
	@echo "MLflow UI: http://127.0.0.1:$(UI_PORT)/#/experiments?workflowType=machine_learning  (experiments mpnas_pipeline, comparison_pipeline, retrain_pipeline; the link opens MLflow's Model training view)"
	MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false $(BIN)/mlflow server --workers 1 --host 127.0.0.1 --port $(UI_PORT) \
		--backend-store-uri $(MLFLOW_TRACKING_URI) --default-artifact-root $(CURDIR)/mlruns/artifacts

DASHBOARD_PORT ?= 8237
dashboard:  ## start the ZenML dashboard of the project-local store on 127.0.0.1:$(DASHBOARD_PORT) (Ctrl-C stops it)
	$(BIN)/python -m pipelines.dashboard --port $(DASHBOARD_PORT)

clean:  ## remove local run state (keeps .venv)
	rm -rf runs reports mlruns .zen-config .zen .pytest_cache dvc.yaml dvc.lock
