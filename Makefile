# Two commands do all the set-up: `make run` and `make test`.
# Both create .venv and install what they need; re-running is cheap.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint soak bench install clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

# runtime only, no test tools: what the container image runs
install:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --no-cache-dir .

run: $(STAMP)
	$(BIN)/egw demo

lint: $(STAMP)
	$(BIN)/ruff check .

test: $(STAMP) lint
	$(BIN)/pytest -q

soak: $(STAMP)
	$(BIN)/pytest -q -m soak

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) build *.egg-info
