# Every target bootstraps .venv itself: a fresh machine needs only python3 and make.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint typecheck unit bench clean postgres chromium

$(STAMP): setup.cfg pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev,notebook,bench,crypto,postgres,inspect,prometheus,otel]'
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/atlas-eda demo

test: lint typecheck unit

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy --strict atlas_eda

# PostgreSQL's server programs, for the tests' throwaway cluster (atlas_eda/testing/postgres.py
# starts it on 127.0.0.1 in a temporary directory and stops it). Nothing is installed when
# they are already there; otherwise Debian's package is installed when we are root. Without
# them the PostgreSQL tests skip, except under CI (CI=true), where they fail.
PG_FOUND = command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 \
	|| { test -n "$$ATLAS_EDA_PG_BIN" && test -x "$$ATLAS_EDA_PG_BIN/initdb"; }

postgres:
	@if $(PG_FOUND); then \
		echo "PostgreSQL server programs found."; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "Installing PostgreSQL from Debian's packages..."; \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql; \
	else \
		echo "PostgreSQL's server is not installed and cannot be installed here (needs root and apt-get):"; \
		echo "the PostgreSQL tests will skip. Install it ('sudo apt-get install postgresql') to run them."; \
	fi

# Headless Chromium for the inspector's real-browser tests (tests/test_inspector_browser.py),
# driven by Playwright pointed at Debian's /usr/bin/chromium: Playwright's own browser
# download is never used. Installed from Debian's packages when missing and we are root;
# without it the browser tests skip, except under CI (CI=true), where they fail.
CHROMIUM ?= /usr/bin/chromium

chromium:
	@if [ -x "$(CHROMIUM)" ]; then \
		echo "Chromium found at $(CHROMIUM)."; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "Installing Chromium from Debian's packages..."; \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; \
	else \
		echo "Chromium is not installed and cannot be installed here (needs root and apt-get):"; \
		echo "the browser tests will skip. Install it ('sudo apt-get install chromium') to run them."; \
	fi

# pytest exits 5 when it collects nothing; make treats that as the failure it is.
unit: $(STAMP) postgres chromium
	$(BIN)/python -m pytest

# Benchmarks are a report, not a test: they print every figure with its target and
# PASS/FAIL, and exit 0 even when a figure misses (see benchmarks/run.py); the report is
# also written to docs/performance.md.
bench: $(STAMP)
	$(BIN)/python -m benchmarks.run --markdown docs/performance.md

clean:
	rm -rf $(VENV) *.egg-info .mypy_cache .pytest_cache .ruff_cache .hypothesis
