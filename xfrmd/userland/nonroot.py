"""Building a userland as a non-root user: mmdebstrap's ``--mode=unshare``, which runs the
build as root of a user namespace whose other ids come from the user's subordinate ranges.
It needs what this module checks first, so that a build that cannot work says in one line
what is missing instead of mmdebstrap's "unable to pick chroot mode automatically":

* newuidmap and newgidmap (Debian's ``uidmap`` package) to map the ranges;
* a range for the user in /etc/subuid and in /etc/subgid;
* unprivileged user namespaces, which some hosts switch off
  (``user.max_user_namespaces = 0``, Debian's ``kernel.unprivileged_userns_clone = 0``, an
  AppArmor restriction): asked of the kernel with ``unshare --user``."""
from __future__ import annotations

import os
import pwd
import shutil
import subprocess


def _has_range(path: str, name: str, uid: int) -> bool:
    """Whether /etc/subuid (or subgid) gives ``name`` (or the numeric ``uid``) a range."""
    try:
        with open(path) as f:
            for line in f:
                who, _, rest = line.strip().partition(":")
                count = rest.partition(":")[2]
                if who in (name, str(uid)) and count.isdigit() and int(count) > 0:
                    return True
    except OSError:
        pass
    return False


def _userns_refused() -> str | None:
    """Why the kernel refuses this user a user namespace (``unshare --user``), or None."""
    if shutil.which("unshare") is None:
        return None                      # cannot ask: let mmdebstrap find out
    try:
        p = subprocess.run(["unshare", "--user", "true"], capture_output=True, text=True,
                           timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if p.returncode == 0:
        return None
    said = (p.stderr.strip().splitlines() or [f"exit status {p.returncode}"])[-1]
    return f"unprivileged user namespaces, which this host refuses (`unshare --user`: {said})"


def unshare_mode_missing(uid: int | None = None, *, subuid: str = "/etc/subuid",
                         subgid: str = "/etc/subgid", path: str | None = None,
                         ask_kernel: bool = True) -> list[str]:
    """What mmdebstrap's unshare mode lacks for ``uid`` (default: this process's), each
    as a person can act on it; empty when nothing is missing."""
    uid = os.geteuid() if uid is None else uid
    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:
        name = str(uid)
    missing = []
    tools = [t for t in ("newuidmap", "newgidmap") if shutil.which(t, path=path) is None]
    if tools:
        missing.append(f"{' and '.join(tools)} (Debian: apt-get install uidmap)")
    files = [f for f in (subuid, subgid) if not _has_range(f, name, uid)]
    if files:
        missing.append(f"a range for {name} in {' and '.join(files)} (as root: usermod "
                       f"--add-subuids 100000-165535 --add-subgids 100000-165535 {name})")
    if ask_kernel:
        why = _userns_refused()
        if why:
            missing.append(why)
    return missing


def refusal(name: str, uid: int, missing: list[str]) -> str:
    """The one line ``xfrmd userland build`` prints when ``missing`` is not empty."""
    return (f"xfrmd userland: building {name} as a non-root user (uid {uid}) needs "
            f"mmdebstrap's unshare mode, which needs {'; '.join(missing)}; or build as root")


__all__ = ["unshare_mode_missing", "refusal"]
