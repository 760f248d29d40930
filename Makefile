# The two commands of the README: `make run` and `make test`.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml cluster/mcp/package-lock.json 2>/dev/null | sha1sum | cut -c1-12)

.PHONY: run test install bench stop clean

$(PY):
	$(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip

$(STAMP): $(PY) pyproject.toml
	$(PIP) install -q -e ".[test]"
	@if [ -f cluster/mcp/package.json ]; then npm ci --prefix cluster/mcp --no-audit --no-fund --loglevel=error; fi
	@rm -f $(VENV)/.installed-* && touch $(STAMP)

install: $(STAMP)

run: install
	$(VENV)/bin/sutazai run

test: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy
	$(PY) -m pytest -q -p no:cacheprovider

# The fast path's figures in one table (bench/fast_path.py: starts the app on .data/bench,
# measures it against its peers, stops it). The load generator (autocannon) comes from bench/package.json.
bench: install
	@if [ -f bench/package.json ]; then npm ci --prefix bench --no-audit --no-fund --loglevel=error; fi
	$(PY) bench/fast_path.py

# Stops a run of .data from another terminal, or whatever a killed one left running
# (its Ray head, Postgres and Redis, found by their files under .data).
stop:
	@if [ -x $(VENV)/bin/sutazai ]; then $(VENV)/bin/sutazai stop; fi

# Stop first: once .data is gone nothing can find a run's processes any more.
clean: stop
	rm -rf $(VENV) .data
