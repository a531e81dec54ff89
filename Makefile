# tradeloop tasks. Every target installs what it needs into .venv first.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.installed-bench
DEMO_CUTOFF ?= 2025-05-01
DEMO_SEED   ?= 7

.PHONY: demo lint audit test warm bench lab up clean help

help:
	@echo "make demo   - run the main job on the bundled real sample"
	@echo "make lint   - ruff (lint, format), the layer contracts (import-linter) and mypy; make test runs it first"
	@echo "make audit  - pip-audit over requirements.lock and bandit over the code; make test runs it first"
	@echo "make test   - run the whole test suite"
	@echo "make bench  - run the benchmarks (installs the bench group: vectorbt)"
	@echo "make lab    - open JupyterLab on the notebooks (and the pipeline's executed ones in data/runs)"
	@echo "make up     - JupyterLab, Dagster UI, live paper engine and dashboard together"

$(STAMP): requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --require-hashes -r requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	@# PYTHONDONTWRITEBYTECODE may be set: compile once so imports stay fast
	$(BIN)/python -m compileall -q -j 0 $(VENV)/lib tradeloop pipelines live api > /dev/null
	touch $@

$(BENCH_STAMP): $(STAMP) requirements-bench.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --require-hashes -r requirements-bench.lock
	$(BIN)/python -m compileall -q -j 0 $(VENV)/lib > /dev/null
	touch $@

demo: $(STAMP)
	$(BIN)/tradeloop demo
	@# research sees candles before the cut-off only; the months after it stay out of sample
	$(BIN)/python -m pipelines.run --until $(DEMO_CUTOFF) --strategy breakout --trials 10 --workers 1 --seed $(DEMO_SEED)
	@# the live engine trades those months, the champion refit at the retrain policy's times
	$(BIN)/python -m pipelines.replay --name demo --strategy breakout --skip-without-champion
	$(BIN)/tradeloop live sessions
	@echo "Open the dashboard: make up (or .venv/bin/tradeloop dashboard), then http://127.0.0.1:8501"

# configured in pyproject.toml: [tool.ruff], [tool.importlinter] (DESIGN.md's layers), [tool.mypy] (tradeloop/, live/)
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-logo
	$(BIN)/mypy

# deploy/security/audit.py: pip-audit over requirements.lock (PyPI's vulnerability data) and bandit over the
# code, each finding fixed or accepted with its reason in deploy/security/accepted.toml. A vulnerability
# service that cannot be reached is a loud warning that the lock was not audited, and a failure with
# AUDIT_REQUIRED=1 (the hosted CI workflow); AUDIT_OFFLINE=1 skips that lookup (and says so),
# AUDIT_OSV_URL=<an OSV API's /v1/query> asks a mirror instead
audit: $(STAMP)
	$(BIN)/python deploy/security/audit.py $(if $(AUDIT_OFFLINE),--offline) $(if $(AUDIT_REQUIRED),--require-service) $(if $(AUDIT_OSV_URL),--osv-url $(AUDIT_OSV_URL))

# TEST_WORKERS=0 runs the suite in one process; loadfile keeps a module's tests (and its fixtures) on one worker
TEST_WORKERS ?= auto
test: warm lint audit
	bash tests/services/ensure.sh
	@# the kernels' compilation (tests/warm_kernels.py, started by warm) ends before the workers start
	@while kill -0 $$(cat $(VENV)/warm_kernels.pid) 2>/dev/null; do sleep 1; done; tail -n 1 $(VENV)/warm_kernels.log
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile --durations=40

# compile the numba kernels into __pycache__ on the core the lint step leaves idle, so that the
# test workers load them rather than each compiling its own (tests/warm_kernels.py)
warm: $(STAMP)
	@$(BIN)/python tests/warm_kernels.py > $(VENV)/warm_kernels.log 2>&1 & echo $$! > $(VENV)/warm_kernels.pid

bench: $(BENCH_STAMP)
	$(BIN)/python bench/backtest_vs_vectorbt.py
	$(BIN)/python bench/single_series.py
	$(BIN)/python bench/optuna_trials.py --years 2 --trials 4
	$(BIN)/python bench/sweep.py  # 100 SMA pairs x 20 symbols x 100k bars; vectorbt peaks near 15 GB
	$(BIN)/python bench/pipeline.py
	$(BIN)/python bench/live.py
	bash tests/services/ensure.sh  # bench/api.py and bench/feeds.py use this machine's PostgreSQL and Redis
	$(BIN)/python bench/api.py
	$(BIN)/python bench/feeds.py --seconds 90 --warmup 30
	@echo "not run (2.2 GB of disk, minutes): the lake at scale, nice -n 19 $(BIN)/python bench/lake.py"
	@echo "not run (30 minutes): the chaos soak, nice -n 19 $(BIN)/python bench/soak.py (--minutes N; docs/operations.md)"

# jupyter/jupyter_lab_config.py: root at the repository (notebooks/ and data/runs/), notebooks/*.py open as
# notebooks, kernels get the data folder from the settings, --allow-root only when run as root
lab: $(STAMP)
	JUPYTER_CONFIG_PATH="$(CURDIR)/jupyter$${JUPYTER_CONFIG_PATH:+:$$JUPYTER_CONFIG_PATH}" \
		$(BIN)/jupyter lab --ip 127.0.0.1

up: $(STAMP)
	$(BIN)/tradeloop up

clean:
	rm -rf $(VENV) data/lake data/quarantine
