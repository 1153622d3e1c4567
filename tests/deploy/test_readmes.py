"""Each service README's module table names every module of its package (issue #8: a
newcomer reads the tree from the README)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.packages import PACKAGES

ROOT = Path(__file__).resolve().parents[2]


def modules(service: str) -> list[str]:
    package = ROOT / "services" / service / PACKAGES[service]
    return sorted(str(p.relative_to(package)) for p in package.rglob("*.py"))


@pytest.mark.parametrize("service", list(PACKAGES))
def test_the_readme_names_every_module(service: str) -> None:
    readme = (ROOT / "services" / service / "README.md").read_text()
    missing = [m for m in modules(service) if f"`{m}`" not in readme]
    assert not missing, f"services/{service}/README.md does not name: {missing}"
