"""Virtual files the shim reads and writes for programs (``/proc/net/if_inet6``,
``/sys/class/net/…``, netdevsim's ``/sys/bus/netdevsim/…`` and its debugfs ``ipsec`` file).

Subsystems register a path pattern with a reader (and a writer where the kernel file is
writable), and directories with a lister, so that ``stat``, ``access`` and ``opendir`` see
the same tree a program would find on Linux (``[ -w /sys/bus/netdevsim/new_device ]``,
``ls /sys/bus/netdevsim/devices/netdevsim0/net/``). Patterns are :mod:`fnmatch`-style
globs (``*`` does not stop at ``/``: listers check their own depth); the first registered
match wins, so register specific paths before wide ones. Service ops ``read_file`` /
``write_file`` / ``stat_file`` / ``list_dir`` (docs/protocol.md) come here.

Symbolic links (``register_link``: ``/sys/class/net/DEV`` → ``../../devices/virtual/net/DEV``,
device_add_class_symlinks) are answered as such by ``stat(..., follow=False)`` and
``readlink``; a path through one reaches the files of its target. Where the files of a
directory are registered under another name than the directory's real path (a device's
attributes under ``/sys/class/net/DEV``), an alias (``register_alias``: real path → the
registered one, or None) lets the real path reach them."""
from __future__ import annotations

import errno as E
import fnmatch
from typing import Callable

Reader = Callable[..., str]
Writer = Callable[..., "int | None"]
Lister = Callable[..., list]
Target = Callable[..., str]
Alias = Callable[..., "str | None"]

def _norm(path: str) -> str:
    parts = [p for p in path.split("/") if p and p != "."]
    return "/" + "/".join(parts)


