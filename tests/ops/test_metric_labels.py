"""Every label value a service's code writes as a literal (`METRIC.labels("x")`) exists at
0 from start-up (agentry_shared.metrics.initialise): a series born at its first event is
invisible to `increase()` and `rate()`, so the first event of a kind would fire no alert.

The check reads each service's source for `.labels(...)` calls whose values are all
string literals, and looks for that child on the metric once its metrics.py is imported.
Values computed at run time are the closed sets that metrics.py initialises.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest
from prometheus_client import Counter, Gauge, Histogram

from tests.packages import PACKAGES

ROOT = Path(__file__).resolve().parents[2]
Metric = Counter | Gauge | Histogram


def literal_label_calls(package: Path) -> list[tuple[str, str, ast.Call]]:
    """(file:line, metric name as written, call) for `X.labels(...)` with only literal strings."""
    found = []
    for path in sorted(package.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            if node.func.attr != "labels" or not (node.args or node.keywords):
                continue
            values = [*node.args, *(k.value for k in node.keywords)]
            if all(isinstance(v, ast.Constant) and isinstance(v.value, str) for v in values):
                target = node.func.value
                name = target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", "")
                found.append((f"{path.relative_to(ROOT)}:{node.lineno}", name, node))
    return found


def label_values(metric: Metric, call: ast.Call) -> tuple[str, ...]:
    names: tuple[str, ...] = metric._labelnames
    if call.args:
        return tuple(str(ast.literal_eval(a)) for a in call.args)
    given = {k.arg: str(ast.literal_eval(k.value)) for k in call.keywords}
    return tuple(given[name] for name in names)


@pytest.mark.parametrize("service", sorted(PACKAGES))
def test_every_literal_label_value_exists_at_start_up(service: str) -> None:
    package = PACKAGES[service]
    metrics = importlib.import_module(f"{package}.metrics")
    calls = literal_label_calls(ROOT / "services" / service / package)
    missing = []
    for where, name, call in calls:
        metric = getattr(metrics, name, None)
        if not isinstance(metric, Counter | Gauge | Histogram):
            continue  # not one of this service's metrics (or set at start-up, like a gauge)
        values = label_values(metric, call)
        if values not in metric._metrics:
            missing.append(f"{where}: {metric._name}{values}")
    assert not missing, "label values used but not initialised at start-up:\n" + "\n".join(missing)
