# corduroy: development tasks.
#
#   make test          run the test suite (Python 3 venv + pinned pouchdb-server)
#   make test-couchdb  run it against a real Apache CouchDB 3.4.3 from ../shared/couchdb
#                      (COUCHDB_NODES=3 for a 3-node cluster, COUCHDB_PORT=P)
#   make demo          run examples/demo.py against a fresh test server
#   make bench         run the benchmark harness
#   make test39        run the suite on CPython 3.9 (pyenv) with the pyuv backend
#   make docs          build the API reference (Sphinx, warnings are errors) into docs/_build/html
#   make clean         remove venvs, caches and build output
#
# Set COUCHDB_URL=http://user:pw@host:5984 to use your own CouchDB instead of
# the pouchdb-server that tests/server starts: `make test` and `make demo`
# then need no Node.js (no npm ci).

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

# The pouchdb-server the suite and the demo start, unless COUCHDB_URL names
# a server of your own (then Node.js is not needed at all).
TEST_SERVER := $(if $(COUCHDB_URL),,$(SERVER)/node_modules)

# A real Apache CouchDB for `make test-couchdb` (tests/server/with-couchdb).
COUCHDB_DIST  ?= ../shared/couchdb
COUCHDB_NODES ?= 1
COUCHDB_PORT  ?= 15984

.PHONY: test test-couchdb demo bench test39 lint docs clean

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
test: $(VENV) $(TEST_SERVER)
	$(VENV)/bin/python -m pytest -q $(PYTEST_ARGS)

# Start Apache CouchDB 3.4.3 from $(COUCHDB_DIST) (fresh data), run the suite
# against it, stop it (also on failure). No Node.js needed.
test-couchdb: $(VENV)
	COUCHDB_DIST=$(COUCHDB_DIST) bash tests/server/with-couchdb --fresh --nodes $(COUCHDB_NODES) --port $(COUCHDB_PORT) \
	    -- $(VENV)/bin/python -m pytest -q $(PYTEST_ARGS)

# Run the demo, then the leaderboard example (callback, @relax and async
# styles), with COUCHDB_URL pointing at one fresh test server (or at yours).
demo: $(VENV) $(TEST_SERVER)
	$(VENV)/bin/python -m tests.server.launcher -- sh -c \
	    '$(VENV)/bin/python examples/demo.py && $(VENV)/bin/python examples/leaderboard.py --style all'

# Install the benchmark peers, run the default set on the canned server, then
# W1 against the pinned pouchdb-server with fewer requests, then (when
# $(COUCHDB_DIST) exists) W1 and W2 against a real Apache CouchDB 3.4.3 that the
# harness starts and stops (BENCH_ARGS: more options).
BENCH_ARGS ?=
bench: $(VENV) $(SERVER)/node_modules
	$(VENV)/bin/python -m pip install $(PIP_OPTS) -e '.[bench]'
	$(VENV)/bin/python -m benchmarks --target canned $(BENCH_ARGS)
	$(VENV)/bin/python -m benchmarks --target pouchdb --workloads W1 --requests 2000 $(BENCH_ARGS)
	@if [ -f $(COUCHDB_DIST)/start ]; then \
	    echo '$(VENV)/bin/python -m benchmarks --target couchdb --workloads W1,W2 --requests 2000 $(BENCH_ARGS)'; \
	    COUCHDB_DIST=$(COUCHDB_DIST) $(VENV)/bin/python -m benchmarks --target couchdb --workloads W1,W2 --requests 2000 $(BENCH_ARGS); \
	else echo "bench: no Apache CouchDB in $(COUCHDB_DIST): the couchdb target is skipped"; fi

# The suite on CPython 3.9 from pyenv, where the reactor backend is pyuv.
# Newest pyenv CPython 3.9 (empty if none; the recipe then says so).
PYTHON39 = $(shell ls -d "$$(pyenv root 2>/dev/null)"/versions/3.9.*/bin/python 2>/dev/null | sort -V | tail -n 1)
test39: $(VENV39)/.installed $(TEST_SERVER)
	LOOP_BACKEND=pyuv $(VENV39)/bin/python -m pytest -q $(PYTEST_ARGS)
$(VENV39)/.installed: $(PKG_DEPS)
	@test -n "$(PYTHON39)" || { echo "test39: no CPython 3.9 under pyenv (try: pyenv install 3.9)" >&2; exit 1; }
	test -x $(VENV39)/bin/python || $(PYTHON39) -m venv $(VENV39)
	$(VENV39)/bin/python -m pip install $(PIP_OPTS) --upgrade pip
	$(VENV39)/bin/python -m pip install $(PIP_OPTS) -e '.[dev]'
	touch $@

# Static checks: ruff on everything, mypy on the two packages, and the declared
# types of each calling style (tests/typecheck, asserted with assert_type).
lint: $(VENV)
	$(VENV)/bin/ruff check corduroy loop tests benchmarks examples
	$(VENV)/bin/mypy corduroy loop
	$(VENV)/bin/mypy --follow-imports=silent tests/typecheck

# The API reference: Sphinx (the `docs` extra) into the venv, autodoc from the
# docstrings plus docs/guide and the README; any warning fails the build.
docs: $(VENV)/.docs-installed
	$(VENV)/bin/sphinx-build -W --keep-going -q -b html docs docs/_build/html
	@echo "docs: open docs/_build/html/index.html"
$(VENV)/.docs-installed: $(VENV)/.installed
	$(VENV)/bin/python -m pip install $(PIP_OPTS) -e '.[docs]'
	touch $@

# Remove everything the targets above create.
clean:
	rm -rf $(VENV) $(VENV39) $(SERVER)/node_modules build dist *.egg-info docs/_build
	rm -rf .pytest_cache .mypy_cache .ruff_cache .hypothesis
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
