# authpilot's everyday commands. Needs python3 (3.11), java 17+, mvn and gcc on PATH; the
# first target run creates $(VENV) and installs the pinned dependencies from PyPI, the first
# broker start resolves the Kafka jars from Maven Central.
#
#   make demo   ARGS="--rate 50 --world acquirer_outage"   broker + worker + traffic + results
#   make test   ARGS="-k foo"                               the default suite (starts a broker)
#   make run    ARGS="kafka status"                         any `authpilot` subcommand
#
# VENV=/some/path uses another virtualenv (CI caches, throwaway checks).

PYTHON ?= python3
VENV ?= .venv
ARGS ?=

BIN := $(VENV)/bin
PY := $(BIN)/python
# Touched after a successful install: older than pyproject.toml means reinstall.
INSTALLED := $(VENV)/.installed

# `make bench`: offline benchmarks sized to finish in a few minutes on 2 cores (the modules'
# own defaults are the README's full runs: 1M simulated attempts, 100k training rows).
BENCH_SIM ?= --attempts 200000
BENCH_FEATURES ?= --events 20000
BENCH_MODEL ?= --rows 20000 --reps 5000
BENCH_DRIFT ?= --attempts 200000
BENCH_E2E ?= --rates 100,300 --duration 10

.DEFAULT_GOAL := help
.PHONY: help install demo run test test-slow lint typecheck bench bench-e2e clean distclean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | expand -t 12

$(INSTALLED): pyproject.toml
	@echo "[setup] installing authpilot and its pinned dependencies into $(VENV)" >&2
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"
	@touch $@

install: $(INSTALLED)  ## create $(VENV) and install authpilot with its dev extra

demo: $(INSTALLED)  ## local Kafka broker + worker + simulated traffic + live results
	$(BIN)/authpilot demo $(ARGS)

run: $(INSTALLED)  ## any authpilot subcommand: make run ARGS="kafka status"
	$(BIN)/authpilot $(ARGS)

test: $(INSTALLED)  ## the default test suite; starts its own broker
	$(PY) -m pytest $(ARGS)

test-slow: $(INSTALLED)  ## soak, fault and long benchmark tests kept out of the default suite
	$(PY) -m pytest -m slow $(ARGS)

lint: $(INSTALLED)  ## ruff check + ruff format --check + mypy
	$(BIN)/ruff check app tests
	$(BIN)/ruff format --check app tests
	$(BIN)/mypy $(ARGS)

typecheck: $(INSTALLED)  ## mypy on app/ (settings in pyproject.toml)
	$(BIN)/mypy $(ARGS)

bench: $(INSTALLED)  ## simulator, online features, model scoring, drift monitor (~N min)
	@echo "== bench 1/4: simulator throughput (app.bench.sim $(BENCH_SIM))"
	$(PY) -m app.bench.sim $(BENCH_SIM)
	@echo "== bench 2/4: online feature cost per event (app.bench.features $(BENCH_FEATURES))"
	$(PY) -m app.bench.features $(BENCH_FEATURES)
	@echo "== bench 3/4: scoring core vs raw C vs Predictor (app.bench.model $(BENCH_MODEL))"
	$(PY) -m app.bench.model $(BENCH_MODEL)
	@echo "== bench 4/4: drift monitor replay (app.bench.drift_replay $(BENCH_DRIFT))"
	$(PY) -m app.bench.drift_replay $(BENCH_DRIFT)

bench-e2e: $(INSTALLED)  ## worker vs a librdkafka echo on the local broker
	$(BIN)/authpilot bench-e2e $(BENCH_E2E) $(ARGS)

clean:  ## remove caches and run outputs (var/, reports/, build/); keeps $(VENV)
	rm -rf var reports build .pytest_cache .ruff_cache .mypy_cache *.egg-info
	find app tests -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean  ## clean, and remove $(VENV) too
	rm -rf $(VENV)
