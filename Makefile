# Developer commands. `make venv` first; CI (.ci/run) does the same steps without make.
PYTHON := .venv/bin/python
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c

.PHONY: venv build test test-reference bench lint format clean

# Create .venv and install the project (this builds the Cython engine) with its test extras.
venv:
	python3 -m venv .venv
	.venv/bin/pip install -e '.[test]'

# Rebuild the compiled engine in place after editing matching/_book.pyx or .pxd. pip builds in
# an isolated environment, so first put pyproject's build requirements into .venv itself.
build:
	$(PYTHON) -m pip install -q 'setuptools>=68' wheel 'Cython>=3.0.10'
	$(PYTHON) setup.py build_ext --inplace

# The whole suite on the compiled engine.
test:
	$(PYTHON) -m pytest -q

# The suite on a build without the compiled extension (the reference engine), as .ci/run's step 2
# (keep the two in step; the reasons are there): a copy of the checkout without the .so, in a
# temporary directory removed afterwards, with its own .venv built with VENUE_NO_EXTENSIONS=1.
test-reference:
	reference="$$(mktemp -d)" && trap 'rm -rf "$$reference"' EXIT && \
	lobster="$${VENUE_LOBSTER_DIR:-$(CURDIR)/../shared/data/lobster}" && \
	tar -c --exclude=./.git --exclude=./.venv --exclude=./data --exclude=build --exclude='*.so' \
	    --exclude='*.egg-info' --exclude=__pycache__ --exclude=.pytest_cache \
	    --exclude=.hypothesis --exclude=.ruff_cache . | tar -x -C "$$reference" && \
	cd "$$reference" && python3 -m venv .venv && \
	VENUE_NO_EXTENSIONS=1 .venv/bin/pip install -q -e '.[test]' && \
	VENUE_NO_EXTENSIONS=1 VENUE_ALLOW_REFERENCE_ENGINE=1 VENUE_LOBSTER_DIR="$$lobster" \
	    .venv/bin/python -m pytest -q

# The benchmarks (slow; run on an otherwise idle machine for figures worth quoting).
bench:
	$(PYTHON) -m load_tests.bench_engine
	$(PYTHON) load_tests/bench_ledger.py
	$(PYTHON) load_tests/bench_pipeline.py

# Lint, and check formatting (as CI does).
lint:
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .

# Reformat the tree in place.
format:
	.venv/bin/ruff format .

# Remove build and test products; keeps .venv and the venue's data/ directory.
clean:
	rm -rf build *.egg-info .pytest_cache .hypothesis .ruff_cache
	rm -f matching/*.so matching/_book.c matching/_book.html
	find . -path ./.venv -prune -o -name __pycache__ -type d -exec rm -rf {} +
