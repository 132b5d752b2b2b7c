# Two commands do the whole set-up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
ARGS   ?=
# DVC stages call `python -m pipelines`: the venv's python must come first on PATH.
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: run test install data train serve ui bench lint docs docs-build clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## the main job on the embedded defaults: the whole retrain flow (Prefect's temporary local
## server, sqlite MLflow, the local DVC remote, MNIST from the offline source)
run: $(STAMP)
	$(BIN)/ganpkg run $(ARGS)

## scheduled retraining: serve the flow with params.yaml's cron (starts a local Prefect server)
serve: $(STAMP)
	$(BIN)/ganpkg serve $(ARGS)

## MLflow UI over the embedded store: http://127.0.0.1:5000
ui: $(STAMP)
	$(BIN)/mlflow ui --backend-store-uri sqlite:///mlflow.db --host 127.0.0.1 --port 5000

## data/ from the source (or the DVC remote), checked against data.dvc, then prepared/ by DVC
data: $(STAMP)
	$(BIN)/ganpkg data ingest || $(BIN)/dvc pull data.dvc
	$(BIN)/ganpkg data verify
	$(BIN)/dvc repro prepare
	$(BIN)/dvc push

## the test suite (fast on 2 CPU cores)
test: $(STAMP)
	$(BIN)/python -m pytest $(ARGS)

## training alone
train: $(STAMP)
	$(BIN)/ganpkg train $(ARGS)

## benchmarks: each prints `ratio: N.NN (...)` on its last line
bench: $(STAMP)
	for b in benchmarks/[!_]*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

## ruff, then the layering contracts in pyproject.toml ([tool.importlinter])
lint: $(STAMP)
	$(BIN)/ruff check ganpkg pipelines tests benchmarks infra
	$(BIN)/lint-imports

## params.yaml's comments, docs/reference/configuration.md and commands.md, regenerated from
## the config models and the command line's help (tests/code/test_reference.py checks them)
.PHONY: reference
reference: $(STAMP)
	$(BIN)/python -m pipelines.reference

## the documentation site (mkdocs.yml, docs/) built strictly into site/: a broken link, a
## missing anchor or a page left out of the nav fails it (CI runs it after lint)
docs-build: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

## the documentation site on http://127.0.0.1:8000 (built strictly first), reloaded on edits
docs: docs-build
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve -a 127.0.0.1:8000

clean:
	rm -rf runs prepared .pytest_cache
