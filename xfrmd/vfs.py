"""Virtual files the shim reads and writes for programs (``/proc/net/if_inet6``,
``/sys/class/net/…``, netdevsim's ``/sys/bus/netdevsim/…`` and its debugfs ``ipsec`` file).

Subsystems register a path pattern with a reader (and a writer where the kernel file is
writable). Patterns are :mod:`fnmatch`-style globs; the first registered match wins, so
register specific paths before wide ones. Service ops ``read_file`` / ``write_file``
(docs/protocol.md) come here."""
from __future__ import annotations

import errno as E
import fnmatch
from typing import Callable

# pattern → (read(kernel, ns, path) -> str, write(kernel, ns, path, data) -> int errno or None)
FILES: list[tuple[str, Callable | None, Callable | None]] = []


def register(pattern: str, read: Callable | None = None, write: Callable | None = None) -> None:
    FILES.append((pattern, read, write))


def lookup(path: str):
    for pattern, read, write in FILES:
        if fnmatch.fnmatchcase(path, pattern):
            return read, write
    return None


def read_file(kernel, ns, path: str) -> tuple[int, str]:
    """(errno, text): ENOENT for unknown paths, EACCES-like EINVAL for write-only files."""
    found = lookup(path)
    if found is None:
        return E.ENOENT, ""
    read, _ = found
    if read is None:
        return E.EINVAL, ""
    try:
        return 0, read(kernel, ns, path)
    except FileNotFoundError:
        return E.ENOENT, ""


def write_file(kernel, ns, path: str, data: str) -> int:
    found = lookup(path)
    if found is None:
        return E.ENOENT
    _, write = found
    if write is None:
        return E.EACCES
    try:
        return write(kernel, ns, path, data) or 0
    except FileNotFoundError:
        return E.ENOENT
