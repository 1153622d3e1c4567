# One command surface: the same commands locally, in CI and in the README.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PACKAGES := shared clients/python tools/admin services/gateway services/reasoner services/tool-runner services/memory services/offline-model
PYPROJECTS := $(addsuffix /pyproject.toml,$(PACKAGES))
MYPY_PACKAGES := -p agentry_shared -p agentry_client -p agentry_admin -p agentry_gateway -p agentry_reasoner -p agentry_tool_runner -p agentry_memory -p agentry_offline_model
# mypy names a file by its nearest base (mypy_path, then the root), so each test folder is
# checked under the names its imports use: as packages of the root where tests import
# each other that way (`services.gateway.tests.conftest`, `tests.client`); on their own,
# with the folder as the base, where they are top-level modules (`from conftest import`,
# under TYPE_CHECKING) or sit in a folder whose name is no identifier (tool-runner).
MYPY_TEST_PACKAGES := -p shared.tests -p services.gateway.tests -p services.reasoner.tests -p tests -p bench
MYPY_TEST_FOLDERS := services/tool-runner/tests services/memory/tests services/offline-model/tests

.PHONY: run test lint bench install rabbitmq sandbox prometheus compose-cli browser broker-users broker-permissions asyncapi-spec mcp-everything contracts clean

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

# Debian's docker-compose (the CLI only), to check docker-compose.yml as Compose reads it.
compose-cli:
	@scripts/ensure-docker-compose.sh

# Debian's chromium, which Playwright drives in the web page's tests (never a download of its own).
browser:
	@scripts/ensure-browser.sh

run: install rabbitmq sandbox broker-users
	$(BIN)/python scripts/run_all.py

# One broker user per service of AGENTRY_NAMESPACE, with only its permissions (needs
# rabbitmqctl on this machine; skipped otherwise, and every service uses AMQP_URL).
broker-users: install
	@if command -v rabbitmqctl >/dev/null 2>&1; then $(BIN)/python scripts/broker-users.py ensure; \
	else rm -f data/broker-users.env; echo "no rabbitmqctl here: every service uses AMQP_URL" >&2; fi

# k8s/base/broker-permissions.json: every service's broker permissions, from access.py
# (tests/deploy fails when it differs). The users themselves are made at deploy time:
# scripts/broker-users.py compose (docker compose) or k8s-secret (docs/deploy.md).
broker-permissions: install
	$(BIN)/python scripts/broker-users.py permissions --namespace agentry --out k8s/base/broker-permissions.json

# The official AsyncAPI schemas, to validate docs/contracts/asyncapi.yaml in the tests.
asyncapi-spec:
	@scripts/ensure-npm-package.sh @asyncapi/specs 6.11.1

# The reference MCP server (npm @modelcontextprotocol/server-everything), for the MCP tests.
mcp-everything:
	@scripts/ensure-npm-package.sh @modelcontextprotocol/server-everything 2026.8.31

# docs/contracts/: JSON Schema of every frame and the AsyncAPI document, from the models.
contracts: install
	$(BIN)/python scripts/contracts.py

# The tests need about this many of the broker's file handles free at their peak (see
# scripts/ensure-rabbitmq.sh); checked before they start rather than stalling mid-run.
TEST_FILE_HANDLES := 600

test: install rabbitmq sandbox prometheus compose-cli asyncapi-spec mcp-everything browser
	@RABBITMQ_FILE_HANDLES_NEEDED=$(TEST_FILE_HANDLES) scripts/ensure-rabbitmq.sh
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy $(MYPY_PACKAGES) $(MYPY_TEST_PACKAGES) -p clients.python.tests -p tools.admin.tests
	$(BIN)/mypy scripts/contracts.py
	for folder in $(MYPY_TEST_FOLDERS); do \
		MYPYPATH=$$folder $(BIN)/mypy --cache-dir .mypy_cache/$$(basename $$(dirname $$folder)) $$folder || exit 1; \
	done

bench: install rabbitmq sandbox
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .cache
