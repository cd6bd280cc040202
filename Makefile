# authpilot's everyday commands. Needs python3 (3.11), java 17+, mvn and gcc on PATH; the
# first target run creates $(VENV) and installs the pinned dependencies from PyPI, the first
# broker start resolves the Kafka jars from Maven Central.
#
#   make demo   ARGS="--rate 50 --scenario acquirer_outage" models, arms, an incident, live view
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

# `make bench`: every benchmark in app/bench, about 3 minutes on 2 cores (measured: simulator
# 7 s, features 4 s, drift 10 + 3 s, model 23 s, end to end 80 s plus the broker's start).
# The end-to-end run uses two rates of the README's four; override e.g. BENCH_E2E="--rates
# 100,300,600,1000 --duration 10". It leaves the local broker running, as the demo does.
BENCH_E2E ?= --rates 100,300 --duration 10
# The capacity benchmark's backlog: --quick is 3,000 requests; the issue's table uses 20,000.
BENCH_CAPACITY ?= --quick

.DEFAULT_GOAL := help
.PHONY: help install demo run test test-slow lint typecheck bench clean distclean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | expand -t 12

$(INSTALLED): pyproject.toml
	@echo "[setup] installing authpilot and its pinned dependencies into $(VENV)" >&2
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"
	@touch $@

install: $(INSTALLED)  ## create .venv (or VENV=path) with authpilot and its dev extra

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
	$(BIN)/mypy

typecheck: $(INSTALLED)  ## mypy on app/ (settings in pyproject.toml)
	$(BIN)/mypy $(ARGS)

bench: $(INSTALLED)  ## every benchmark in app/bench (~5 min; the last two need the broker)
	@echo "== bench 1/9: simulator throughput (app.bench.sim)"
	$(PY) -m app.bench.sim
	@echo "== bench 2/9: online feature cost per event (app.bench.features)"
	$(PY) -m app.bench.features
	@echo "== bench 3/9: online correction cost per request: offsets and posterior shares (app.bench.correction)"
	$(PY) -m app.bench.correction
	@echo "== bench 4/9: drift monitor on steady traffic: false alarms (app.bench.drift_replay)"
	$(PY) -m app.bench.drift_replay
	@echo "== bench 5/9: drift monitor through an acquirer outage: detection delay"
	$(PY) -m app.bench.drift_replay --scenario acquirer_outage --days 7 12
	@echo "== bench 6/9: scoring core vs raw C vs tl2cgen Predictor vs LightGBM (app.bench.model)"
	$(PY) -m app.bench.model
	@echo "== bench 7/9: backfill: a week of outcomes computed offline vs the per-outcome replay (app.bench.backfill)"
	$(PY) -m app.bench.backfill
	@echo "== bench 8/9: worker vs a librdkafka echo on the local broker (app.bench.e2e)"
	$(BIN)/authpilot bench-e2e $(BENCH_E2E)
	@echo "== bench 9/9: capacity: Python loop, bare Faust, worker open/closed loop, latency at 25/50/75% (app.bench.capacity)"
	$(PY) -m app.bench.capacity $(BENCH_CAPACITY)

clean:  ## remove caches and run outputs (var/, reports/, build/); keeps the venv
	rm -rf var reports build .pytest_cache .ruff_cache .mypy_cache *.egg-info
	find app tests -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean  ## clean, and remove the venv too
	rm -rf $(VENV)
