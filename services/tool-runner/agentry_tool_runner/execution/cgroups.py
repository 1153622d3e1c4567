"""A control group per tool call: memory and processes capped for the call as a whole.

Found once at start-up, where the host lets the worker write them:
  - cgroup v2: the worker's own cgroup must offer the `memory` and `pids` controllers and
    be writable (root in a VM, a systemd unit with `Delegate=yes`). Controllers can only
    be handed to children of a cgroup without processes, so when they are not enabled
    yet the worker first moves itself into a leaf `agentry-worker` beside the calls'.
  - cgroup v1 (hybrid hosts): the `memory` and `pids` hierarchies, writable.
Ordinary pods have neither (read-only /sys/fs/cgroup): `detect` says why, and the caller
falls back to rlimits (memory_cap.py).

Per call: `agentry-call-<worker pid>-<hex>` with memory.max (no swap) and pids.max; the child writes
its own pid into it between fork and exec (process.py), so bwrap and everything it starts
are inside before any of them runs; after the call whatever is left is killed and the
folder removed.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

Version = Literal["cgroup2", "cgroup1"]
_REMOVE_SECONDS = 2.0  # killed processes leave their cgroup asynchronously


@dataclass(frozen=True)
class CallCgroup:
    """One call's folder(s); the child writes its pid into each of `procs`."""

    folders: tuple[Path, ...]
    procs: tuple[str, ...]

    def remove(self) -> bool:
        """Kills what is left inside, removes the folders; False if one would not go."""
        for folder in self.folders:
            kill = folder / "cgroup.kill"  # v2, Linux 5.14+
            if kill.exists():
                with contextlib.suppress(OSError):
                    kill.write_text("1")
            else:
                for pid in _pids(folder):
                    with contextlib.suppress(OSError):
                        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + _REMOVE_SECONDS
        pending = list(self.folders)
        while pending:
            folder = pending[0]
            try:
                folder.rmdir()
            except FileNotFoundError:
                pass
            except OSError as exc:
                if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                    return False
                time.sleep(0.02)
                continue
            pending.pop(0)
        return True


class Cgroups(Protocol):
    @property
    def version(self) -> Version: ...

    def folders(self) -> tuple[Path, ...]:
        """Where the call cgroups are created."""
        ...

    def create(self, memory_bytes: int, pids: int) -> CallCgroup:
        """A new call cgroup with these limits; raises OSError."""
        ...


def _pids(folder: Path) -> list[int]:
    try:
        return [int(line) for line in (folder / "cgroup.procs").read_text().split()]
    except (OSError, ValueError):
        return []


_PREFIX = "agentry-call-"


def _call_name() -> str:
    return f"{_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:12]}"


def _sweep(folder: Path) -> None:
    """Removes the call cgroups of workers that died without cleaning up (kill -9)."""
    with contextlib.suppress(OSError):
        for child in folder.iterdir():
            pid = child.name.removeprefix(_PREFIX).partition("-")[0]
            if child.name.startswith(_PREFIX) and pid.isdigit() and not Path(f"/proc/{pid}").exists():
                CallCgroup((child,), ()).remove()


@dataclass(frozen=True)
class CgroupV2:
    base: Path  # its cgroup.subtree_control holds memory and pids
    version: Version = "cgroup2"

    def folders(self) -> tuple[Path, ...]:
        return (self.base,)

    def create(self, memory_bytes: int, pids: int) -> CallCgroup:
        folder = self.base / _call_name()
        folder.mkdir()
        try:
            (folder / "memory.max").write_text(str(memory_bytes))
            if (folder / "memory.swap.max").exists():
                (folder / "memory.swap.max").write_text("0")
            (folder / "pids.max").write_text(str(pids))
        except OSError:
            folder.rmdir()
            raise
        return CallCgroup((folder,), (str(folder / "cgroup.procs"),))


