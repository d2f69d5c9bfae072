# The project's commands; CI and the README call these.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STACK := deploy/local/stack.sh

.PHONY: run test up down infra status venv lint typecheck bench clean

PYTHON311 := $(shell command -v python3.11 2>/dev/null || command -v python3 2>/dev/null)

$(VENV)/.installed: pyproject.toml
	@$(PYTHON311) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null \
		|| { echo "Python 3.11 is needed (python3.11 on PATH)" >&2; exit 1; }
	@test -x $(PY) || $(PYTHON311) -m venv $(VENV)
	@$(PY) -m pip install -q --upgrade pip
	@$(PY) -m pip install -q -e '.[dev]'
	@touch $@

venv: $(VENV)/.installed

## set-up if needed, the whole stack, then a demo upload end to end
# The demo holds claims for a short amendment window instead of two days.
run: export GRANT_BRIDGE_AMENDMENT_WINDOW_S ?= 10
run: venv
	@$(STACK) up
	@$(PY) -m services.demo

## the whole test suite against the real local stack
test: venv
	@$(STACK) infra
	@$(VENV)/bin/pytest -q

## the stack plus the services, in the background, restarted if they crash
up: venv
	@$(STACK) up

infra: venv
	@$(STACK) infra

down:
	@test -x $(VENV)/bin/supervisorctl && $(STACK) down || true

status:
	@$(STACK) status

lint: venv
	@$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

typecheck: venv
	@$(VENV)/bin/mypy services

bench: venv
	@$(PY) bench/bench_offline_check.py

clean: down
	rm -rf .local
