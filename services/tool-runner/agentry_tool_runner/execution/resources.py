"""What the worker grants a call beyond its arguments: the user's folder, the docs, the hosts.

A tool declares what it needs (`Tool.workspace`, `Tool.docs`, `Tool.network`); the
executor looks it up here and hands it over, as a bind mount in the sandbox and as a
keyword argument (`workspace`, `docs`, `allowed_hosts`) to the implementation.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from agentry_shared.contracts.errors import ToolErrorCode
from agentry_shared.contracts.scope import Scope
from agentry_shared.settings import ToolRunnerSettings

# The corpus search_docs searches when TOOL_RUNNER_DOCS_DIR is not set.
SAMPLE_DOCS = Path(__file__).resolve().parent.parent / "sample_docs"  # package data: ships with the wheel
# A scope id used as-is as a folder name: no "/", no leading dot (so never "." or "..").
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_@:-][A-Za-z0-9_.@:-]{0,127}$")


class Refused(Exception):
    """The call cannot be granted what its tool needs; answered without starting a process."""

    def __init__(self, code: ToolErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def folder_name(identifier: str) -> str:
    """A scope id as one path component; anything unusual becomes a hash of it."""
    if _SAFE_NAME.match(identifier):
        return identifier
    return "~" + hashlib.sha256(identifier.encode()).hexdigest()[:32]


def allowlist(setting: str) -> tuple[str, ...]:
    """Host names from the comma-separated setting, lower-cased; exact names, any port."""
    return tuple(sorted({host.strip().lower().rstrip(".") for host in setting.split(",") if host.strip()}))


def reachable(path: Path, uid: int, gid: int) -> bool:
    """Whether uid/gid may walk down to `path` (search permission on every folder above it,
    by mode bits, no ACLs): the sandbox's bwrap, or the weak backend's child, runs as them."""
    for folder in path.parents:
        try:
            info = folder.stat()
        except OSError:
            return False
        if info.st_uid == uid:
            bit = stat.S_IXUSR
        elif info.st_gid == gid:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if not info.st_mode & bit:
            return False
    return True


@dataclass(frozen=True)
class Resources:
    workspace_root: Path
    docs_dir: Path
    allowed_hosts: tuple[str, ...] = ()

    @classmethod
    def from_settings(cls, settings: ToolRunnerSettings) -> Resources:
        return cls(
            workspace_root=settings.tool_runner_workspace_dir.resolve(),
            docs_dir=(settings.tool_runner_docs_dir or SAMPLE_DOCS).resolve(),
            allowed_hosts=allowlist(settings.tool_runner_http_allowlist),
        )

    def user_folder(self, scope: Scope | None, owner: int | None) -> Path:
        """`<root>/<tenant>/<user>/`, created on first use and owned by `owner` (the sandbox's
        uid), so that a sandboxed child can write in it; the levels above it are the
        worker's and can be crossed but not listed."""
        if scope is None:
            raise Refused("failed", "this tool works on the calling user's files, and the call names no user")
        tenant = self.workspace_root / folder_name(scope.tenant_id)
        folder = tenant / folder_name(scope.user_id)
        for level in (self.workspace_root, tenant):
            level.mkdir(mode=0o711, parents=True, exist_ok=True)
        folder.mkdir(mode=0o700, exist_ok=True)
        if owner is not None and folder.stat().st_uid != owner:
            os.chown(folder, owner, owner)
        return folder

    def hosts(self) -> list[str]:
        if not self.allowed_hosts:
            raise Refused("denied", "no host may be fetched: TOOL_RUNNER_HTTP_ALLOWLIST is empty on this worker")
        return list(self.allowed_hosts)
