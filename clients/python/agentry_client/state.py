"""The last conversation of each gateway URL and user, for `agentry chat --continue`.

A small JSON file under `$XDG_STATE_HOME/agentry/` (`~/.local/state/agentry/` by default).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import os
from pathlib import Path
from typing import Any


def state_file() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "agentry" / "state.json"


def identity(user: str | None, token: str | None) -> str:
    """Who the client speaks as: the dev user, else the token's `sub` (read, not verified:
    it only names the entry; the gateway checks the token)."""
    if user:
        return user
    if token:
        with contextlib.suppress(ValueError, IndexError, binascii.Error):
            payload = token.split(".")[1]
            claims: Any = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
            if isinstance(claims, dict) and isinstance(claims.get("sub"), str):
                return str(claims["sub"])
        return "token"
    return "dev"


class State:
    def __init__(self, path: Path | None = None) -> None:
        self.path = path or state_file()

    def _read(self) -> dict[str, Any]:
        try:
            data: Any = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def last_conversation(self, url: str, who: str) -> str | None:
        value = self._read().get("last_conversation", {}).get(f"{url} {who}")
        return value if isinstance(value, str) else None

    def remember(self, url: str, who: str, conversation_id: str) -> None:
        data = self._read()
        last = data.setdefault("last_conversation", {})
        if last.get(f"{url} {who}") == conversation_id:
            return
        last[f"{url} {who}"] = conversation_id
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=1))
        tmp.replace(self.path)
