"""Userlands: cached Debian root filesystems with newer tools than the host has.

The host (Debian 12) has ``ip`` 6.1, charon 5.9.8 and pluto 4.10, none of which can ask for
packet offload. A *userland* is a root filesystem of a newer suite, built once with
mmdebstrap and kept in the user's cache dir; ``xfrmd run --userland NAME`` runs a command
inside it with the host-built shim preloaded (:mod:`xfrmd.userland.enter`), and the IKE
helpers start daemons from it. See docs/userland.md.

    ~/.cache/xfrmd/userlands/trixie-strongswan/          the root filesystem
    ~/.cache/xfrmd/userlands/trixie-strongswan/.xfrmd-userland.json   what was built, and from what
"""
from __future__ import annotations

import collections
import json
import os
import sys

STAMP = ".xfrmd-userland.json"
# Bumped when the way a userland is made changes (variant, dpkg filters), so old ones rebuild.
RECIPE = 1


class UserlandError(RuntimeError):
    """A one-line message for the user (no traceback)."""


class Userland(collections.namedtuple("Userland", "name suite packages")):
    """``name``, ``suite`` (str) and ``packages`` (a tuple of str). A named tuple, not a
    dataclass — start-up time: dataclasses loads inspect and ast, ≈ 10 ms of
    `xfrmd run --userland`, which reads KNOWN."""
    __slots__ = ()

    @property
    def key(self) -> str:
        """What the cache is keyed by: the suite, the package list and the recipe."""
        import hashlib      # start-up time: OpenSSL, for the commands that check a userland
        blob = json.dumps([RECIPE, self.suite, sorted(self.packages)]).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    @property
    def path(self) -> str:
        return os.path.join(cache_dir(), self.name)


# strongSwan and libreswan conflict (both ship the `ipsec` command), hence two.
KNOWN = {u.name: u for u in (
    Userland("trixie-strongswan", "trixie",
             ("strongswan-charon", "strongswan-swanctl", "iproute2", "ethtool", "tshark")),
    Userland("trixie-libreswan", "trixie", ("libreswan", "iproute2", "ethtool")),
)}


def cache_dir() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return os.path.join(base, "xfrmd", "userlands")


def known(name: str) -> Userland:
    try:
        return KNOWN[name]
    except KeyError:
        raise UserlandError(f"xfrmd userland: unknown userland {name!r}; known: "
                            + ", ".join(KNOWN)) from None


def stamp(root: str) -> dict | None:
    try:
        with open(os.path.join(root, STAMP)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def is_current(ul: Userland) -> bool:
    """Built, and from the package list it has now."""
    s = stamp(ul.path)
    return bool(s) and s.get("key") == ul.key


def looks_like_root(path: str) -> bool:
    return os.path.isdir(path) and any(
        os.path.exists(os.path.join(path, p)) for p in ("bin/sh", "usr/bin/sh"))


def resolve(name_or_dir: str) -> str:
    """The root directory for ``--userland``: a known name (built and current) or any
    directory that holds a root filesystem."""
    if name_or_dir in KNOWN:
        ul = KNOWN[name_or_dir]
        s = stamp(ul.path)
        if s is None:
            raise UserlandError(f"xfrmd: userland {ul.name} is not built: run "
                                f"`xfrmd userland build {ul.name}`")
        if s.get("key") != ul.key:
            raise UserlandError(f"xfrmd: userland {ul.name} was built from another package "
                                f"list: run `xfrmd userland build {ul.name}`")
        return ul.path
    if os.sep in name_or_dir or os.path.isdir(name_or_dir):
        root = os.path.abspath(name_or_dir)
        if not looks_like_root(root):
            raise UserlandError(f"xfrmd: {name_or_dir} is not a root filesystem (no /bin/sh "
                                "in it)")
        return root
    known(name_or_dir)          # raises with the list of known names
    raise AssertionError


def dpkg_versions(root: str, packages) -> dict[str, str]:
    """Installed versions from the root's dpkg status file (no need to run anything in it)."""
    want, out, pkg, version, ok = set(packages), {}, None, None, False
    try:
        f = open(os.path.join(root, "var/lib/dpkg/status"), errors="replace")
    except OSError:
        return out
    with f:
        for line in list(f) + ["\n"]:
            if line.startswith("Package: "):
                pkg = line[9:].strip()
            elif line.startswith("Version: "):
                version = line[9:].strip()
            elif line.startswith("Status: "):
                ok = line.split()[-1] == "installed"
            elif not line.strip():
                if pkg in want and ok and version:
                    out[pkg] = version
                pkg, version, ok = None, None, False
    return out


def upstream(version: str) -> str:
    """``1:6.14.2-1`` → ``6.14.2`` (epoch and Debian revision dropped)."""
    v = version.split(":", 1)[-1]
    return v.rsplit("-", 1)[0] if "-" in v else v


TOOLS = (("ip", "iproute2"), ("charon", "strongswan-charon"), ("pluto", "libreswan"),
         ("ethtool", "ethtool"))


def tool_versions(root: str) -> dict[str, str]:
    """{"ip": "6.15.0", "charon": "6.0.1", …} for the tools a userland has."""
    v = dpkg_versions(root, [p for _, p in TOOLS])
    return {tool: upstream(v[p]) for tool, p in TOOLS if p in v}


def built() -> list[tuple[str, str, dict | None]]:
    """(name, root, stamp) of every userland in the cache, known ones first in their order."""
    d = cache_dir()
    try:
        names = sorted(n for n in os.listdir(d) if not n.startswith("."))
    except OSError:
        return []
    order = list(KNOWN)
    names.sort(key=lambda n: (order.index(n) if n in KNOWN else len(order), n))
    return [(n, os.path.join(d, n), stamp(os.path.join(d, n))) for n in names
            if os.path.isdir(os.path.join(d, n))]


ENTER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "enter.py")


def entry_argv(root: str, stage: str, cmd: list[str], *, shim: str | None = None,
               binds: tuple[str, ...] = ()) -> list[str]:
    """``cmd`` run inside ``root`` (see :mod:`xfrmd.userland.enter`); ``stage`` is an empty
    directory of the caller's (``xfrmd run`` makes one per entry), ``binds`` paths to show
    in there."""
    argv = [sys.executable, "-I", "-S", ENTER, "--root", root, "--stage", stage]
    if shim:
        argv += ["--shim", shim]
    for b in binds:
        argv += ["--bind", b]
    return argv + ["--", *cmd]

