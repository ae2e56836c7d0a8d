"""RTM_GETNETCONF (``ip netconf show``): the per-device and ``all`` / ``default`` IP
configuration a namespace reports, as devinet.c ``inet_netconf_get_devconf`` /
``inet_netconf_dump_devconf`` and addrconf.c ``inet6_netconf_get_devconf`` /
``inet6_netconf_dump_devconf`` write it, with the sysctl values of procfs.py (forwarding,
rp_filter, mc_forwarding, bc_forwarding, proxy_arp / proxy_ndp, ignore_routes_with_linkdown).
And RTM_NEWNETCONF to RTNLGRP_IPV4_NETCONF / RTNLGRP_IPV6_NETCONF (``ip monitor netconf``)
when a write to one of those sysctls changes it, as the kernel's handlers announce it
(``inet_netconf_notify_devconf`` / ``inet6_netconf_notify_devconf``): the files are
registered here, ahead of procfs.py's, and wrap its writer."""
from __future__ import annotations

import errno as E
import struct
from typing import Any

from netlink_codec.netlink import NETLINK_ROUTE, NLM_F_MULTI, encode_msg, nla

from .. import kconfig
from ..errors import KernelError
from ..netlink.core import OK, Reply, Request
from ..vfs import Reader, Writer
from .policy import DEVCONF_IPV4_POLICY, DEVCONF_IPV6_POLICY, NETCONFA_MAX, rtnl_parse
from .procfs import conf_read, conf_write, devconf_value

RTM_NEWNETCONF, RTM_DELNETCONF, RTM_GETNETCONF = 80, 81, 82
NETCONFA_IFINDEX, NETCONFA_FORWARDING, NETCONFA_RP_FILTER, NETCONFA_MC_FORWARDING = 1, 2, 3, 4
NETCONFA_PROXY_NEIGH, NETCONFA_IGNORE_ROUTES_WITH_LINKDOWN = 5, 6
NETCONFA_BC_FORWARDING = 8
NETCONFA_IFINDEX_ALL, NETCONFA_IFINDEX_DEFAULT = -1, -2
IPV6_MIN_MTU = 1280
RTNLGRP_IPV4_NETCONF, RTNLGRP_IPV6_NETCONF = 24, 25
# the sysctl behind each attribute, per family
CONF_NAME = {2: {NETCONFA_FORWARDING: "forwarding", NETCONFA_RP_FILTER: "rp_filter",
                 NETCONFA_MC_FORWARDING: "mc_forwarding", NETCONFA_BC_FORWARDING: "bc_forwarding",
                 NETCONFA_PROXY_NEIGH: "proxy_arp",
                 NETCONFA_IGNORE_ROUTES_WITH_LINKDOWN: "ignore_routes_with_linkdown"},
             10: {NETCONFA_FORWARDING: "forwarding", NETCONFA_PROXY_NEIGH: "proxy_ndp",
                  NETCONFA_IGNORE_ROUTES_WITH_LINKDOWN: "ignore_routes_with_linkdown"}}
# the attributes of a NETCONFA_ALL message, in the order each family writes them
ATTRS = {2: (NETCONFA_FORWARDING, NETCONFA_RP_FILTER, NETCONFA_MC_FORWARDING,
             NETCONFA_BC_FORWARDING, NETCONFA_PROXY_NEIGH, NETCONFA_IGNORE_ROUTES_WITH_LINKDOWN),
         10: (NETCONFA_FORWARDING, NETCONFA_MC_FORWARDING, NETCONFA_PROXY_NEIGH,
              NETCONFA_IGNORE_ROUTES_WITH_LINKDOWN)}


def _s32(t: int, v: int) -> bytes:
    return nla(t, struct.pack("=i", v))


def _who(ns: Any, ifindex: int) -> str | None:
    if ifindex == NETCONFA_IFINDEX_ALL:
        return "all"
    if ifindex == NETCONFA_IFINDEX_DEFAULT:
        return "default"
    dev = ns.links.by_index(ifindex) if ns is not None else None
    return dev.name if dev is not None else None


def fill_devconf(family: int, ifindex: int, seq: int, portid: int, flags: int,
                 kernel: Any = None, ns: Any = None, only: int | None = None) -> bytes:
    """``inet_netconf_fill_devconf`` / ``inet6_netconf_fill_devconf``: netconfmsg (padded to
    4), the index, then each value (NETCONFA_ALL) or ``only`` that one. IPv6 writes
    mc_forwarding only in a kernel built with CONFIG_IPV6_MROUTE (IPv4 always writes it)."""
    body = struct.pack("=Bxxx", family) + _s32(NETCONFA_IFINDEX, ifindex)
    no_mc6 = family == 10 and not kconfig.enabled(kernel, "IPV6_MROUTE")
    proto, who = ("ipv4" if family == 2 else "ipv6"), _who(ns, ifindex)
    for t in ATTRS[family]:
        if (t == NETCONFA_MC_FORWARDING and no_mc6) or only not in (None, t):
            continue
        name = CONF_NAME[family].get(t)
        value = devconf_value(ns, proto, who, name) if name and who else 0
        body += _s32(t, int(value))
    return encode_msg(RTM_NEWNETCONF, flags, seq, portid, body)


