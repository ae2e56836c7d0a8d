"""Service ops of the genetlink side: ``genetlink on|off`` switches NETLINK_GENERIC socket
creation (off: ``socket(AF_NETLINK, …, NETLINK_GENERIC)`` fails with EPROTONOSUPPORT at
bind, so ethtool uses its SIOCETHTOOL fallback, as on a kernel without the family).
Registered by the genl init call (:data:`SERVICES`)."""
from __future__ import annotations

import errno as E
from typing import TYPE_CHECKING, Any, Callable

from netlink_codec.netlink import NETLINK_GENERIC

from .core import Genetlink

if TYPE_CHECKING:
    from ..kernel import Kernel, NetNamespace


def _genetlink(kernel: "Kernel", ns: "NetNamespace", request: dict[str, Any]) -> dict[str, Any]:
    genl = kernel.families.get(NETLINK_GENERIC)
    if not isinstance(genl, Genetlink):
        return {"errno": E.EPROTONOSUPPORT, "error": "xfrmd: no generic netlink in this server"}
    state = request.get("state")
    if state in ("on", "off"):
        genl.refuse_sockets = state == "off"
    return {"errno": 0, "genetlink": "off" if genl.refuse_sockets else "on"}


SERVICES: dict[str, Callable[..., dict[str, Any]]] = {"genetlink": _genetlink}
