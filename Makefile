# The README's two commands: `make plan` (set up, then the offline plan of the example) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup plan test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

plan: $(STAMP)
	$(BIN)/oduflow-iac plan --stack local

# Tests that need a real PostgreSQL server get a throw-away cluster from scripts/with-postgres.sh,
# those that need a Docker engine a throw-away dockerd from scripts/with-docker.sh.
test: $(STAMP)
	scripts/with-postgres.sh scripts/with-docker.sh $(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy oduflow_iac policies bench

bench: $(STAMP)
	$(BIN)/python -m bench.compare

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
