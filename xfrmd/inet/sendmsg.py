"""The errors ``sendmsg`` returns at once on an emulated UDP, ping or raw socket — the ones
``udp_sendmsg`` / ``ping_v4_sendmsg`` / ``raw_sendmsg`` find before the datagram leaves:
the route's (``ip_route_output_flow``: ENETUNREACH, EHOSTUNREACH, EACCES for a prohibit
route, EINVAL), EACCES for a broadcast destination without SO_BROADCAST, ENODEV for a bound
device that is gone, EMSGSIZE for a datagram that does not fit the device's MTU when the
socket forbids fragmentation (IP_MTU_DISCOVER / IPV6_MTU_DISCOVER "do" or "probe":
``ip_append_data`` / ``ip6_append_data``; the ESP overhead a tunnel adds is not taken off
the MTU here), and ``xfrm_lookup``'s EPERM for a blocking policy (or the namespace's
out default "block" without a policy). A missing SA is no error: ``xfrm_lookup`` makes a
blackhole route (``xfrm_larval_drop``) and the datagram is dropped after ``sendmsg``
returned.

The shim asks (service op ``inet_send_check``) before it hands the datagram to the INET
connection: an answer there would queue behind datagrams already received."""
from __future__ import annotations

import errno as E
import ipaddress
from typing import TYPE_CHECKING, Any

from netlink_codec import xfrm as X

from ..rtnl.fib import RTCF_BROADCAST, RTCF_LOCAL, RTN_LOCAL, route_lookup
from ..xfrm.acquire import host_selector, xfrm_policy_lookup

if TYPE_CHECKING:
    from ..kernel import Kernel, NetNamespace

IPPROTO_UDP = 17


def send_check(ns: NetNamespace, daddr: str, *, laddr: str | None = None, ifname: str = "",
               broadcast: bool = False, proto: int = IPPROTO_UDP, sport: int = 0,
               dport: int = 0, length: int = 0, dontfrag: bool = False) -> int:
    """0, or the errno ``sendmsg`` returns for a datagram to ``daddr`` from a socket bound
    to ``laddr`` / device ``ifname`` (see the module's text)."""
    oif = None
    if ifname:
        dev = ns.links.by_name(ifname)
        if dev is None:
            return E.ENODEV
        oif = dev.ifindex
    res = route_lookup(ns, daddr, src=laddr or None, oif=oif)
    if isinstance(res, int):
        return -res
    if res.flags & RTCF_BROADCAST and not broadcast:
        return E.EACCES                                  # udp_sendmsg, raw_sendmsg
    if dontfrag and res.dev is not None:
        v6 = ipaddress.ip_address(daddr).version == 6
        size = (40 if v6 else 20) + (8 if proto == IPPROTO_UDP else 0) + length
        if size > res.dev.mtu:
            return E.EMSGSIZE
    src = laddr or res.src
    if src is None or res.type == RTN_LOCAL or res.flags & RTCF_LOCAL:
        return 0
    s, d = ipaddress.ip_address(src).packed, ipaddress.ip_address(daddr).packed
    family = X.AF_INET if len(d) == 4 else X.AF_INET6
    if proto != IPPROTO_UDP:
        sport = dport = 0
    flow = bytes(host_selector(s.ljust(16, b"\0"), d.ljust(16, b"\0"), family, proto,
                               sport, dport))
    pol = xfrm_policy_lookup(ns, X.XFRM_POLICY_OUT, flow, family)
    if pol is None:
        block = ns.xfrm.policy_default[X.XFRM_POLICY_OUT] == X.XFRM_USERPOLICY_BLOCK
        return E.EPERM if block else 0
    return E.EPERM if pol.action != X.XFRM_POLICY_ALLOW else 0


def _inet_send_check(kernel: Kernel, ns: NetNamespace | None, req: dict[str, Any]) -> dict[str, Any]:
    """Service op: ``{"dst", "src", "dev", "broadcast", "proto", "sport", "dport", "len",
    "dontfrag"}`` → ``{"errno": N}`` (EMSGSIZE: and ``"mtu"``)."""
    if ns is None:
        return {"errno": E.ENOENT}
    try:
        err = send_check(ns, str(req["dst"]), laddr=str(req.get("src") or "") or None,
                         ifname=str(req.get("dev") or ""), broadcast=bool(req.get("broadcast")),
                         proto=int(req.get("proto", IPPROTO_UDP)), sport=int(req.get("sport", 0)),
                         dport=int(req.get("dport", 0)), length=int(req.get("len", 0)),
                         dontfrag=bool(req.get("dontfrag")))
    except (KeyError, ValueError, TypeError):
        err = E.EINVAL
    if err == E.EMSGSIZE:
        # ip_local_error's ee_info: the MTU the datagram did not fit (IP_RECVERR)
        dev = ns.links.by_name(str(req.get("dev") or "")) if req.get("dev") else None
        res = route_lookup(ns, str(req["dst"]), src=str(req.get("src") or "") or None,
                           oif=dev.ifindex if dev is not None else None)
        if not isinstance(res, int) and res.dev is not None:
            return {"errno": err, "mtu": res.dev.mtu}
    return {"errno": err}


SERVICES = {"inet_send_check": _inet_send_check}
