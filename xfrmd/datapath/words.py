"""How a data-path drop names what it is about, the same way in every message: an SA by SPI
and reqid, a policy by direction, index and selector, a device by name. The texts end with
what the user can change; ``xfrmd ctl xmit`` prints them after the drop's MIB counter."""
from __future__ import annotations

import ipaddress
import struct
from typing import Any

from netlink_codec import xfrm as X

from ..xfrm.state import XFRM_STATE_ACQ, XFRM_STATE_DEAD, XFRM_STATE_ERROR, XFRM_STATE_EXPIRED

_PROTO = {1: "icmp", 6: "tcp", 17: "udp", 50: "esp", 51: "ah", 58: "ipv6-icmp", 108: "comp"}
_KM_STATE = {XFRM_STATE_ACQ: "larval (an acquire is pending)", XFRM_STATE_ERROR: "in error",
             XFRM_STATE_EXPIRED: "expired", XFRM_STATE_DEAD: "deleted"}


def sa_name(x: Any) -> str:
    """``SA 0x201 (reqid 2)``: how `ip xfrm state` users find the state."""
    return f"SA 0x{x.id.spi:x} (reqid {x.reqid})"


def addr(raw: bytes, family: int) -> str:
    return str(ipaddress.ip_address(bytes(raw[:4] if family == X.AF_INET else raw[:16])))


def sel_text(sel: bytes | X.XfrmSelector) -> str:
    """A ``struct xfrm_selector`` as `ip xfrm policy` writes it: ``src A/n dst B/m [proto P]
    [sport N] [dport N]``."""
    sel = bytes(sel)
    dport, dmask, sport, smask, family = struct.unpack_from(">HHHH", sel, 32) + \
        struct.unpack_from("=H", sel, 40)
    plen_d, plen_s, proto = sel[42], sel[43], sel[44]
    if family not in (X.AF_INET, X.AF_INET6):
        return "any flow"
    out = f"src {addr(sel[16:32], family)}/{plen_s} dst {addr(sel[0:16], family)}/{plen_d}"
    if proto:
        out += f" proto {_PROTO.get(proto, proto)}"
    if smask:
        out += f" sport {sport}"
    if dmask:
        out += f" dport {dport}"
    return out


def km_state_text(x: Any) -> str:
    return _KM_STATE.get(x.km_state, f"in state {x.km_state}")


def offload_hint(why: str, x: Any, dev: Any) -> str:
    """What to change when ``xfrm_dev_offload_ok`` turns a packet-offloaded SA down."""
    name = getattr(dev, "name", dev)
    if why.startswith("route leaves through"):
        return (f"route the tunnel endpoint through {name} (ip route … dev {name}), or add the "
                "SA and its policy offloaded on the device the route uses")
    if "MTU" in why:
        return f"send smaller packets, or raise {name}'s mtu (ip link set {name} mtu …)"
    if why.startswith("bundle"):
        return "packet offload takes one transform per policy: use a single template"
    if "xdo_dev_offload_ok refused" in why:
        return f"the driver of {name} does not take this packet (see xfrmd ctl show-offload {name})"
    if why == "type has no offload":
        return "only ESP is offloaded: use proto esp"
    return "check the SA's offload with xfrmd ctl show-offload"


def hw_hint(msg: str, x: Any, dev: Any) -> str:
    """What to change after a driver or the bond dropped a packet-offloaded packet."""
    name = getattr(dev, "name", dev)
    m = msg.lower()
    if "hard lifetime" in m and x.xso is not None and x.xso.upper_priv is not None:
        # the RFC's bond_xfrm_update_stats is active-backup only (R2 of docs/bonding.md)
        return (f"the port's hardware counted the SA to its hard limit, but {name} reports no "
                "counters to the state (the RFC bond's update_stats is active-backup only), "
                "so no EXPIRE reached the key manager: rekey before the limit, or delete and "
                "re-add the SA")
    if "hard lifetime" in m:
        return "the SA is past its hard limit: the key manager must rekey earlier"
    if "replay" in m:
        return ("a replayed or reordered packet; a larger replay-window tolerates more "
                "reordering")
    if "no usable slave" in m or "pinned slave" in m or "no active slave" in m:
        return (f"bring a slave of {name} holding the SA back (xfrmd ctl link SLAVE carrier on "
                "or replug), or delete and re-add the SA")
    if "is a backup port" in m:
        # active-backup offloads to the active slave only, whatever the LAG model
        # (bond_ipsec_add_sa; bond_change_active_slave moves the SAs on failover)
        return (f"an active-backup bond receives on its active slave only, under every LAG "
                f"model: the link partner must send to the active slave of {name} (a failover "
                "moves the SAs to the new active slave)")
    if "without the state" in m or "no replica on" in m:
        return (f"the packet arrived on a slave of {name} that holds no copy of the SA: use a "
                "LAG model that replicates SAs (xfrmd ctl lag-model)")
    if "holds no hardware sa" in m or "not offloaded to a slave" in m:
        return f"delete and re-add the SA with offload on {name}"
    return f"see xfrmd ctl show-offload {name}"
