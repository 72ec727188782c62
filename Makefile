# The two commands a newcomer needs: `make run` (Akasha on http://127.0.0.1:8000 with demo data)
# and `make test` (everything, with the servers the tests need).
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin

.PHONY: install run down test lint bench-hot servers

$(BIN)/akasha: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first and pinned: the CPU build on this machine's disk, not a multi-GB CUDA one.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

install: $(BIN)/akasha

run: install
	$(BIN)/akasha up --demo

down: install
	$(BIN)/akasha down

servers:
	bash tests/servers/install.sh

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: install servers lint
	$(BIN)/pytest -q

bench-hot: install
	$(BIN)/python -m akasha_ray.bench hot
