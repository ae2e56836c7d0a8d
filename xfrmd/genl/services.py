"""Service ops of the genetlink side: ``genetlink on|off`` switches NETLINK_GENERIC socket
creation (off: ``socket(AF_NETLINK, …, NETLINK_GENERIC)`` fails with EPROTONOSUPPORT at
bind, so ethtool uses its SIOCETHTOOL fallback, as on a kernel without the family)."""
from __future__ import annotations

import errno as E

from netlink_codec.netlink import NETLINK_GENERIC

from ..services import service


@service("genetlink")
def _genetlink(kernel, ns, request) -> dict:
    genl = kernel.families.get(NETLINK_GENERIC)
    if genl is None:
        return {"errno": E.EPROTONOSUPPORT, "error": "xfrmd: no generic netlink in this server"}
    state = request.get("state")
    if state in ("on", "off"):
        genl.refuse_sockets = state == "off"
    return {"errno": 0, "genetlink": "off" if genl.refuse_sockets else "on"}
