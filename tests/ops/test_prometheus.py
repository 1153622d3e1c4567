"""The dashboard and the alert rules against a real Prometheus scraping a real stack.

Debian's `prometheus` binary scrapes the five services (and RabbitMQ's rabbitmq_prometheus
plugin when it answers on 127.0.0.1:15692) every second, with the alert rules loaded.
After a few turns, one of them failing, every panel query of the dashboard must return
data, and every alert and recording expression must parse and evaluate. Prometheus runs
on loopback, on a free port, with a temporary storage folder, and is ended by its PID.
"""

from __future__ import annotations

import json
import logging
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect

from tests.client import converse
from tests.stack import Stack, free_port

yaml = pytest.importorskip("yaml", reason="PyYAML writes the config and reads the rules: pip install pyyaml")
log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "k8s" / "grafana" / "agentry-dashboard.json"
RULES = ROOT / "k8s" / "prometheus" / "agentry-rules.yaml"
RABBITMQ_PROMETHEUS = ("127.0.0.1", 15692)
# Grafana's variables, as a query runs them over the last minute.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "5m"}

pytestmark = pytest.mark.skipif(
    shutil.which("prometheus") is None, reason="Debian's prometheus is not installed (make test installs it)"
)


def answers(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=1).close()
    except OSError:
        return False
    return True


def prometheus_config(stack: Stack, broker_plugin: bool) -> dict[str, Any]:
    jobs: list[dict[str, Any]] = [
        {
            "job_name": "agentry",
            "static_configs": [{"targets": [f"127.0.0.1:{port}" for port in stack.ports.values()]}],
        }
    ]
    if broker_plugin:
        host, port = RABBITMQ_PROMETHEUS
        jobs.append(
            {
                "job_name": "rabbitmq",
                "metrics_path": "/metrics/per-object",
                "static_configs": [{"targets": [f"{host}:{port}"]}],
            }
        )
    return {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "1s"},
        "rule_files": [str(RULES)],
        "scrape_configs": jobs,
    }