@dataclass(frozen=True)
class CgroupV1:
    memory: Path
    pids: Path
    version: Version = "cgroup1"

    def folders(self) -> tuple[Path, ...]:
        return (self.memory, self.pids)

    def create(self, memory_bytes: int, pids: int) -> CallCgroup:
        name = _call_name()
        memory, tasks = self.memory / name, self.pids / name
        memory.mkdir()
        try:
            tasks.mkdir()
            (memory / "memory.limit_in_bytes").write_text(str(memory_bytes))
            if (memory / "memory.memsw.limit_in_bytes").exists():  # swap accounting is on
                (memory / "memory.memsw.limit_in_bytes").write_text(str(memory_bytes))
            (tasks / "pids.max").write_text(str(pids))
        except OSError:
            CallCgroup((memory, tasks), ()).remove()
            raise
        return CallCgroup((memory, tasks), (str(memory / "cgroup.procs"), str(tasks / "cgroup.procs")))


def cgroup_mounts() -> list[tuple[str, str, set[str]]]:
    """(mount point, filesystem type, options) of each cgroup mount."""
    found = []
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            before, _, after = line.partition(" - ")
            fields, tail = before.split(), after.split()
            if len(fields) > 4 and len(tail) > 2 and tail[0] in ("cgroup", "cgroup2"):
                found.append((fields[4], tail[0], set(tail[2].split(","))))
    return found


def _own_paths() -> dict[str, str]:
    """Controller ("" for v2) -> this process's cgroup path."""
    paths: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            for controller in controllers.split(",") if controllers else [""]:
                paths[controller] = path
    return paths


def _writable(folder: Path) -> bool:
    return os.access(folder, os.W_OK | os.X_OK)


def _v2() -> CgroupV2 | str:
    mount = next((point for point, kind, _ in cgroup_mounts() if kind == "cgroup2"), None)
    own = _own_paths().get("")
    if mount is None or own is None:
        return "no cgroup2 filesystem"
    base = Path(mount) / own.lstrip("/")
    try:
        offered = set((base / "cgroup.controllers").read_text().split())
        enabled = set((base / "cgroup.subtree_control").read_text().split())
    except OSError as exc:
        return f"cgroup2 at {base} cannot be read: {exc.strerror}"
    if not {"memory", "pids"} <= offered:
        return f"cgroup2 at {base} does not offer the memory and pids controllers (offered: {sorted(offered)})"
    if not _writable(base):
        return f"cgroup2 at {base} is not writable"
    if not {"memory", "pids"} <= enabled:
        why = _enable_controllers(base)
        if why:
            return why
    return CgroupV2(base)


def _enable_controllers(base: Path) -> str | None:
    """Moves this process into a leaf, then enables memory and pids for its siblings."""
    leaf = base / "agentry-worker"
    try:
        leaf.mkdir(exist_ok=True)
        (leaf / "cgroup.procs").write_text(str(os.getpid()))
        (base / "cgroup.subtree_control").write_text("+memory +pids")
    except OSError as exc:  # EBUSY: other processes live in the same cgroup
        with contextlib.suppress(OSError):
            (base / "cgroup.procs").write_text(str(os.getpid()))
            leaf.rmdir()
        return f"cgroup2 at {base}: the memory and pids controllers cannot be enabled ({exc.strerror})"
    return None


def _v1() -> CgroupV1 | str:
    mounts = {kind: point for point, fs, options in cgroup_mounts() if fs == "cgroup" for kind in options}
    own = _own_paths()
    folders = {}
    for controller in ("memory", "pids"):
        if controller not in mounts or controller not in own:
            return f"no cgroup v1 {controller} hierarchy"
        folder = Path(mounts[controller]) / own[controller].lstrip("/")
        if not _writable(folder):
            return f"cgroup v1 {controller} at {folder} is not writable"
        folders[controller] = folder
    return CgroupV1(folders["memory"], folders["pids"])


def detect() -> Cgroups | str:
    """The cgroups this worker can create per call, tried once; else why not."""
    reasons = []
    for find in (_v2, _v1):
        found = find()
        if isinstance(found, str):
            reasons.append(found)
            continue
        for folder in found.folders():
            _sweep(folder)
        try:  # creating, limiting and removing one is the proof
            if not found.create(64 * 1024 * 1024, 8).remove():
                raise OSError(errno.EBUSY, "a probe cgroup could not be removed")
        except OSError as exc:
            reasons.append(f"{found.version}: a call cgroup cannot be created ({exc})")
            continue
        return found
    return "; ".join(reasons)
