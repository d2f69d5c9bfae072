# The project's commands; CI and the README call these.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STACK := deploy/local/stack.sh
CLUSTER := deploy/cluster/cluster.sh

.PHONY: run test test-tier2 up down infra status venv lint typecheck bench soak clean \
	cluster cluster-failover cluster-rebuild-standby cluster-test bench-cluster

PYTHON311 := $(shell command -v python3.11 2>/dev/null || command -v python3 2>/dev/null)

$(VENV)/.installed: pyproject.toml
	@$(PYTHON311) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null \
		|| { echo "Python 3.11 is needed (python3.11 on PATH)" >&2; exit 1; }
	@test -x $(PY) || $(PYTHON311) -m venv $(VENV)
	@$(PY) -m pip install -q --upgrade pip
	@$(PY) -m pip install -q -e '.[dev]'
	@touch $@

venv: $(VENV)/.installed

# The local stack and the tests run in local mode: the development password and tokens are
# accepted only there (deploy/local/env.sh sets it too for the stack's own scripts).
run test test-tier2 up infra bench soak: export DEPLOYMENT_MODE ?= local

## set-up if needed, the whole stack, then a demo upload end to end
# The demo holds claims for a short amendment window instead of two days.
run: export GRANT_BRIDGE_AMENDMENT_WINDOW_S ?= 10
run: venv
	@$(STACK) up
	@$(PY) -m services.demo

## lint, types, the unit tests, then the integration and end-to-end tests against the real
## local stack (the tier2 tests aside); each step stops the run when it fails
test: venv
	@$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .
	@$(VENV)/bin/mypy services
	@$(VENV)/bin/pytest -q -m "not tier2" tests/unit
	@$(STACK) infra
	@deploy/local/browser.sh
	@$(VENV)/bin/pytest -q -m "not tier2" tests/integration tests/e2e

## slow fault, fuzz and scale tests (CI runs them after `make test`); exit 5 means none collected.
## The S3 backend's tests run against the project's own S3 server, built once (about 7 minutes)
## into .cache/ (deploy/local/seaweedfs.sh).
test-tier2: venv
	@deploy/local/seaweedfs.sh build
	@$(STACK) infra
	@$(VENV)/bin/pytest -q -m tier2 || [ $$? -eq 5 ]

## the stack plus the services, in the background, restarted if they crash
up: venv
	@$(STACK) up

infra: venv
	@$(STACK) infra

## the production shape on one machine (docs/deploy.md, "make cluster"): 3 Kafka brokers
## (SASL_SSL, ACLs), PostgreSQL with a synchronous standby, nginx (TLS) in front of 2 gateways,
## 4 validators, 2 bridges, Prometheus, all in production mode; never beside `make up`
cluster: venv
	@$(CLUSTER) up

## after the primary is lost: promote the standby (the cluster runs without one until rebuilt)
cluster-failover:
	@$(CLUSTER) failover

## the node that is not the primary, rebuilt from it as its synchronous standby
cluster-rebuild-standby:
	@$(CLUSTER) rebuild-standby

## the fault run against `make cluster` (started first, claims held 2 s instead of two days,
## the alert rules' times scaled by 0.02); tests marked `cluster` in tests/cluster
cluster-test: venv
	@GRANT_BRIDGE_AMENDMENT_WINDOW_S=$${GRANT_BRIDGE_AMENDMENT_WINDOW_S:-2} \
		CLUSTER_ALERT_SCALE=$${CLUSTER_ALERT_SCALE:-0.02} $(CLUSTER) up >/dev/null
	@SSL_CERT_FILE=$${LOCAL_DIR:-$(CURDIR)/.local}/cluster/ca.crt $(VENV)/bin/pytest -q -s -m cluster \
		tests/cluster

## stops whichever runs, the cluster or the local stack (the cluster first: its PID files
## share .local/run/)
down:
	@test -x $(VENV)/bin/supervisorctl && $(CLUSTER) down || true
	@test -x $(VENV)/bin/supervisorctl && $(STACK) down || true

status:
	@$(STACK) status
	@$(CLUSTER) status

lint: venv
	@$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

typecheck: venv
	@$(VENV)/bin/mypy services

## benchmarks that print figures (bench_scale also runs the offline check and the record
## scanner; bench_latency a small upload's time, step by step, idle and under load;
## bench_grant_bridge the claims/s; bench_gateway_upload the gateway against a raw write); writes
## bench/results/latest.json, bench/results/latency.json and docs/performance.md
bench: venv
	@deploy/local/seaweedfs.sh build
	@$(STACK) infra
	@$(PY) bench/bench_scale.py
	@$(PY) bench/bench_latency.py
	@$(PY) bench/bench_grant_bridge.py --claims 10000
	@$(PY) bench/bench_gateway_upload.py --mb 100 --runs 5

## the cost of the production shape (docs/deploy.md): the same 1,000,000-row upload on `make
## cluster`, then on `make up`, one after the other (never both at once on 2 cores), then the
## table of the two side by side; stops whatever runs first and leaves the local stack up
bench-cluster: venv
	@$(MAKE) --no-print-directory down
	@$(CLUSTER) up >/dev/null
	@$(PY) bench/bench_cluster.py run cluster
	@$(MAKE) --no-print-directory down
	@$(STACK) up >/dev/null
	@$(PY) bench/bench_cluster.py run single
	@$(PY) bench/bench_cluster.py table

## an hour (DURATION=1h, or 30m, 600...) of steady load with withdrawals and purges; judges
## whether memory, descriptors, work tables, dead tuples or lag grow in the second half, and
## plots each figure into docs/soak.png (bench/soak.py). Holds the machine's stack: not in CI.
DURATION ?= 1h
soak: venv
	@$(STACK) infra
	@$(PY) bench/soak.py --duration $(DURATION)

clean: down
	rm -rf .local
