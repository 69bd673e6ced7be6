# corduroy: development tasks.
#
#   make test     run the test suite (Python 3 venv + pinned pouchdb-server)
#   make demo     run examples/demo.py against a fresh test server
#   make bench    run the benchmark harness
#   make test39   run the suite on CPython 3.9 (pyenv) with the pyuv backend
#   make clean    remove venvs, caches and build output
#
# Set COUCHDB_URL=http://user:pw@host:5984 to use a real CouchDB instead of
# the pouchdb-server that tests/server starts.

PYTHON      ?= python3
NPM         ?= npm
PYTEST_ARGS ?=

VENV     := .venv
VENV39   := .venv39
SERVER   := tests/server
PIP_OPTS := --disable-pip-version-check
# The editable install maps each top-level package that has an __init__.py
# when it runs (new modules inside one need no reinstall), so a package's
# __init__.py appearing re-runs it too.
PKG_DEPS := setup.py pyproject.toml $(wildcard corduroy/__init__.py loop/__init__.py)

.PHONY: test demo bench test39 lint clean

# Development virtualenv with the package (editable) and the dev extras.
# The stamp file re-runs the install whenever the packaging changes.
$(VENV): $(VENV)/.installed
$(VENV)/.installed: $(PKG_DEPS)
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install $(PIP_OPTS) --upgrade pip
	$(VENV)/bin/python -m pip install $(PIP_OPTS) -e '.[dev]'
	touch $@

# The pinned test server (pouchdb-server), installed exactly from the lock file.
$(SERVER)/node_modules: $(SERVER)/node_modules/.installed
$(SERVER)/node_modules/.installed: $(SERVER)/package.json $(SERVER)/package-lock.json
	cd $(SERVER) && $(NPM) ci --no-audit --no-fund
	touch $@

# Run the test suite; extra pytest arguments go in PYTEST_ARGS.
test: $(VENV) $(SERVER)/node_modules
	$(VENV)/bin/python -m pytest -q $(PYTEST_ARGS)

# Run the demo, then the leaderboard example (callback, @relax and async
# styles), with COUCHDB_URL pointing at one fresh test server.
demo: $(VENV) $(SERVER)/node_modules
	$(VENV)/bin/python -m tests.server.launcher -- sh -c \
	    '$(VENV)/bin/python examples/demo.py && $(VENV)/bin/python examples/leaderboard.py --style all'

# Install the benchmark peers, run the default set on the canned server, then
# W1 against the pinned pouchdb-server with fewer requests (BENCH_ARGS: more options).
BENCH_ARGS ?=
bench: $(VENV) $(SERVER)/node_modules
	$(VENV)/bin/python -m pip install $(PIP_OPTS) -e '.[bench]'
	$(VENV)/bin/python -m benchmarks --target canned $(BENCH_ARGS)
	$(VENV)/bin/python -m benchmarks --target pouchdb --workloads W1 --requests 2000 $(BENCH_ARGS)

# The suite on CPython 3.9 from pyenv, where the reactor backend is pyuv.
# Newest pyenv CPython 3.9 (empty if none; the recipe then says so).
PYTHON39 = $(shell ls -d "$$(pyenv root 2>/dev/null)"/versions/3.9.*/bin/python 2>/dev/null | sort -V | tail -n 1)
test39: $(VENV39)/.installed $(SERVER)/node_modules
	LOOP_BACKEND=pyuv $(VENV39)/bin/python -m pytest -q $(PYTEST_ARGS)
$(VENV39)/.installed: $(PKG_DEPS)
	@test -n "$(PYTHON39)" || { echo "test39: no CPython 3.9 under pyenv (try: pyenv install 3.9)" >&2; exit 1; }
	test -x $(VENV39)/bin/python || $(PYTHON39) -m venv $(VENV39)
	$(VENV39)/bin/python -m pip install $(PIP_OPTS) --upgrade pip
	$(VENV39)/bin/python -m pip install $(PIP_OPTS) -e '.[dev]'
	touch $@

# Static checks: ruff on everything, mypy on the two packages.
lint: $(VENV)
	$(VENV)/bin/ruff check corduroy loop tests benchmarks examples
	$(VENV)/bin/mypy corduroy loop

# Remove everything the targets above create.
clean:
	rm -rf $(VENV) $(VENV39) $(SERVER)/node_modules build dist *.egg-info
	rm -rf .pytest_cache .mypy_cache .ruff_cache .hypothesis
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
