"""Where a daemon comes from: the host's packages, a userland, or the user's own build.

A strongSwan or libreswan developer tests *their* build, so the daemon wrappers take

* ``userland="trixie-strongswan"`` (or any root filesystem directory): the daemon and its
  tools run inside it (:mod:`xfrmd.userland`), with the shim and the pair's sockets;
* ``charon=PATH`` / ``pluto=PATH``: the daemon binary itself, an install prefix (``make
  install DESTDIR=… prefix=…``) or a build tree, its tools found beside it;
* neither: the host's Debian packages (charon 5.9.8, pluto 4.10 extracted by test-all.sh).

Everything is checked when the wrapper is made, before any namespace or server exists, and a
bad path is one clear :class:`DaemonError`."""
from __future__ import annotations

import dataclasses
import os
import re
import subprocess

from ..userland import UserlandError, entry_argv, resolve, tool_versions

# the host's daemons: Debian's strongswan-charon, and libreswan's .deb as tools/test-all.sh
# extracts it
CHARON = "/usr/lib/ipsec/charon"


def libreswan_dir() -> str:
    return os.environ.get("XFRMD_LIBRESWAN_DIR") or os.path.expanduser(
        "~/.cache/xfrmd/libreswan")


def libreswan_libexec() -> str:
    """Where the extracted libreswan keeps pluto, whack and addconn."""
    return os.path.join(libreswan_dir(), "usr", "libexec", "ipsec")


class DaemonError(ValueError):
    pass


@dataclasses.dataclass
class Install:
    """``paths`` maps a program name (charon, swanctl, pluto, whack, addconn, certutil) to
    its path — inside ``root`` when there is one."""
    what: str                      # "charon" or "pluto", for messages
    paths: dict
    root: str | None = None        # a userland's root filesystem
    version: str = ""
    origin: str = "host"

    @property
    def major(self) -> int | None:
        """The daemon's major version, when known (the host's packages: None)."""
        m = re.search(r"(\d+)\.\d+", self.version)
        return int(m.group(1)) if m else None

    def argv(self, exec_argv, side: str, argv: list[str], *, stage: str,
             env: dict, binds: tuple[str, ...] = ()) -> list[str]:
        """``argv`` run on ``side`` (``exec_argv``: the pair's way into a real netns), in
        the userland when there is one."""
        if self.root is None:
            return exec_argv(side, argv)
        shim = env.get("LD_PRELOAD") or None
        sock = env.get("XFRMD_SOCKET")
        extra = tuple(binds) + ((os.path.dirname(sock),) if sock else ())
        return exec_argv(side, entry_argv(self.root, stage, argv, shim=shim, binds=extra))


def _executable(path: str) -> bool:
    return os.path.isfile(path) and os.access(path, os.X_OK)


def _first(base: str, candidates) -> str | None:
    for c in candidates:
        p = os.path.normpath(os.path.join(base, c))
        if _executable(p):
            return p
    return None


def _version(argv: list[str], marker: str, what: str, path: str) -> str:
    """The daemon's own answer to --version: proof that PATH is that daemon."""
    try:
        p = subprocess.run(argv + ["--version"], capture_output=True, text=True, timeout=10)
    except OSError as e:
        raise DaemonError(f"xfrmd.ike: {what}={path}: cannot run it: {e.strerror}") from None
    except subprocess.TimeoutExpired:
        raise DaemonError(f"xfrmd.ike: {what}={path}: `--version` did not answer in 10 s "
                          f"— is it {what}?") from None
    text = (p.stdout + p.stderr).strip()
    if marker not in text:
        first = text.splitlines()[0] if text else f"exit status {p.returncode}, no output"
        raise DaemonError(f"xfrmd.ike: {what}={path} is not {marker}'s {what} "
                          f"(`--version` said: {first[:120]})")
    return text.splitlines()[0]


# ---- strongSwan ----

_CHARON_IN = ("charon", "libexec/ipsec/charon", "lib/ipsec/charon", "libexec/strongswan/charon",
              "lib/strongswan/charon", "src/charon/charon", "usr/lib/ipsec/charon")
_SWANCTL_IN = ("swanctl", "sbin/swanctl", "bin/swanctl", "src/swanctl/swanctl",
               "usr/sbin/swanctl")
_KERNEL_NETLINK = "libstrongswan-kernel-netlink.so"
_PLUGIN_DIRS = ("plugins", "../plugins", "../lib/ipsec/plugins", "../lib/strongswan/plugins",
                "../../lib/ipsec/plugins", "../libcharon/plugins/kernel_netlink/.libs")


def _has_kernel_netlink(charon: str) -> bool:
    here = os.path.dirname(os.path.realpath(charon))
    if os.path.basename(here) == ".libs":          # libtool build tree
        here = os.path.dirname(here)
    for d in _PLUGIN_DIRS:
        if os.path.exists(os.path.join(here, d, _KERNEL_NETLINK)):
            return True
    # a monolithic build links its plugins into libcharon
    for lib in ("libcharon.so", "../libcharon/.libs/libcharon.so", "../lib/ipsec/libcharon.so"):
        p = os.path.join(here, lib)
        if os.path.exists(p) and b"kernel_netlink_ipsec" in open(p, "rb").read():
            return True
    return False


