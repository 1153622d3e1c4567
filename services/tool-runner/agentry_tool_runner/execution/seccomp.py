"""The sandbox's seccomp filter: system calls a tool never needs, answered EPERM.

Built once at start-up with libseccomp (through `pyseccomp`, ctypes over the system's
libseccomp2) for the running kernel's architecture, exported as BPF, and handed to
bubblewrap (`--seccomp FD`) for every call. A deny list over an allowing default, like
the calls Docker's default profile refuses to a container without extra capabilities,
plus io_uring (a large kernel surface that also bypasses per-syscall filtering). Denied
calls fail with EPERM instead of killing the process, so a tool sees a clean error.

Other architectures' calls (a 32-bit `int 0x80` on x86_64) hit libseccomp's bad-arch
action, which kills the process: the filter is only written for the native one.

Why not a precompiled BPF: it would be one blob per architecture, built and checked in
by hand; libseccomp2 is part of every Debian base image (bubblewrap depends on it), and
a missing one is reported at start-up like a missing bubblewrap.
"""

from __future__ import annotations

import errno
import os
import tempfile

DENIED = (
    # keys of the kernel keyring (not namespaced)
    "add_key", "keyctl", "request_key",
    # tracing and reading other processes' memory
    "ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "pidfd_getfd",
    # namespaces, mounts, the root
    "unshare", "setns", "mount", "umount", "umount2", "pivot_root", "mount_setattr",
    "fsopen", "fsconfig", "fsmount", "fspick", "move_mount", "open_tree",
    # kernel modules and kexec
    "init_module", "finit_module", "delete_module", "create_module", "query_module",
    "get_kernel_syms", "kexec_load", "kexec_file_load",
    # kernel programs, profiling, page-fault handling
    "bpf", "perf_event_open", "userfaultfd", "lookup_dcookie",
    # file handles that bypass path permissions
    "open_by_handle_at", "name_to_handle_at",
    # the machine: accounting, swap, reboot, clocks, quotas, sysctl, syslog, I/O ports
    "acct", "swapon", "swapoff", "reboot", "settimeofday", "stime", "clock_settime",
    "clock_adjtime", "adjtimex", "quotactl", "quotactl_fd", "_sysctl", "sysfs", "syslog",
    "ustat", "uselib", "nfsservctl", "vhangup", "iopl", "ioperm", "vm86", "vm86old",
    # NUMA placement (needs CAP_SYS_NICE in Docker)
    "mbind", "set_mempolicy", "get_mempolicy", "move_pages", "migrate_pages",
    # io_uring
    "io_uring_setup", "io_uring_enter", "io_uring_register",
    # fanotify watches the whole filesystem
    "fanotify_init",
)  # fmt: skip
# personality(0) (plain Linux) passes; any other persona (no ASLR, READ_IMPLIES_EXEC,
# 32-bit layouts), and the query 0xffffffff too, are refused (one condition per rule).
_PERSONALITY_ALLOWED = 0


class SeccompUnavailable(Exception):
    """libseccomp cannot be loaded or refused the filter; the message says which."""


def build_filter() -> bytes:
    """The BPF program for `bwrap --seccomp`; raises SeccompUnavailable."""
    try:
        import pyseccomp
    except (ImportError, OSError) as exc:  # the module, or the system's libseccomp.so.2
        raise SeccompUnavailable(f"libseccomp cannot be loaded ({exc}): apt-get install libseccomp2") from exc
    try:
        denied = pyseccomp.ERRNO(errno.EPERM)
        program = pyseccomp.SyscallFilter(pyseccomp.ALLOW)
        for name in DENIED:  # names the architecture lacks (vm86 on x86_64) are skipped
            program.add_rule(denied, name)
        program.add_rule(denied, "personality", pyseccomp.Arg(0, pyseccomp.NE, _PERSONALITY_ALLOWED))
        with tempfile.TemporaryFile() as out:
            program.export_bpf(out)
            out.seek(0)
            return out.read()
    except (OSError, RuntimeError, ValueError) as exc:
        raise SeccompUnavailable(f"libseccomp refused the filter: {exc}") from exc


def filter_pipe(bpf: bytes) -> int:
    """The read end of a pipe holding the program, for `bwrap --seccomp FD`."""
    read_end, write_end = os.pipe()
    try:
        os.write(write_end, bpf)  # a few hundred bytes: fits the pipe's buffer
    finally:
        os.close(write_end)
    return read_end
