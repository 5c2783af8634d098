# Two commands do all the set-up on a fresh machine:
#   make demo   -> creates .venv, installs divot, runs the main job
#   make test   -> creates .venv, installs divot with dev extras, runs the test suite
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/divot demo --out outputs/demo

test: $(STAMP)
	$(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check divot train eval tests benchmarks

.PHONY: install demo test lint