def charon_install(charon: str | None = None, userland: str | None = None) -> Install:
    if charon and userland:
        raise DaemonError("xfrmd.ike: give charon=PATH or userland=NAME, not both")
    if userland:
        return _from_userland("charon", userland, {
            "charon": "/usr/lib/ipsec/charon", "swanctl": "/usr/sbin/swanctl"},
            plugin="/usr/lib/ipsec/plugins/" + _KERNEL_NETLINK)
    if not charon:
        return Install("charon", {"charon": CHARON, "swanctl": "swanctl"})
    path = os.path.abspath(charon)
    if os.path.isdir(path):
        binary = _first(path, _CHARON_IN)
        if binary is None:
            raise DaemonError(f"xfrmd.ike: charon={charon}: no charon in it (looked for "
                              f"{', '.join(_CHARON_IN[1:5])}, src/charon/charon)")
        base = path
    elif _executable(path):
        binary, base = path, os.path.dirname(path)
    else:
        raise DaemonError(f"xfrmd.ike: charon={charon}: "
                          + ("not executable" if os.path.exists(path) else "no such file"))
    version = _version([binary], "strongSwan", "charon", charon)
    if not _has_kernel_netlink(binary):
        raise DaemonError(f"xfrmd.ike: charon={charon}: {version} has no kernel-netlink "
                          f"plugin ({_KERNEL_NETLINK} not found beside it): xfrmd speaks "
                          "netlink, build strongSwan with --enable-kernel-netlink")
    swanctl = _first(base, _SWANCTL_IN) or _first(os.path.join(base, ".."), _SWANCTL_IN) \
        or _first(os.path.join(base, "../.."), _SWANCTL_IN)
    if swanctl is None:
        raise DaemonError(f"xfrmd.ike: charon={charon}: no swanctl beside it (the wrapper "
                          "drives charon through vici with swanctl)")
    return Install("charon", {"charon": binary, "swanctl": swanctl}, version=version,
                   origin=f"charon={charon}")


# ---- libreswan ----

_PLUTO_IN = ("pluto", "libexec/ipsec/pluto", "usr/libexec/ipsec/pluto",
             "programs/pluto/pluto")


def pluto_install(pluto: str | None = None, userland: str | None = None) -> Install:
    if pluto and userland:
        raise DaemonError("xfrmd.ike: give pluto=PATH or userland=NAME, not both")
    if userland:
        d = "/usr/libexec/ipsec/"
        return _from_userland("pluto", userland, {
            "pluto": d + "pluto", "whack": d + "whack", "addconn": d + "addconn",
            "certutil": "/usr/bin/certutil"})
    if not pluto:
        d = libreswan_libexec()
        return Install("pluto", {"pluto": os.path.join(d, "pluto"),
                                 "whack": os.path.join(d, "whack"),
                                 "addconn": os.path.join(d, "addconn"),
                                 "certutil": "certutil"}, origin="deb")
    path = os.path.abspath(pluto)
    if os.path.isdir(path):
        binary = _first(path, _PLUTO_IN)
        if binary is None:
            # a libreswan build tree keeps its objects in OBJ.<os>.<arch>/
            for entry in sorted(os.listdir(path)):
                if entry.startswith("OBJ."):
                    binary = _first(os.path.join(path, entry), ("programs/pluto/pluto",))
                    if binary:
                        break
        if binary is None:
            raise DaemonError(f"xfrmd.ike: pluto={pluto}: no pluto in it (looked for "
                              "libexec/ipsec/pluto, programs/pluto/pluto, OBJ.*/programs/"
                              "pluto/pluto)")
    elif _executable(path):
        binary = path
    else:
        raise DaemonError(f"xfrmd.ike: pluto={pluto}: "
                          + ("not executable" if os.path.exists(path) else "no such file"))
    version = _version([binary], "Libreswan", "pluto", pluto)
    here = os.path.dirname(binary)
    tools = {"pluto": binary, "certutil": "certutil"}
    for tool in ("whack", "addconn"):
        found = _first(here, (tool,)) or _first(here, (f"../{tool}/{tool}",))
        if found is None:
            raise DaemonError(f"xfrmd.ike: pluto={pluto}: no {tool} beside it (the wrapper "
                              f"drives pluto with {tool})")
        tools[tool] = found
    return Install("pluto", tools, version=version, origin=f"pluto={pluto}")


def _from_userland(what: str, name: str, paths: dict, plugin: str | None = None) -> Install:
    try:
        root = resolve(name)
    except UserlandError as e:
        raise DaemonError(str(e)) from None
    missing = [p for p in paths.values() if not _executable(root + p)]
    if missing:
        raise DaemonError(f"xfrmd.ike: userland {name} has no {what} ({missing[0]} missing "
                          f"in {root})")
    if plugin and not os.path.exists(root + plugin):
        raise DaemonError(f"xfrmd.ike: userland {name}: {what} has no kernel-netlink plugin "
                          f"({plugin} missing)")
    v = tool_versions(root).get(what, "")
    return Install(what, paths, root=root, version=f"{what} {v}".strip(),
                   origin=f"userland={name}")
