# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

DEMO_DIR := demo-output
DEMO_DB := $(DEMO_DIR)/retention.duckdb

.PHONY: demo test install dev lint typecheck unit bench clean serve

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# The CPU build of torch lies on the build machines; installing it first keeps pip from pulling CUDA.
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e . "sqlglot<30.18"
	touch $@

$(VENV)/.dev: $(VENV)/.installed pyproject.toml
	$(PIP) install -q -e ".[dev,spark]" "sqlglot<30.18"
	touch $@

install: $(VENV)/.installed

dev: $(VENV)/.dev

demo: install
	bash examples/demo.sh $(DEMO_DIR)

# The service over the demo store, on loopback: prints a new read key for the dashboard first.
PORT ?= 8000
serve: install
	@test -f $(DEMO_DB) || { echo "no demo store at $(DEMO_DB): run 'make demo' first"; exit 2; }
	@echo "Dashboard: http://127.0.0.1:$(PORT)/dashboard  (sign in with this read key, shown once):"
	@$(VENV)/bin/retention apikey create --db $(DEMO_DB) --scope read --name "make serve" 2>/dev/null
	$(VENV)/bin/retention serve --db $(DEMO_DB) --host 127.0.0.1 --port $(PORT)

lint: dev
	$(VENV)/bin/ruff check retention tests benchmarks examples
	$(VENV)/bin/ruff format --check retention tests benchmarks examples

typecheck: dev
	$(VENV)/bin/mypy

unit: dev
	RETENTION_PROGRESS=0 $(VENV)/bin/pytest -q

test: lint typecheck unit

bench: dev
	$(PIP) install -q -e ".[bench]" "sqlglot<30.18"
	for b in benchmarks/*.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) $(DEMO_DIR) .pytest_cache .mypy_cache .ruff_cache
