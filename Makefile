# pgqueue developer entry points. Each target sets up its own venv on first use and
# needs no running PostgreSQL: without DATABASE_URL an embedded server is started for
# the command and stopped when it ends (also on Ctrl-C).

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
WITH_PG := $(PY) -m pgqueue.testing.embedded --

.PHONY: install demo test test-slow bench lint format clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,all]'
	@touch $(STAMP)

install: $(STAMP)

## make demo: a worker processing real jobs, start to finish (the main job)
demo: $(STAMP)
	$(WITH_PG) $(PY) examples/demo.py

## make test: the whole test suite (PYTEST_ARGS="-k name" to narrow it)
test: $(STAMP)
	$(WITH_PG) $(PY) -m pytest $(PYTEST_ARGS)

## make test-slow: the long fault-injection cases (CI runs them too)
test-slow: $(STAMP)
	$(WITH_PG) $(PY) -m pytest -m slow $(PYTEST_ARGS)

## make bench: throughput and latency figures (not a test; prints a table, writes JSON)
bench: $(STAMP)
	$(WITH_PG) $(PY) -m tests.bench $(BENCH_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .ruff_cache
