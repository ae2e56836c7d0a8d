"""``xfrmd ctl genetlink on|off`` (NETLINK_GENERIC sockets refused while off)."""
from __future__ import annotations

from ..ctl_util import Service, VerbTable, result, usage_error


def _genetlink(svc: Service, args: list[str]) -> int:
    if len(args) > 1 or (args and args[0] not in ("on", "off")):
        raise usage_error(_USAGE_GENETLINK)
    return result(svc.query("genetlink", **({"state": args[0]} if args else {})), show=not args)


# what `xfrmd ctl help` shows of each verb
_USAGE_GENETLINK = ("genetlink [on|off] — refuse NETLINK_GENERIC sockets (off: ethtool falls "
                    "back to SIOCETHTOOL)")

# ``xfrmd ctl`` verbs of this module: name -> (function, usage); :mod:`xfrmd.ctl` assembles them.
VERBS: VerbTable = {
    "genetlink": (_genetlink, _USAGE_GENETLINK),
}
