# telecom-kappa: `make help` lists the targets.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
KAPPA := $(VENV)/bin/kappa
PYTEST_ARGS ?=

.DEFAULT_GOAL := help

.PHONY: help
help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  make %-12s %s\n", $$1, $$2}'

.PHONY: install
install: ## venv + pinned Python deps + JVM artifacts from Maven Central + apt packages (idempotent)
	@scripts/install_apt.sh
	@scripts/install_python.sh
	@scripts/install_jre21.sh
	@scripts/install_jvm.sh

.PHONY: test
test: install ## run the whole test suite against a real local stack
	$(PY) -m pytest $(PYTEST_ARGS)

FAST := not (integration or spark or cluster or slow)

.PHONY: test-fast
test-fast: install ## the tests that start no JVM and no broker, on every core (under two minutes)
	$(PY) -m pytest -m "$(FAST)" -n auto $(PYTEST_ARGS)

.PHONY: check
check: install ## lint, format check and type check (what CI runs besides the tests)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

.PHONY: demo
demo: install ## start the local stack and run the pipeline for a few minutes, then print a summary
	@scripts/demo.sh

.PHONY: up
up: install ## start the local stack (Kafka, Schema Registry)
	$(KAPPA) stack up

.PHONY: down
down: ## stop the local stack
	$(KAPPA) stack down

BENCHES := produce validate aggregate replay e2e

.PHONY: airflow
airflow: install ## start Airflow locally with the replay DAG (UI on KAPPA_AIRFLOW_PORT, default 8088)
	$(KAPPA) airflow up

.PHONY: bench $(addprefix bench-,$(BENCHES))
bench: $(addprefix bench-,$(BENCHES)) ## run every benchmark; figures go to bench/results/

$(addprefix bench-,$(BENCHES)): bench-%: install ## (bench-produce, bench-validate, ...) one benchmark
	$(PY) -m bench.$*

COMPOSE := docker compose -f compose/docker-compose.yml

.PHONY: compose-up
compose-up: ## the distributed deployment (needs a Docker engine and compose/.env)
	$(COMPOSE) up -d --build

.PHONY: compose-down
compose-down: ## stop the distributed deployment
	$(COMPOSE) down

.PHONY: clean
clean: down ## stop the stack and remove its state (.kappa)
	rm -rf .kappa
