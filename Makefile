# The two commands a newcomer needs:
#   make run   - install everything, start embedded Postgres + Redis (unless URLs are set), migrate, serve :5000
#   make test  - install everything (incl. headless Chromium) and run the whole test suite
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test lint bench clean system-deps

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	# torch first, pinned, so pip takes the CPU build instead of a multi-GB CUDA one
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[ml]" --group dev
	touch $(STAMP)

install: $(STAMP)

# system tools the tests drive: headless Chromium (browser tests) and docker-compose (validates the compose file)
system-deps:
	@command -v chromium >/dev/null 2>&1 && command -v docker-compose >/dev/null 2>&1 || \
	  (apt-get update -q && apt-get install -y -q chromium docker-compose) || \
	  echo "could not install chromium/docker-compose: browser and compose tests will fail"

run: install
	$(BIN)/leximind run

test: install system-deps
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) var test-artifacts
