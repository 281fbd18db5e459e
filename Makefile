# The two commands: `make run` installs and runs Brook; `make test` runs every check.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run demo test test-unit lint infra-tools vendor screenshot clean

# The local model's torch: always exactly this version, installed before the `local` extra
# (which pins the same one, so pip keeps this build). Where it comes from is chosen for this
# machine by scripts/torch-index.sh: the CPU-only build on Linux without an NVIDIA GPU, the
# CUDA build (PyPI's) with one, PyPI's on macOS and Windows. TORCH_INDEX overrides it; empty
# (`make run TORCH_INDEX=`) means pip's own configured indexes.
TORCH_VERSION := 2.13.0
TORCH_INDEX ?= $(shell sh scripts/torch-index.sh)

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "torch==$(TORCH_VERSION)" $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(BIN)/pip install --quiet -e ".[local]"
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(BIN)/pip install --quiet -e ".[dev,local]"
	touch $@

# checkov (the Bicep security checks in tests/test_infra.py) pins an older pycep-parser than the
# dev extra, so it lives in its own venv; the venv ignores itself in git (as Python 3.13's do).
INFRA_VENV := .venv-infra
CHECKOV_VERSION := 3.3.30

$(INFRA_VENV)/.checkov-$(CHECKOV_VERSION):
	rm -rf $(INFRA_VENV)
	$(PYTHON) -m venv $(INFRA_VENV)
	echo '*' > $(INFRA_VENV)/.gitignore
	$(INFRA_VENV)/bin/pip install --quiet --upgrade pip
	$(INFRA_VENV)/bin/pip install --quiet checkov==$(CHECKOV_VERSION)
	touch $@

infra-tools: $(INFRA_VENV)/.checkov-$(CHECKOV_VERSION)  ## checkov in .venv-infra

run: $(VENV)/.installed  ## install (with the local model) and serve on http://127.0.0.1:8000
	$(BIN)/brook serve

demo: $(VENV)/.installed  ## Brook against the fake model server: no account needed
	$(BIN)/python -m tests.fakemodel --port 8001 --ttft 0.3 --gap 0.03 --tokens 120 & \
	trap 'kill $$!' EXIT; \
	OPENAI_BASE_URL=http://127.0.0.1:8001/v1 OPENAI_MODEL=fake $(BIN)/brook serve

lint: $(VENV)/.installed-dev  ## ruff, mypy, and the import layers (lint-imports: pyproject's [tool.importlinter])
	$(BIN)/ruff check src tests scripts
	$(BIN)/mypy
	$(BIN)/lint-imports --no-logo

test: lint infra-tools  ## ruff, mypy, lint-imports, then every test (README, Testing: what they find or start)
	$(BIN)/pytest

test-unit: $(VENV)/.installed-dev  ## the tests that need no services, server processes or browser (seconds)
	$(BIN)/pytest -m "not postgres and not redis and not browser and not slow"

vendor:  ## refresh the vendored front-end libraries from npm
	scripts/vendor.sh

screenshot: $(VENV)/.installed-dev
	$(BIN)/python scripts/screenshot.py

clean:
	rm -rf $(VENV) $(INFRA_VENV) instance
