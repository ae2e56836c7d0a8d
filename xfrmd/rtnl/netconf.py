"""RTM_GETNETCONF (``ip netconf show``): the per-device and ``all`` / ``default`` IP
configuration a namespace reports, as devinet.c ``inet_netconf_get_devconf`` /
``inet_netconf_dump_devconf`` and addrconf.c ``inet6_netconf_get_devconf`` /
``inet6_netconf_dump_devconf`` write it. Every value is a fresh namespace's: forwarding,
rp_filter, mc_forwarding, bc_forwarding, proxy_arp / proxy_ndp and
ignore_routes_with_linkdown all 0 (nothing in xfrmd changes them: there are no sysctls)."""
from __future__ import annotations

import errno as E
import struct
from typing import Any

from netlink_codec.netlink import NLM_F_MULTI, encode_msg, nla

from .. import kconfig
from ..errors import KernelError
from ..netlink.core import OK, Reply, Request
from .policy import DEVCONF_IPV4_POLICY, DEVCONF_IPV6_POLICY, NETCONFA_MAX, rtnl_parse

RTM_NEWNETCONF, RTM_GETNETCONF = 80, 82
NETCONFA_IFINDEX, NETCONFA_FORWARDING, NETCONFA_RP_FILTER, NETCONFA_MC_FORWARDING = 1, 2, 3, 4
NETCONFA_PROXY_NEIGH, NETCONFA_IGNORE_ROUTES_WITH_LINKDOWN = 5, 6
NETCONFA_BC_FORWARDING = 8
NETCONFA_IFINDEX_ALL, NETCONFA_IFINDEX_DEFAULT = -1, -2
# the attributes of a NETCONFA_ALL message, in the order each family writes them
ATTRS = {2: (NETCONFA_FORWARDING, NETCONFA_RP_FILTER, NETCONFA_MC_FORWARDING,
             NETCONFA_BC_FORWARDING, NETCONFA_PROXY_NEIGH, NETCONFA_IGNORE_ROUTES_WITH_LINKDOWN),
         10: (NETCONFA_FORWARDING, NETCONFA_MC_FORWARDING, NETCONFA_PROXY_NEIGH,
              NETCONFA_IGNORE_ROUTES_WITH_LINKDOWN)}


def _s32(t: int, v: int) -> bytes:
    return nla(t, struct.pack("=i", v))


def fill_devconf(family: int, ifindex: int, seq: int, portid: int, flags: int,
                 kernel: Any = None) -> bytes:
    """``inet_netconf_fill_devconf`` / ``inet6_netconf_fill_devconf`` with NETCONFA_ALL:
    netconfmsg (padded to 4), the index, then each value. IPv6 writes mc_forwarding only
    in a kernel built with CONFIG_IPV6_MROUTE (IPv4 always writes it)."""
    body = struct.pack("=Bxxx", family) + _s32(NETCONFA_IFINDEX, ifindex)
    no_mc6 = family == 10 and not kconfig.enabled(kernel, "IPV6_MROUTE")
    for t in ATTRS[family]:
        if t == NETCONFA_MC_FORWARDING and no_mc6:
            continue
        body += _s32(t, 0)
    return encode_msg(RTM_NEWNETCONF, flags, seq, portid, body)


def _indexes(ns: Any) -> list[int]:
    return [d.ifindex for d in ns.links] + [NETCONFA_IFINDEX_ALL, NETCONFA_IFINDEX_DEFAULT]


def _family(req: Request, modelled: tuple[int, ...]) -> int:
    """The netconfmsg family: IPv4 and IPv6 have devconf (AF_UNSPEC dumps both), other
    families no handler."""
    family: int = req.buf[req.payload_offset] if req.end > req.payload_offset else 0
    if family not in modelled:
        raise KernelError(E.EOPNOTSUPP,
                          f"xfrmd: netconf of address family {family} is not modelled")
    return family


def netconf_dump_devconf(req: Request) -> Any:
    """Devices by index, then ``all`` and ``default``; AF_UNSPEC gives IPv4 then IPv6."""
    family = _family(req, (0, 2, 10))
    seq, portid = req.hdr.seq, req.sock.portid
    msgs = [fill_devconf(fam, i, seq, portid, NLM_F_MULTI, req.netns.kernel)
            for fam in (2, 10) if family in (0, fam) for i in _indexes(req.netns)]
    return req.start_dump(msgs)


def netconf_get_devconf(req: Request) -> Reply:
    """One index (NETCONFA_IFINDEX): EINVAL without one, ENODEV for an unknown device."""
    family = _family(req, (2, 10))
    # inet_netconf_valid_get_req / inet6_netconf_valid_get_req: the family's policy,
    # strictly on a socket with NETLINK_GET_STRICT_CHK
    tb = rtnl_parse(req, 1, DEVCONF_IPV4_POLICY if family == 2 else DEVCONF_IPV6_POLICY,
                    NETCONFA_MAX, strict=req.sock.strict_chk)
    if NETCONFA_IFINDEX not in tb:
        raise KernelError(E.EINVAL)
    ifindex = struct.unpack_from("=i", tb[NETCONFA_IFINDEX])[0]
    if ifindex not in (NETCONFA_IFINDEX_ALL, NETCONFA_IFINDEX_DEFAULT) \
            and req.netns.links.by_index(ifindex) is None:
        raise KernelError(E.ENODEV)
    req.unicast(fill_devconf(family, ifindex, req.hdr.seq, req.sock.portid, 0, req.netns.kernel))
    return OK


RTNL_MSG_HANDLERS = (
    (0, RTM_GETNETCONF, netconf_get_devconf, netconf_dump_devconf),
)