class Prometheus:
    def __init__(self, workdir: Path, config: dict[str, Any]) -> None:
        self.port = free_port()
        config_path = workdir / "prometheus.yml"
        config_path.write_text(yaml.safe_dump(config))
        self.log_path = workdir / "prometheus.log"
        with self.log_path.open("wb") as out:
            self.process = subprocess.Popen(
                [
                    "prometheus",
                    f"--config.file={config_path}",
                    f"--storage.tsdb.path={workdir / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--storage.tsdb.retention.time=1h",
                ],
                stdout=out,
                stderr=out,
            )

    def get(self, path: str, **params: str) -> dict[str, Any]:
        url = f"http://127.0.0.1:{self.port}{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(url, timeout=10) as reply:
                body: dict[str, Any] = json.loads(reply.read())
        except urllib.error.HTTPError as exc:  # 400/422: a query that does not parse or run
            body = json.loads(exc.read())
        return body

    def wait_ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"prometheus exited:\n{self.log_path.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready", timeout=1) as reply:
                    if reply.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"prometheus not ready:\n{self.log_path.read_text()[-3000:]}")

    def query(self, expr: str) -> dict[str, Any]:
        return self.get("/api/v1/query", query=expr)

    def wait_scrapes(self, more: int, timeout: float = 20.0) -> None:
        """Until every `agentry` target has been scraped `more` times from now on."""

        def scrapes() -> dict[str, float]:
            result = self.query('count_over_time(up{job="agentry"}[1h])')["data"]["result"]
            return {r["metric"]["instance"]: float(r["value"][1]) for r in result}

        seen, deadline = scrapes(), time.monotonic() + timeout
        while not all(scrapes().get(instance, 0) >= count + more for instance, count in seen.items()):
            assert time.monotonic() < deadline, f"not {more} more scrapes of every target within {timeout}s"
            time.sleep(0.2)

    def wait_for(self, expr: str, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            reply = self.query(expr)
            if reply.get("status") == "success" and reply["data"]["result"]:
                return
            time.sleep(0.5)
        raise TimeoutError(f"no data for {expr} within {timeout}s")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture(scope="module")
def ops_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    # No SDK retries: the failing turn fails at once.
    stack = Stack(Path(tmp_path_factory.mktemp("ops-stack")), LLM_MAX_RETRIES="0")
    try:
        stack.start_all()
        yield stack
    finally:
        stack.close()


@pytest.fixture(scope="module")
def broker_plugin() -> bool:
    enabled = answers(*RABBITMQ_PROMETHEUS)
    if not enabled:
        log.warning(
            "RabbitMQ's rabbitmq_prometheus plugin does not answer on 127.0.0.1:15692: queue panels "
            "are not checked (enable it: rabbitmq-plugins enable rabbitmq_prometheus, docs/deploy.md)"
        )
    return enabled


@pytest.fixture(scope="module")
def prometheus(ops_stack: Stack, broker_plugin: bool, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    server = Prometheus(tmp_path_factory.mktemp("prometheus"), prometheus_config(ops_stack, broker_plugin))
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
async def after_turns(ops_stack: Stack, prometheus: Prometheus) -> Prometheus:
    """Prometheus once it has scraped a few turns: answered, a tool call, a failed one."""
    prometheus.wait_for('up{job="agentry"} == 1')
    async with connect(ops_stack.ws_url) as ws:
        frames = await converse(ws, "hello")
        assert frames[-1]["type"] == "turn.completed", frames[-1]
        frames = await converse(ws, "what is 37*91?")
        assert frames[-1]["type"] == "turn.completed", frames[-1]
        failed = await converse(ws, "this one breaks [[model-error]]")
        assert failed[-1]["type"] == "turn.failed", failed[-1]
    prometheus.wait_for('agentry_gateway_turn_duration_seconds_count{outcome="model_unavailable"} > 0')
    prometheus.wait_for("agentry_reasoner_turns_total{outcome='model_unavailable'} > 0")
    prometheus.wait_for("agentry_tool_calls_total{outcome='ok'} > 0")
    prometheus.wait_scrapes(2)  # so rate() over them has two points after each turn
    return prometheus


def dashboard_queries() -> list[tuple[str, str]]:
    queries: list[tuple[str, str]] = []

    def walk(panels: list[dict[str, Any]]) -> None:
        for panel in panels:
            walk(panel.get("panels", []))
            for target in panel.get("targets", []):
                queries.append((panel["title"], target["expr"]))

    walk(json.loads(DASHBOARD.read_text())["panels"])
    return queries


def grafana_expanded(expr: str) -> str:
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    return expr


def rule_expressions() -> list[tuple[str, str]]:
    rules = yaml.safe_load(RULES.read_text())
    return [(rule.get("alert") or rule["record"], rule["expr"]) for group in rules["groups"] for rule in group["rules"]]


def test_every_dashboard_panel_returns_data(after_turns: Prometheus, broker_plugin: bool) -> None:
    queries = dashboard_queries()
    assert len(queries) > 30
    empty, failed, skipped = [], [], []
    for title, expr in queries:
        if "rabbitmq_" in expr and not broker_plugin:
            skipped.append(title)
            continue
        reply = after_turns.query(grafana_expanded(expr))
        if reply.get("status") != "success":
            failed.append(f"{title}: {expr}: {reply.get('error')}")
        elif not reply["data"]["result"]:
            empty.append(f"{title}: {expr}")
    if skipped:
        log.warning("queue panels not checked (rabbitmq_prometheus not enabled): %s", skipped)
    assert not failed, "panel queries that fail:\n" + "\n".join(failed)
    assert not empty, "panel queries without data:\n" + "\n".join(empty)


def test_every_rule_expression_evaluates(after_turns: Prometheus) -> None:
    failed = []
    for name, expr in rule_expressions():
        reply = after_turns.query(expr)
        if reply.get("status") != "success":
            failed.append(f"{name}: {reply.get('error')}")
    assert not failed, "rule expressions that do not evaluate:\n" + "\n".join(failed)


def test_prometheus_loaded_every_rule_healthy(after_turns: Prometheus) -> None:
    groups = after_turns.get("/api/v1/rules")["data"]["groups"]
    loaded = {rule["name"]: rule for group in groups for rule in group["rules"]}
    assert set(loaded) == {name for name, _ in rule_expressions()}
    unhealthy = {
        name: rule.get("lastError") for name, rule in loaded.items() if rule["health"] not in ("ok", "unknown")
    }
    assert not unhealthy
