# plaudit — the index of commands. `make help` lists them; CI runs `make test`.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help install demo test lint docs screenshots bench clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-11s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP) ## Create .venv and install plaudit with its test tools

demo: $(STAMP) ## Run the demo on the embedded PostgreSQL in .plaudit/; ends with its HTML report
	$(BIN)/plaudit demo

test: $(STAMP) ## Run the whole test suite on a real PostgreSQL
	$(BIN)/python -m pytest

lint: $(STAMP) ## ruff and mypy on the code
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy

docs: $(STAMP) ## Regenerate docs/cli.md from every command's --help
	$(BIN)/python -m plaudit.cli.reference docs/cli.md

# Needs Debian's chromium and chromium-driver.
screenshots: $(STAMP) ## The README's screenshots of the demo's report (after make demo)
	$(BIN)/python tests/browser.py .plaudit/report docs/img

# Sizes in users (10 activities each): 1m is 1M users and 10M activities. Not part of `test`
# (CI runs a tiny size through tests/test_bench.py). Extra options: BENCH_ARGS='--reps 3'.
SIZES ?= 10k,100k,1m
bench: $(STAMP) ## Benchmarks at SIZES (10k,100k,1m), appended to BENCHMARKS.md
	$(BIN)/python -m bench.run --sizes $(SIZES) $(BENCH_ARGS)

clean: ## Stop the embedded clusters and remove .venv and .plaudit*
	-$(BIN)/plaudit db stop
	-$(BIN)/python -m bench.run --stop-cluster
	rm -rf $(VENV) .plaudit .plaudit-test .plaudit-test-citus .plaudit-bench .plaudit-bench-citus
