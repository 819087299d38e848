# Set-up is part of every target: the first run creates .venv and installs what the project needs.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python

.PHONY: run demo test bench clean

$(VENV)/.ready: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -e '.[test,plot,fast]'
	@# PyTorch is the test oracle and the benchmark's yardstick, never a runtime dependency.
	$(PY) -m pip install --quiet torch==2.13.0 || echo "torch==2.13.0 not installed: PyTorch comparison tests will be skipped"
	touch $@

# The main job: train a 2x256 LSTM on the Python reference manual (ships with CPython) for 3 minutes.
run: $(VENV)/.ready
	$(PY) -m chainrule train --minutes 3 --out runs/$$(date +%Y%m%d-%H%M%S)

demo: $(VENV)/.ready
	$(PY) -m chainrule demo

test: $(VENV)/.ready
	$(PY) -m pytest

bench: $(VENV)/.ready
	$(PY) benchmarks/engine.py
	$(PY) benchmarks/rnn.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
