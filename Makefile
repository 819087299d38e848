# Set-up is part of every target: the first run creates .venv and installs what the project needs.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python

.PHONY: run demo test bench bench-shakespeare clean graphviz

$(VENV)/.ready: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -e '.[test,plot,fast]'
	@# PyTorch is the test oracle and the benchmark's yardstick, never a runtime dependency.
	$(PY) -m pip install --quiet torch==2.13.0 || echo "torch==2.13.0 not installed: PyTorch comparison tests will be skipped"
	touch $@

# The main job: 3 minutes of training on the Python reference manual (ships with CPython). Without a size,
# --minutes picks the model and schedule measured best for the budget (a 1x384 LSTM, cosine-annealed; it says so),
# shows a bar against the time budget, and ends with a 300-character sample; loss.png is in the run folder.
run: $(VENV)/.ready
	$(PY) -m chainrule train --minutes 3 --out runs/$$(date +%Y%m%d-%H%M%S)

demo: $(VENV)/.ready
	$(PY) -m chainrule demo

# Graphviz renders the graph drawings; where it cannot be installed, those tests are skipped (with the reason).
graphviz:
	@command -v dot >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	  apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq graphviz >/dev/null 2>&1; } || \
	  echo "Graphviz could not be installed here: the SVG/PNG rendering tests will be skipped"

test: $(VENV)/.ready graphviz
	$(VENV)/bin/ruff check .
	$(PY) -m mypy src
	$(PY) -m pytest

bench: $(VENV)/.ready
	$(PY) benchmarks/engine.py
	$(PY) benchmarks/rnn.py

# About 25 minutes: 10 minutes of training each for chainrule and PyTorch on tiny-shakespeare.
bench-shakespeare: $(VENV)/.ready
	$(PY) benchmarks/shakespeare.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