class Vfs:
    """One kernel's virtual files: ``register(pattern, read, write)`` and
    ``register_dir(pattern, lister)`` in each subsystem's init call; the first registered
    match wins. ``read(kernel, ns, path) -> str``, ``write(kernel, ns, path, data) -> errno
    or None``, ``lister(kernel, ns, path) -> [(name, "dir" | "file"), …]`` (FileNotFoundError
    if absent)."""

    def __init__(self) -> None:
        self.files: list[tuple[str, Reader | None, Writer | None]] = []
        self.dirs: list[tuple[str, Lister]] = []
        self.modes: dict[str, int] = {}
        self.links: list[tuple[str, Target]] = []
        self.aliases: list[Alias] = []

    def register(self, pattern: str, read: Reader | None = None,
                 write: Writer | None = None, mode: int | None = None) -> None:
        """``mode``: the permission bits the file was created with where they are not the
        usual ones (``debugfs_create_file(name, 0400, …)``)."""
        self.files.append((pattern, read, write))
        if mode is not None:
            self.modes[pattern] = mode

    def register_dir(self, pattern: str, lister: Lister) -> None:
        self.dirs.append((pattern, lister))

    def register_link(self, pattern: str, target: Target) -> None:
        """``target(kernel, ns, path) -> str``: the link's text, relative to its directory as
        sysfs writes them (sysfs_create_link); FileNotFoundError where there is none."""
        self.links.append((pattern, target))

    def register_alias(self, alias: Alias) -> None:
        """``alias(kernel, ns, path) -> str | None``: the registered path that serves real
        path ``path`` (its attributes), or None when ``path`` is not one it knows."""
        self.aliases.append(alias)

    def _dirs(self):
        return self.dirs

    def _link(self, kernel, ns, path: str) -> str | None:
        for pattern, target in self.links:
            if fnmatch.fnmatchcase(path, pattern):
                try:
                    return target(kernel, ns, path)
                except FileNotFoundError:
                    continue
        return None

    def realpath(self, kernel, ns, path: str) -> str:
        """``path`` with every link in it replaced by its target (``..`` taken lexically, as
        sysfs links never point through another link)."""
        done: list[str] = []
        for part in _norm(path).split("/")[1:]:
            if part == "..":
                done = done[:-1]
                continue
            done.append(part)
            target = self._link(kernel, ns, "/" + "/".join(done))
            if target is not None:
                done = done[:-1]
                for t in target.split("/"):
                    if t == "..":
                        done = done[:-1]
                    elif t and t != ".":
                        done.append(t)
        return "/" + "/".join(done)

    def _serve(self, kernel, ns, path: str) -> str:
        """The registered path that serves ``path``: its links resolved, then an alias."""
        path = self.realpath(kernel, ns, path)
        for alias in self.aliases:
            served = alias(kernel, ns, path)
            if served is not None:
                return served
        return path

    def readlink(self, kernel, ns, path: str) -> tuple[int, str]:
        """(errno, text) of link ``path`` (its last component not followed): EINVAL for a
        file or directory that is no link, ENOENT for nothing."""
        path = _norm(path)
        parent, _, name = path.rpartition("/")
        path = self.realpath(kernel, ns, parent or "/").rstrip("/") + "/" + name
        target = self._link(kernel, ns, path)
        if target is not None:
            return 0, target
        err = self.stat(kernel, ns, path)[0]
        return (err or E.EINVAL), ""

    def lookup(self, path: str):
        for pattern, read, write in self.files:
            if fnmatch.fnmatchcase(path, pattern):
                return read, write
        return None

    def list_dir(self, kernel, ns, path: str) -> tuple[int, list]:
        """(errno, [(name, kind), …]) of a virtual directory (kind "dir", "file" or "link");
        ENOTDIR for a file, ENOENT else."""
        path = self._serve(kernel, ns, path)
        for pattern, lister in self._dirs():
            if fnmatch.fnmatchcase(path, pattern):
                try:
                    return 0, sorted(lister(kernel, ns, path))
                except FileNotFoundError:
                    continue
        return (E.ENOTDIR if self.stat(kernel, ns, path)[0] == 0 else E.ENOENT), []

    def stat(self, kernel, ns, path: str) -> tuple[int, str, int]:
        """(errno, "dir" | "file", permission bits) as sysfs/procfs/debugfs show them: files
        that can be read 0444 (0644 if also written), write-only ones 0200, directories 0755;
        links followed."""
        path = self._serve(kernel, ns, path)
        for pattern, lister in self._dirs():
            if fnmatch.fnmatchcase(path, pattern):
                try:
                    lister(kernel, ns, path)
                    return 0, "dir", 0o755
                except FileNotFoundError:
                    continue
        found = self.lookup(path)
        if found is None:
            return E.ENOENT, "", 0
        read, write = found
        mode = next((m for p, m in self.modes.items() if fnmatch.fnmatchcase(path, p)), None)
        if read is None:
            return 0, "file", 0o200 if mode is None else mode
        try:
            read(kernel, ns, path)
        except FileNotFoundError:
            return E.ENOENT, "", 0
        except OSError:
            pass                            # there, but reading it fails (stable_secret)
        if mode is not None:
            return 0, "file", mode
        return 0, "file", 0o644 if write is not None else 0o444

    def read_file(self, kernel, ns, path: str) -> tuple[int, str]:
        """(errno, text): ENOENT for unknown paths, EACCES-like EINVAL for write-only files."""
        path = self._serve(kernel, ns, path)
        if self.stat(kernel, ns, path)[1] == "dir":
            return E.EISDIR, ""                 # generic_read_dir
        found = self.lookup(path)
        if found is None:
            return E.ENOENT, ""
        read, _ = found
        if read is None:
            return E.EINVAL, ""
        try:
            return 0, read(kernel, ns, path)
        except FileNotFoundError:
            return E.ENOENT, ""
        except OSError as e:                # a file whose read fails (stable_secret unset: EIO)
            return e.errno or E.EIO, ""

    def write_file(self, kernel, ns, path: str, data: str) -> int:
        path = self._serve(kernel, ns, path)
        found = self.lookup(path)
        if found is None:
            return E.ENOENT
        _, write = found
        if write is None:
            return E.EACCES
        try:
            return write(kernel, ns, path, data) or 0
        except FileNotFoundError:
            return E.ENOENT


def list_dir(kernel, ns, path: str) -> tuple[int, list]:
    return kernel.vfs.list_dir(kernel, ns, path)


def stat(kernel, ns, path: str) -> tuple[int, str, int]:
    return kernel.vfs.stat(kernel, ns, path)


def read_file(kernel, ns, path: str) -> tuple[int, str]:
    return kernel.vfs.read_file(kernel, ns, path)


def write_file(kernel, ns, path: str, data: str) -> int:
    return kernel.vfs.write_file(kernel, ns, path, data)


def readlink(kernel, ns, path: str) -> tuple[int, str]:
    return kernel.vfs.readlink(kernel, ns, path)


def realpath(kernel, ns, path: str) -> str:
    return kernel.vfs.realpath(kernel, ns, path)
