# Onboard: `make run` runs the whole site, `make test` runs the whole suite.
# Both set up what they need (venv, packages, services) on a Debian machine.
SHELL := /bin/bash
BIN := .venv/bin
PYTEST_ARGS ?=

.PHONY: help setup run test test-slow bench clean

help:
	@echo "make run        set up and run web, worker, beat, flower and a mail catcher"
	@echo "make test       set up and run the whole test suite"
	@echo "make test-slow  the full-size fault scenarios (minutes)"
	@echo "make bench      benchmarks; prints figures and writes bench/README.md"

setup: .venv/.stamp

.venv/.stamp: requirements.txt scripts/bootstrap.sh
	bash scripts/bootstrap.sh
	touch $@

run: setup
	bash scripts/services.sh rabbitmq rabbitmq-management
	bash scripts/run.sh

test: setup
	bash scripts/services.sh rabbitmq postgres redis chromium
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-slow: setup
	bash scripts/services.sh rabbitmq postgres redis chromium
	RUN_SLOW=1 $(BIN)/python -m pytest -m slow $(PYTEST_ARGS)

bench: setup
	bash scripts/services.sh rabbitmq postgres
	$(BIN)/python bench/run_all.py

clean:
	rm -rf .venv instance .pytest_cache
