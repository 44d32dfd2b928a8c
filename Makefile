# Two entry points for newcomers: `make demo` and `make test`. Both create or update the
# virtual environment in .venv and install the project (with its dev tools) first.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
ARGS   ?=
PYTEST_ARGS ?=
FUZZ_SECONDS ?= 1800

.PHONY: demo test lint unit integration apache-kafka fuzz venv clean

# Set-up and the demo print nothing of their own on stdout, so `make demo ARGS=--json | jq .`
# works; progress goes to stderr.
$(BIN)/python:
	@echo "creating $(VENV)" >&2
	@$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	@echo "installing the project and its tools into $(VENV) (about a minute, once)" >&2
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip >&2
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]' >&2
	@touch $(STAMP)

venv: $(STAMP)

demo: venv
	@$(BIN)/xgw demo $(ARGS)

test: lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

unit: venv
	$(BIN)/python -m pytest -m "not integration" $(PYTEST_ARGS)

integration: venv
	$(BIN)/python -m pytest -m integration $(PYTEST_ARGS)

apache-kafka: venv
	$(BIN)/python -m pytest -m apache_kafka $(PYTEST_ARGS)

# Coverage-guided fuzzing of the record-to-decision path (docs/fuzzing.md); the corpus in
# var/fuzz/corpus grows from run to run, a crash is written to var/fuzz/crashes.
fuzz: venv
	$(BIN)/python -m gateway.lab.fuzz --seconds $(FUZZ_SECONDS) --corpus var/fuzz/corpus --crashes var/fuzz/crashes

lint: venv
	$(BIN)/ruff check gateway schemas connectors tests examples
	$(BIN)/ruff format --check gateway schemas connectors tests examples
	$(BIN)/mypy
	$(BIN)/mypy examples
	$(BIN)/lint-imports --no-cache

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis *.egg-info
