"""Every setting of every service is documented: its environment variable appears in the
README or in a document the README links to (a service's README, a page of docs/)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from agentry_shared import settings
from pydantic_settings import BaseSettings

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"


def _linked_docs() -> str:
    readme = README.read_text()
    texts = [readme]
    for target in re.findall(r"\]\(([^)#\s]+\.md)(?:#[^)]*)?\)", readme):
        path = (ROOT / target).resolve()
        if path.is_file():
            texts.append(path.read_text())
    return "\n".join(texts)


def _setting_names() -> list[str]:
    classes = [c for c in vars(settings).values() if isinstance(c, type) and issubclass(c, BaseSettings)]
    return sorted({name.upper() for c in classes if c is not BaseSettings for name in c.model_fields})


DOCS = _linked_docs()


@pytest.mark.parametrize("name", _setting_names())
def test_each_setting_is_in_the_readme_or_a_linked_doc(name: str) -> None:
    assert re.search(rf"\b{name}\b", DOCS), f"{name} is documented in neither README.md nor a doc it links to"
