# Every target sets up its own virtual environment first, so a fresh clone needs only make.
PYTHON ?= python3
VENV ?= .venv
# The CPU build of torch; for a CUDA build see README.md ("Using a GPU").
TORCH ?= torch==2.13.0
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install test demo bench lint clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check "$(TORCH)"
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[dev]"
	touch $(STAMP)

test: install
	$(PY) -m pytest -q

demo: install
	PATH="$(abspath $(VENV))/bin:$$PATH" bash examples/demo.sh

bench: install
	$(PY) benchmarks/bench.py --json bench.json

lint: install
	$(PY) -m ruff check src tests examples benchmarks
	$(PY) -m ruff format --check src tests examples benchmarks

clean:
	rm -rf $(VENV) demo-output bench.json .pytest_cache
