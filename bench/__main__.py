"""Runs every benchmark and prints its report; numbers go in docs/benchmarks.md."""

from __future__ import annotations

import asyncio
import importlib
import sys

BENCHMARKS: list[str] = ["turns", "gateway", "tools", "memory", "scale"]


def main() -> None:
    names = sys.argv[1:] or BENCHMARKS
    for name in names:
        module = importlib.import_module(f"bench.{name}")
        print(f"\n## {name}\n", flush=True)
        asyncio.run(module.run())


if __name__ == "__main__":
    main()
