"""Two commits' benchmarks, run turn about on this machine, and their medians side by side.

    .venv/bin/python scripts/bench_ab.py BASE [HEAD] [--bench turns|timeline] [--runs 3]

On a shared VM the speed drifts by 10-20 % within an hour (docs/benchmarks.md), more
than most changes move a turn: only runs interleaved in one sitting compare. Each commit
is checked out in a worktree of its own (`git worktree add --detach`, removed
afterwards) and runs on this checkout's venv, with its packages put ahead of the
editable installs through PYTHONPATH, so the commits may not differ in dependencies.
The runs go A, B, A, B, ...; each full report is kept in the output folder.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The folders `make install` installs editable (the Makefile's PACKAGES), plus the root for `bench` and `tests`.
PACKAGES = (
    "shared",
    "clients/python",
    "tools/admin",
    "services/gateway",
    "services/reasoner",
    "services/tool-runner",
    "services/memory",
    "services/offline-model",
    ".",
)


def metrics(bench: str, report: str) -> dict[str, float]:
    """The numbers a change is judged by, read off one report."""
    found: dict[str, float] = {}
    if bench == "turns":
        for label in ("one calculator call", "no tool"):
            cpu = re.search(rf"\| {label} \|(?: [\d.]+ \|){{5}} \*\*([\d.]+)\*\*", report)
            first = re.search(rf"\| {label} \|(?: [\d.]+ \|){{3}} \*\*([\d.]+)\*\*", report)
            if cpu:
                found[f"{label}: CPU per turn (ms)"] = float(cpu.group(1))
            if first:
                found[f"{label}: first delta over direct (ms)"] = float(first.group(1))
        load = re.search(r"\| 32 \| ([\d.]+) \| (\d+) \| (\d+) \| ([\d.]+) \|", report)
        if load:
            found["32 clients: turns/s"] = float(load.group(1))
            found["32 clients: p99 / p50"] = float(load.group(4))
    elif bench == "timeline":
        section = ""
        for line in report.splitlines():
            if line in ("one calculator call", "no tool"):
                section = line
            stamp = re.match(r"\| ([\d.]+) \| client first message\.delta \|", line)
            if stamp and section:
                found[f"{section}: client's first delta (ms)"] = float(stamp.group(1))
    return found


def run(tree: Path, bench: str, out: Path) -> dict[str, float]:
    environment = dict(os.environ)
    paths = [str(tree / package) for package in PACKAGES]
    environment["PYTHONPATH"] = os.pathsep.join([*paths, environment.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    done = subprocess.run(
        [sys.executable, "-m", "bench", bench], cwd=tree, env=environment, capture_output=True, text=True, check=False
    )
    out.write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        raise SystemExit(f"bench {bench} failed in {tree}; its output: {out}")
    return metrics(bench, done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("base")
    parser.add_argument("head", nargs="?", default="HEAD")
    parser.add_argument("--bench", default="turns", choices=("turns", "timeline"))
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None, help="where the reports go (default: a new temp folder)")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="bench-ab-"))
    out.mkdir(parents=True, exist_ok=True)
    sides = {"A": args.base, "B": args.head}
    trees: dict[str, Path] = {}
    with tempfile.TemporaryDirectory(prefix="bench-ab-trees-") as parent:
        try:
            for side, commit in sides.items():
                trees[side] = Path(parent) / side
                git = ["git", "worktree", "add", "--detach", "--quiet", str(trees[side]), commit]
                subprocess.run(git, cwd=ROOT, check=True)
            seen: dict[str, dict[str, list[float]]] = {side: {} for side in sides}
            for n in range(1, args.runs + 1):
                for side in sides:
                    report = out / f"{side}.{n}.txt"
                    for name, value in run(trees[side], args.bench, report).items():
                        seen[side].setdefault(name, []).append(value)
                    print(f"run {n} of {args.runs}, {side} ({sides[side]}): {report}", flush=True)
        finally:
            for tree in trees.values():
                subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, check=False)
    print(f"\nbench {args.bench}, {args.runs} runs each, interleaved; medians (each run's value)\n")
    print(f"| | A: {sides['A']} | B: {sides['B']} |")
    print("|---|---|---|")
    for name in seen["A"]:
        cells = []
        for side in sides:
            values = seen[side].get(name, [])
            shown = ", ".join(f"{v:g}" for v in values)
            cells.append(f"{statistics.median(values):.1f} ({shown})" if values else "-")
        print(f"| {name} | {cells[0]} | {cells[1]} |")


if __name__ == "__main__":
    main()
