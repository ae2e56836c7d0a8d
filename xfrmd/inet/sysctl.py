"""The inet sysctls the emulated sockets obey (net/ipv4/sysctl_net_ipv4.c), per namespace:
``/proc/sys/net/ipv4/ping_group_range`` (``ipv4_ping_group_range``), the groups that may
open ping sockets (``ping_init_sock``; the shim asks before it makes one). A new namespace
starts with ``1 0``, no group (``inet_init_net``): root's ping then takes a raw socket."""
from __future__ import annotations

import errno as E
from typing import Any

GID_MAX = 0xFFFFFFFE                     # (gid_t)-1 is not a valid group
DISABLED = (1, 0)


def ping_group_range(ns: Any) -> tuple[int, int]:
    return getattr(ns, "ping_group_range", DISABLED)


def _read(kernel: Any, ns: Any, path: str) -> str:
    lo, hi = ping_group_range(ns)
    return f"{lo}\t{hi}\n"


def _write(kernel: Any, ns: Any, path: str, data: str) -> int | None:
    """``ipv4_ping_group_range``: two group ids; an empty range (high below low) stores the
    disabled ``1 0``; an id that is no group is EINVAL."""
    try:
        lo, hi = (int(w, 10) for w in data.split())
    except ValueError:
        return E.EINVAL
    if not (0 <= lo <= GID_MAX and 0 <= hi <= GID_MAX):
        return E.EINVAL
    setattr(ns, "ping_group_range", (lo, hi) if hi >= lo else DISABLED)
    return None


VFS_FILES = (("/proc/sys/net/ipv4/ping_group_range", _read, _write),)
