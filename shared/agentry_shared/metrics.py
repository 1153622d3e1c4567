"""What every service's metrics share: the build-info gauge, and counters whose label
values all exist (at 0) from start-up.

A labelled counter is otherwise created at its first event, so `increase()` and `rate()`
never see that first event (there is no earlier sample to compare with): the first
failure of a kind would not fire an alert. Each service's metrics.py therefore names the
closed set of every label and calls `initialise` on import.
"""

from __future__ import annotations

import itertools
import os
import subprocess
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path

from prometheus_client import Counter, Gauge, Histogram

BUILD_INFO = Gauge(
    "agentry_build_info",
    "Always 1; the labels say which build of which service this process runs.",
    ["service", "version", "git_sha"],
)
# Set by the image build (`docker build --build-arg GIT_SHA=$(git rev-parse HEAD)`).
GIT_SHA_VARIABLE = "AGENTRY_GIT_SHA"


def git_sha(start: Path | None = None) -> str:
    """The commit this code was built from: AGENTRY_GIT_SHA, else `git rev-parse` in the
    source tree (a checkout, `make run`), else "unknown" (an image built without it)."""
    configured = os.environ.get(GIT_SHA_VARIABLE, "").strip()
    if configured:
        return configured
    folder = start or Path(__file__).resolve().parent
    try:
        found = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"], cwd=folder, capture_output=True, text=True, timeout=2
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    sha = found.stdout.strip()
    return sha if found.returncode == 0 and sha else "unknown"


def version_of(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "unknown"


def publish_build_info(service: str, distribution: str | None = None) -> None:
    """Sets agentry_build_info{service, version, git_sha} = 1 for this process."""
    version = version_of(distribution or f"agentry-{service}")
    BUILD_INFO.labels(service=service, version=version, git_sha=git_sha()).set(1)


def initialise(metric: Counter | Histogram, *label_sets: Iterable[str]) -> None:
    """Creates the child of every combination of the given label values (in the order of
    the metric's labels), so each series exists at 0 before its first event."""
    for values in itertools.product(*(sorted(set(values)) for values in label_sets)):
        metric.labels(*values)
