# Threadline — the two commands: `make run` and `make test`.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install run test test-faults test-scale test-browser fuzz lint check bench clean

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "$(PYTHON) not found; set PYTHON=python3"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: install
	$(PY) scripts/run_dev.py

test: install
	$(PY) -m pytest $(PYTEST_ARGS)

# Real faults (a stalled S3 proxy, a SIGSTOPped private Redis, a private PostgreSQL cluster
# stopped and restarted, slow clients) against gunicorn served with gunicorn.conf.py; about
# 5 minutes. Not part of `make test`.
test-faults: install
	$(PY) -m pytest tests/faults $(PYTEST_ARGS)

# Playwright driving Debian's Chromium (/usr/bin/chromium) against a live server on
# PostgreSQL; screenshots go to var/screenshots/. Not part of `make test`.
test-browser: install
	$(PY) -m pytest tests/browser $(PYTEST_ARGS)

# Scale-out and worker-recovery tests (tests/scale/, ~5 min): a 3-node Redis Cluster,
# PgBouncer in transaction mode, two gunicorn processes with three Celery workers, SIGKILLed
# workers. Needs redis-server/redis-cli and pgbouncer on PATH (.ci/run installs pgbouncer).
test-scale: install
	$(PY) -m pytest tests/scale $(PYTEST_ARGS)

# schemathesis over the whole schema against a live server (bounded: FUZZ_MAX_TIME seconds).
fuzz: install
	$(PY) scripts/fuzz.py

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

check: install
	$(VENV)/bin/ruff check .
	$(PY) scripts/check_structure.py
	$(PY) manage.py makemigrations --check --dry-run

bench: install
	$(PY) bench/append_read.py
	$(PY) bench/tiers.py
	$(PY) bench/handoffs.py
	$(PY) bench/conversation.py
	$(PY) bench/filters.py
	$(PY) bench/cache_bounds.py
	$(PY) bench/peers.py

clean:
	rm -rf $(VENV) var
