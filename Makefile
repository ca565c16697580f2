# Everything runs from a project-local virtual environment built from the pinned lock.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: venv run test test-fast lint e2e bench lock clean

$(STAMP): requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check uv==0.13.9
	$(VENV)/bin/uv pip sync --quiet --python $(PY) requirements.lock
	$(VENV)/bin/uv pip install --quiet --python $(PY) --no-deps -e .
	touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)  ## train a model end to end on the embedded defaults
	$(PY) -m pipeline run $(ARGS)

test: $(STAMP)  ## the test suite but the long fault tests (needs PostgreSQL and MariaDB on 127.0.0.1)
	$(PY) -m pytest -ra -m "not long" $(PYTEST_ARGS)

test-fast: $(STAMP)  ## unit tests only: no servers, no end-to-end runs (a couple of minutes)
	$(PY) -m pytest -ra -m "not integration and not slow and not long" $(PYTEST_ARGS)

lint: $(STAMP)  ## ruff: lint rules and formatting of pyproject.toml
	$(VENV)/bin/ruff check pipeline tests bench services
	$(VENV)/bin/ruff format --check pipeline tests bench services

e2e: $(STAMP)  ## the long fault tests on a private stack, then the docker compose stack: build, train, check, tear down
	$(PY) -m pytest -raP -m long $(PYTEST_ARGS)  # -rP: what each fault test measured (its prints)
	bash services/e2e.sh

# getML (the benchmark's peer) pins numpy/pandas/pyarrow/rich below the project's lock: its own venv
GETML_VENV  := .venv-getml
GETML_STAMP := $(GETML_VENV)/.installed

$(GETML_STAMP): bench/getml-requirements.lock
	$(PYTHON) -m venv $(GETML_VENV)
	$(GETML_VENV)/bin/pip install --quiet --disable-pip-version-check uv==0.13.9
	$(GETML_VENV)/bin/uv pip sync --quiet --python $(GETML_VENV)/bin/python bench/getml-requirements.lock
	touch $(GETML_STAMP)

bench: $(STAMP) $(if $(QUICK),,$(GETML_STAMP))  ## bench/REPORT.md on real AdventureWorks (AW_DATA_DIR, < 45 min); QUICK=1: synthetic, minutes
	$(PY) -m bench.run $(if $(QUICK),--quick --out $(or $(OUT),.pipeline/bench-quick)) $(ARGS)

lock:  ## re-resolve requirements.lock from pyproject.toml
	$(PY) -m uv pip compile pyproject.toml --extra dev --python-version 3.11 --python-platform x86_64-manylinux_2_28 -o requirements.lock
	$(PY) -m uv pip compile bench/getml-requirements.in --python-version 3.11 --python-platform x86_64-manylinux_2_28 -o bench/getml-requirements.lock

clean:
	rm -rf .pipeline .pytest_cache
