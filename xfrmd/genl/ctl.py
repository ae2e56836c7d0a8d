"""``xfrmd ctl genetlink on|off`` (NETLINK_GENERIC sockets refused while off)."""
from __future__ import annotations

from ..ctl import VERBS, _result, verb


@verb("genetlink", "genetlink [on|off] — refuse NETLINK_GENERIC sockets (off: ethtool falls "
                   "back to SIOCETHTOOL)")
def _genetlink(svc, args) -> int:
    if len(args) > 1 or (args and args[0] not in ("on", "off")):
        raise SystemExit("usage: xfrmd ctl " + VERBS["genetlink"][1])
    return _result(svc.query("genetlink", **({"state": args[0]} if args else {})), show=not args)
