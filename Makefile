# The README's two commands: `make plan` (set up, then the offline plan of the example) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Two stamps: `make plan` needs only the program's own dependencies; tests and linters add the
# dev tools (pytest, mypy, ruff, ...), installed on the first `make test` / `make lint`.
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev

.PHONY: setup plan test lint bench clean

$(STAMP): pyproject.toml
	@echo "setting up $(VENV) (first run only; about a minute)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	touch $(STAMP)

$(DEV_STAMP): $(STAMP)
	@echo "installing the development tools into $(VENV)"
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(DEV_STAMP)

setup: $(DEV_STAMP)

plan: $(STAMP)
	$(BIN)/oduflow-iac plan --stack local

# Tests that need a real PostgreSQL server get a throw-away cluster from scripts/with-postgres.sh
# (as root with apt-get and no server binaries, it installs Debian's `postgresql` package first),
# those that need a Docker engine a throw-away dockerd from scripts/with-docker.sh.
test: $(DEV_STAMP)
	scripts/with-postgres.sh scripts/with-docker.sh $(BIN)/python -m pytest

lint: $(DEV_STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy oduflow_iac policies bench

bench: $(DEV_STAMP)
	$(BIN)/python -m bench.compare

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