def inet_netconf_notify_devconf(ns: Any, family: int, attr: int, who: str) -> None:
    """``inet_netconf_notify_devconf`` / ``inet6_netconf_notify_devconf``: the one attribute
    of ``who`` (all, default or a device name), seq and port 0, to the family's group."""
    ifindex = {"all": NETCONFA_IFINDEX_ALL, "default": NETCONFA_IFINDEX_DEFAULT}.get(who)
    if ifindex is None:
        ifindex = ns.links.by_name(who).ifindex
    group = RTNLGRP_IPV4_NETCONF if family == 2 else RTNLGRP_IPV6_NETCONF
    ns.kernel.multicast(ns, NETLINK_ROUTE, group,
                        fill_devconf(family, ifindex, 0, 0, 0, ns.kernel, ns, only=attr))


def netconf_netdev_event(event: str, dev: Any, **info: Any) -> None:
    """NETDEV_REGISTER: ``inetdev_init`` then ``ipv6_add_dev`` (a device with an MTU of at
    least 1280) announce the new device's whole devconf (NETCONFA_ALL); NETDEV_UNREGISTER:
    ``inetdev_destroy`` and ``addrconf_ifdown`` announce RTM_DELNETCONF with the index
    alone (no devconf)."""
    ns = dev.netns
    if ns is None or event not in ("NETDEV_REGISTER", "NETDEV_UNREGISTER"):
        return
    for family, group in ((2, RTNLGRP_IPV4_NETCONF), (10, RTNLGRP_IPV6_NETCONF)):
        if family == 10 and dev.mtu < IPV6_MIN_MTU:
            continue
        if event == "NETDEV_REGISTER":
            msg = fill_devconf(family, dev.ifindex, 0, 0, 0, ns.kernel, ns)
        else:
            msg = encode_msg(RTM_DELNETCONF, 0, 0, 0, struct.pack("=Bxxx", family)
                             + _s32(NETCONFA_IFINDEX, dev.ifindex))
        ns.kernel.multicast(ns, NETLINK_ROUTE, group, msg)


def _snapshot(ns: Any, proto: str, name: str) -> dict[str, Any]:
    return {w: devconf_value(ns, proto, w, name)
            for w in ["all", "default"] + [d.name for d in ns.links]}


def devconf_sysctl_write(kernel: Any, ns: Any, path: str, data: str) -> int | None:
    """A write to conf/WHO/{forwarding, rp_filter, proxy_arp, proxy_ndp,
    ignore_routes_with_linkdown}: procfs.py stores it, then the handler's announcements.
    IPv4 (``devinet_conf_proc``, ``devinet_sysctl_forward``) announces a changed value;
    all/forwarding (``inet_forward_change``) announces all, default and every device.
    IPv6 announces a change between zero and non-zero (proxy_ndp: any change); writing all's
    forwarding or ignore_routes_with_linkdown sets default's and every device's
    (``addrconf_fixup_forwarding`` / ``addrconf_fixup_linkdown``): default (forwarding
    only), each device that changed, then all."""
    parts = path.split("/")
    proto, who, name = parts[4], parts[6], parts[-1]
    family = 2 if proto == "ipv4" else 10
    attr = next(t for t, n in CONF_NAME[family].items() if n == name)
    before = _snapshot(ns, proto, name)
    err = conf_write(kernel, ns, path, data)
    if err:
        return err
    if family == 10 and who == "all" and name == "ignore_routes_with_linkdown":
        for w in ["default"] + [d.name for d in ns.links]:      # addrconf_linkdown_change
            conf_write(kernel, ns, f"/proc/sys/net/ipv6/conf/{w}/{name}", data)
    after = _snapshot(ns, proto, name)
    if family == 2 or name == "proxy_ndp":
        if before[who] == after[who]:
            return None
        whos = ["all", "default"] + [d.name for d in ns.links] \
            if (family, who, name) == (2, "all", "forwarding") else [who]
    elif who == "all":
        whos = [w for w in (["default"] if name == "forwarding" else [])
                + [d.name for d in ns.links] + ["all"] if bool(before[w]) != bool(after[w])]
    else:
        whos = [who] if bool(before[who]) != bool(after[who]) else []
    for w in whos:
        inet_netconf_notify_devconf(ns, family, attr, w)
    return None


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
    msgs = [fill_devconf(fam, i, seq, portid, NLM_F_MULTI, req.netns.kernel, req.netns)
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
    req.unicast(fill_devconf(family, ifindex, req.hdr.seq, req.sock.portid, 0, req.netns.kernel,
                             req.netns))
    return OK


RTNL_MSG_HANDLERS = (
    (0, RTM_GETNETCONF, netconf_get_devconf, netconf_dump_devconf),
)

# registered by xfrmd/rtnl/__init__.py ahead of procfs.py's files (the first match wins)
VFS_FILES: tuple[tuple[str, Reader | None, Writer | None], ...] = tuple(
    (f"/proc/sys/net/{proto}/conf/*/{name}", conf_read, devconf_sysctl_write)
    for proto, names in (("ipv4", ("forwarding", "rp_filter", "proxy_arp",
                                   "ignore_routes_with_linkdown")),
                         ("ipv6", ("forwarding", "proxy_ndp", "ignore_routes_with_linkdown")))
    for name in names)
