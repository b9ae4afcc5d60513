# allocflow developer entry points. Every target sets up what it needs itself.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.allocflow-installed
# The tested set of every dependency's version (pip and setuptools included): installs
# use it as pip constraints, build environments too. `make lock` refreshes it.
LOCK := requirements.lock
PIP_LOCKED := flock $(VENV)/.install.lock env PIP_CONSTRAINT=$(CURDIR)/$(LOCK) $(BIN)/python -m pip
LOCK_VENV := build/lock-venv
PY_SOURCES := $(shell find models flows connectors dashboards quality -name '*.py' -o -name 'py.typed' 2>/dev/null)
DEMO_ARGS ?=
CHROMIUM := /usr/bin/chromium
BROWSER_PACKAGES := chromium fonts-liberation

.PHONY: help install lock demo test lint typecheck browser unit contract clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(VENV)/bin/python:
	@py=""; for c in python3.12 python3.11 python3; do \
	  if command -v $$c >/dev/null 2>&1 && $$c -c 'import sys; raise SystemExit(sys.version_info[:2] not in ((3, 11), (3, 12)))' 2>/dev/null; then py=$$c; break; fi; \
	done; \
	if [ -z "$$py" ]; then echo "allocflow needs Python 3.11 or 3.12 (bytewax 0.21.1 has no wheels for newer versions)" >&2; exit 1; fi; \
	echo "creating $(VENV) with $$($$py --version)"; $$py -m venv $(VENV)

$(STAMP): $(VENV)/bin/python pyproject.toml $(LOCK) $(PY_SOURCES)
	$(PIP_LOCKED) install --quiet pip
	$(PIP_LOCKED) install --quiet -e '.[dev]' --config-settings editable_mode=strict
	@touch $(STAMP)

install: $(STAMP)  ## create .venv and install allocflow with its dev tools, at the versions of requirements.lock

lock: $(VENV)/bin/python  ## refresh requirements.lock on purpose: the newest versions pyproject.toml allows (then run make test)
	rm -rf $(LOCK_VENV)
	$(BIN)/python -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/python -m pip install --quiet --upgrade pip setuptools
	$(LOCK_VENV)/bin/python -m pip install --quiet '.[dev]'
	@{ echo "# The tested versions of every dependency (make install and CI use them as pip constraints)."; \
	   echo "# Written by 'make lock' with $$($(LOCK_VENV)/bin/python --version) on $$(uname -sm); do not edit by hand."; \
	   $(LOCK_VENV)/bin/python -m pip freeze --all --exclude allocflow; } > $(LOCK).tmp
	mv $(LOCK).tmp $(LOCK)
	rm -rf $(LOCK_VENV)
	@echo "requirements.lock refreshed: review 'git diff $(LOCK)', run 'make test', commit both"

demo: $(STAMP)  ## run the embedded demo: broker, simulator, live view of the topics
	$(BIN)/allocflow demo $(DEMO_ARGS)

lint: $(STAMP)  ## ruff lint and format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)  ## mypy --strict on the package
	$(BIN)/mypy

browser:  ## install Debian's chromium for the browser tests (when missing, as root with apt-get)
	@if [ -x $(CHROMIUM) ]; then exit 0; fi; \
	why=""; \
	if [ "$$(id -u)" != 0 ]; then why="not running as root"; \
	elif ! command -v apt-get >/dev/null 2>&1; then why="apt-get is not available"; \
	else \
	  echo "installing $(BROWSER_PACKAGES) for the browser tests"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get -o DPkg::Lock::Timeout=300 update -qq \
	    && apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends $(BROWSER_PACKAGES) >/dev/null \
	    || why="apt-get failed (see above)"; \
	fi; \
	if [ -n "$$why" ]; then \
	  echo "$(CHROMIUM) is missing and was not installed: $$why." >&2; \
	  echo "  The browser tests will be skipped (and fail under CI=true)." >&2; \
	  echo "  Install it with: sudo apt-get install --no-install-recommends $(BROWSER_PACKAGES)" >&2; \
	fi

test: lint typecheck browser  ## the full suite: lint, types, unit, property, integration and browser tests
	$(BIN)/python -m pytest

clean:  ## remove the venv and build output
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
