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

# The browser tests (tests/ui, marker `browser`) drive headless chromium: install it where it is missing and
# apt-get is usable (Debian, as root); otherwise say why and go on (those tests then skip, or fail under CI=true
# when chromium is there but broken).
browser-deps:
	@if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then :; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	  echo "installing chromium + chromium-driver for the browser tests (apt-get, log: /tmp/divot-apt.log)"; \
	  (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver) \
	    >/tmp/divot-apt.log 2>&1 || echo "could not install chromium (see /tmp/divot-apt.log): browser tests will skip"; \
	else echo "chromium / chromedriver missing and apt-get unusable here (needs Debian and root): browser tests will skip"; \
	fi

test: $(STAMP) browser-deps
	$(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check divot train eval tests benchmarks

.PHONY: install demo test lint browser-deps
