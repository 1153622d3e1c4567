# One command surface: the same commands locally, in CI and in the README.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PACKAGES := shared services/gateway services/reasoner services/tool-runner services/memory services/offline-model
PYPROJECTS := $(addsuffix /pyproject.toml,$(PACKAGES))
MYPY_PACKAGES := -p agentry_shared -p agentry_gateway -p agentry_reasoner -p agentry_tool_runner -p agentry_memory -p agentry_offline_model
# mypy names a file by its nearest base (mypy_path, then the root), so each test folder is
# checked under the names its imports use: as packages of the root where tests import
# each other that way (`services.gateway.tests.conftest`, `tests.client`); on their own,
# with the folder as the base, where they are top-level modules (`from conftest import`,
# under TYPE_CHECKING) or sit in a folder whose name is no identifier (tool-runner).
MYPY_TEST_PACKAGES := -p shared.tests -p services.gateway.tests -p services.reasoner.tests -p tests -p bench
MYPY_TEST_FOLDERS := services/tool-runner/tests services/memory/tests services/offline-model/tests

.PHONY: run test lint bench install rabbitmq sandbox prometheus clean

install: $(STAMP)

$(STAMP): $(PYPROJECTS) requirements-dev.txt constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -r requirements-dev.txt $(addprefix -e ,$(PACKAGES))
	touch $(STAMP)

rabbitmq:
	@scripts/ensure-rabbitmq.sh

sandbox:
	@scripts/ensure-sandbox.sh

prometheus:
	@scripts/ensure-prometheus.sh

run: install rabbitmq sandbox
	$(BIN)/python scripts/run_all.py

test: install rabbitmq sandbox prometheus
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy $(MYPY_PACKAGES) $(MYPY_TEST_PACKAGES)
	for folder in $(MYPY_TEST_FOLDERS); do \
		MYPYPATH=$$folder $(BIN)/mypy --cache-dir .mypy_cache/$$(basename $$(dirname $$folder)) $$folder || exit 1; \
	done

bench: install rabbitmq sandbox
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
