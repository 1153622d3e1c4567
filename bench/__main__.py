"""Runs every benchmark and prints its report; numbers go in docs/benchmarks.md."""

from __future__ import annotations

import asyncio
import datetime
import importlib
import os
import subprocess
import sys
from pathlib import Path

BENCHMARKS: list[str] = ["turns", "hops", "gateway", "tools", "memory", "scale"]


def provenance() -> str:
    """When, on what commit and what machine: a report pasted into docs/benchmarks.md
    carries its own date and commit."""
    root = Path(__file__).resolve().parent.parent

    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return ""

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    if git("status", "--porcelain", "--untracked-files=no"):
        commit += " with uncommitted changes"
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"{now}, commit {commit}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the start"


def main() -> None:
    names = sys.argv[1:] or BENCHMARKS
    print(provenance(), flush=True)
    for name in names:
        module = importlib.import_module(f"bench.{name}")
        print(f"\n## {name}\n", flush=True)
        asyncio.run(module.run())


if __name__ == "__main__":
    main()
