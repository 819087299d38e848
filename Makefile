# Set-up is part of every target: the first run creates .venv and installs what the project needs.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python

.PHONY: run test bench clean

$(VENV)/.ready: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -e '.[test]'
	@# PyTorch is the test oracle and the benchmark's yardstick, never a runtime dependency.
	$(PY) -m pip install --quiet torch==2.13.0 || echo "torch==2.13.0 not installed: PyTorch comparison tests will be skipped"
	touch $@

run: $(VENV)/.ready
	$(PY) -m chainrule demo

test: $(VENV)/.ready
	$(PY) -m pytest

bench: $(VENV)/.ready
	$(PY) benchmarks/engine.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
