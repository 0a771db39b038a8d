# ckpt_toolkit — two commands: `make demo`, `make test`. Everything else is set up on demand.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
KERNEL := ckpt-toolkit
STORE ?= demo/results.duckdb
ZOO ?= demo/zoo
PRESET ?= quick
REPORTS ?= reports

.PHONY: help setup browser test test-fast demo reports lab lint format clean

help: ## Show the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN{FS=":.*## "}{printf "  %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first, pinned: a CPU build from local disk (a newer torch would pull a CUDA build)
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[dev]' torch==2.13.0
	$(BIN)/python -m ipykernel install --sys-prefix --name $(KERNEL) --display-name "Python (ckpt_toolkit)" >/dev/null
	@$(MAKE) --no-print-directory browser
	touch $(STAMP)

setup: $(STAMP) ## Create .venv (torch==2.13.0 first, package editable with dev extras, Jupyter kernel, Chromium)

browser: ## Install Debian's chromium for the report browser test (skipped with a message elsewhere)
	@if command -v chromium >/dev/null || command -v chromium-browser >/dev/null || command -v google-chrome >/dev/null; then \
	  true; \
	elif command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	  echo "installing Debian's chromium (used only by the report browser test) ..."; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	    || echo "warning: could not install chromium; the browser test will be skipped"; \
	else \
	  echo "note: no Chromium and no root apt-get; the report browser test will be skipped"; \
	fi

test: $(STAMP) ## Run the whole test suite
	$(BIN)/python -m pytest -q tests

test-fast: $(STAMP) ## The quick tier (under 2 minutes): everything not marked slow
	$(BIN)/python -m pytest -q -m "not slow" tests

demo: $(STAMP) ## Train the quick zoo, probe, fine-tune, analyse, write reports/index.html
	$(BIN)/ckpt demo --preset $(PRESET) --zoo $(ZOO) --store $(STORE) --reports $(REPORTS)

reports: $(STAMP) ## Regenerate the HTML reports from the demo's store
	$(BIN)/ckpt report all --store $(STORE) --out $(REPORTS)

lab: $(STAMP) ## Open JupyterLab on the project
	$(BIN)/jupyter lab --notebook-dir=. notebooks

lint: $(STAMP) ## ruff check and format check
	$(BIN)/ruff check ckpt_toolkit tests benchmarks
	$(BIN)/ruff format --check ckpt_toolkit tests benchmarks

format: $(STAMP) ## Apply ruff fixes and formatting
	$(BIN)/ruff check --fix ckpt_toolkit tests benchmarks
	$(BIN)/ruff format ckpt_toolkit tests benchmarks

clean: ## Remove the environment and demo outputs
	rm -rf $(VENV) demo
