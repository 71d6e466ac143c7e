# Two entry points: `make run` (the service, embedded default) and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install run test test-fast lint format services browser load clean

# torch and torchvision are pinned to the builds that lie on these machines' disks (a CUDA build
# that also runs on the CPU); pyproject.toml admits them with ranges.
$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "torch==2.14.1" "torchvision==0.29.1"
	$(PY) -m pip install --quiet -e ".[worker,dev]"
	@touch $(STAMP)

install: $(STAMP)

# The embedded default: SQLite and blobs under ./var, a worker process without a broker.
# Migrates, then serves http://127.0.0.1:8000 (OpenAPI at /docs).
# References: file:// below var/data, and s3:// or gs:// when their credentials are configured
# (AWS_ACCESS_KEY_ID or AWS_ENDPOINT_URL or ~/.aws/credentials; GOOGLE_APPLICATION_CREDENTIALS
# or STORAGE_EMULATOR_HOST, a GCS emulator).
# Variables already set win.
run: install
	@mkdir -p var/data
	@schemes=""; \
	if [ -n "$$AWS_ACCESS_KEY_ID$$AWS_ENDPOINT_URL" ] || [ -f "$$HOME/.aws/credentials" ]; then schemes="s3"; fi; \
	if [ -n "$$GOOGLE_APPLICATION_CREDENTIALS$$STORAGE_EMULATOR_HOST" ]; then schemes="$${schemes:+$$schemes,}gs"; fi; \
	DLCPRUNE_FILE_ROOTS="$${DLCPRUNE_FILE_ROOTS:-$(CURDIR)/var/data}" \
	DLCPRUNE_REFERENCE_SCHEMES="$${DLCPRUNE_REFERENCE_SCHEMES:-$$schemes}" \
	$(VENV)/bin/dlcprune serve

# PostgreSQL and Redis on 127.0.0.1, started when they are down (the tests use both).
services:
	@pg_isready -q -h 127.0.0.1 -p 5432 || pg_ctlcluster --skip-systemctl-redirect $$(ls /etc/postgresql) main start
	@for i in $$(seq 60); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done; pg_isready -h 127.0.0.1 -p 5432
	@redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 || redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
	@for i in $$(seq 60); do redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && break; sleep 1; done; redis-cli -h 127.0.0.1 -p 6379 ping

lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(VENV)/bin/lint-imports

format: install
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

# Debian's Chromium, for the dashboard's browser tests (Playwright drives it; no browser download).
browser:
	command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium)

# Two pytest-xdist workers, a test file each at a time (tests of one file share their fixtures);
# every session fixture makes its own database, queues and ports. The slowest tests are listed at
# the end of every run, to keep the suite's time in view.
PYTEST_ARGS ?= -n 2 --dist loadfile --durations=20

# The import-linter contracts (docs/architecture.md) run inside the suite: tests/test_layers.py.
test: install services browser
	$(PY) -m ruff check .
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: install services
	$(PY) -m pytest -m "not slow"

# 50 concurrent clients on loopback for 2 minutes while a job scores (docs/reliability.md).
load: install services
	$(PY) bench/load.py --clients 50 --seconds 120

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis var
