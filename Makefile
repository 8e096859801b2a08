# Two commands on a fresh machine:  `make demo`  and  `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin

.PHONY: setup demo test lint services-up services-down bench

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test,bench]'
	@# the compiled engine core (rust/, optional): built when there is a Rust toolchain
	if command -v cargo >/dev/null; then $(BIN)/pip install -q maturin && VIRTUAL_ENV=$(abspath $(VENV)) $(BIN)/maturin develop --release -q -m rust/Cargo.toml || echo "building the Rust core failed: using the pure-Python engine"; else echo "no Rust toolchain: using the pure-Python engine"; fi
	touch $@

demo: setup                   ## sessionize a bundled real dataset and serve the API
	$(BIN)/sessionize demo

test: setup                   ## lint + the whole suite (starts the services it needs)
	scripts/test.sh

lint: setup
	$(BIN)/ruff check src tests bench

services-up:
	scripts/services.sh up

services-down:
	scripts/services.sh down
