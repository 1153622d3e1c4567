"""Runs the fault-injection suite several times and prints the table for docs/reliability.md.

    .venv/bin/python scripts/fault_campaign.py --reps 3 [-k EXPR]

Each repetition is a full `pytest tests/faults` run (fresh processes, fresh namespaces);
the table counts, per fault, how often the client saw the expected outcome.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_once(report: Path, keyword: str | None) -> None:
    command = [sys.executable, "-m", "pytest", "tests/faults", "-q", "-p", "no:cacheprovider", f"--junitxml={report}"]
    if keyword:
        command += ["-k", keyword]
    subprocess.run(command, cwd=ROOT, check=False)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("-k", dest="keyword", default=None)
    args = parser.parse_args()
    outcomes: dict[str, list[str]] = defaultdict(list)
    docs: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.reps):
            report = Path(tmp) / f"run{rep}.xml"
            run_once(report, args.keyword)
            for case in ET.parse(report).getroot().iter("testcase"):  # noqa: S314 - our own pytest report
                name = case.get("name", "?")
                docs[name] = case.get("classname", "").rsplit(".", 1)[-1]
                if case.find("skipped") is not None:
                    outcomes[name].append("skipped")
                elif case.find("failure") is not None or case.find("error") is not None:
                    outcomes[name].append("failed")
                else:
                    outcomes[name].append("passed")
    print("| fault injected (test) | module | repetitions | passed | failed | skipped |")
    print("|---|---|---|---|---|---|")
    for name, seen in sorted(outcomes.items(), key=lambda kv: (docs[kv[0]], kv[0])):
        counts = {k: seen.count(k) for k in ("passed", "failed", "skipped")}
        row = [f"`{name}`", docs[name], str(len(seen)), *(str(counts[k]) for k in ("passed", "failed", "skipped"))]
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
