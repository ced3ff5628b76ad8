# Every target bootstraps .venv itself: a fresh machine needs only python3 and make.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint typecheck unit bench clean

$(STAMP): setup.cfg pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev,notebook,bench,crypto]'
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/atlas-eda demo

test: lint typecheck unit

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy --strict atlas_eda

# pytest exits 5 when it collects nothing; make treats that as the failure it is.
unit: $(STAMP)
	$(BIN)/python -m pytest

# Benchmarks are a report, not a test: they print every figure with its target and
# PASS/FAIL, and exit 0 even when a figure misses (see benchmarks/run.py); the report is
# also written to docs/performance.md.
bench: $(STAMP)
	$(BIN)/python -m benchmarks.run --markdown docs/performance.md

clean:
	rm -rf $(VENV) *.egg-info .mypy_cache .pytest_cache .ruff_cache .hypothesis
