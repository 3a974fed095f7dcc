# Threadline — the two commands: `make run` and `make test`.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install run test lint check bench fuzz clean

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
	$(PY) bench/peers.py

clean:
	rm -rf $(VENV) var
