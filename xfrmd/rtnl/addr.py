"""Interface addresses: RTM_GETADDR dumps (devinet.c ``inet_fill_ifaddr``, addrconf.c
``inet6_fill_ifaddr``)."""
from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

from netlink_codec.netlink import NLM_F_MULTI, encode_msg, iter_attrs, nla, nla_string, nla_u32

from . import rtnl_handler

RTM_NEWADDR, RTM_GETADDR = 20, 22
IFADDRMSG = struct.Struct("=BBBBi")
IFA_ADDRESS, IFA_LOCAL, IFA_LABEL, IFA_BROADCAST, IFA_CACHEINFO, IFA_FLAGS = 1, 2, 3, 4, 6, 8
IFA_F_PERMANENT, IFA_F_NOPREFIXROUTE = 0x80, 0x200
RT_SCOPE_UNIVERSE, RT_SCOPE_LINK, RT_SCOPE_HOST = 0, 253, 254
INFINITY = 0xFFFFFFFF


@dataclass
class IfAddr:
    address: str
    prefixlen: int
    scope: int = RT_SCOPE_UNIVERSE
    flags: int = IFA_F_PERMANENT
    label: str = ""
    brd: object = "auto"      # "auto": computed (topology addresses); None: none; bytes: given

    @property
    def family(self) -> int:
        return 10 if ":" in self.address else 2

    @property
    def packed(self) -> bytes:
        return ipaddress.ip_address(self.address).packed

    def broadcast(self) -> bytes | None:
        if self.brd != "auto":
            return self.brd
        if self.family != 2 or self.prefixlen >= 31:
            return None
        net = ipaddress.ip_network(f"{self.address}/{self.prefixlen}", strict=False)
        return net.broadcast_address.packed


def add_address(dev, address: str, prefixlen: int) -> IfAddr:
    """What an ``ip addr add`` leaves behind (used by topologies)."""
    scope = RT_SCOPE_HOST if address.startswith("127.") or address == "::1" else RT_SCOPE_UNIVERSE
    a = IfAddr(address, prefixlen, scope, label=dev.name)
    dev.addresses.append(a)
    return a


def fill_ifaddr(dev, a: IfAddr, seq: int, portid: int, flags: int,
                msg_type: int = RTM_NEWADDR) -> bytes:
    body = IFADDRMSG.pack(a.family, a.prefixlen, a.flags & 0xFF, a.scope, dev.ifindex)
    cache = struct.pack("=IIII", INFINITY, INFINITY, 0, 0)
    if a.family == 2:
        body += nla(IFA_ADDRESS, a.packed) + nla(IFA_LOCAL, a.packed)
        brd = a.broadcast()
        if brd is not None:
            body += nla(IFA_BROADCAST, brd)
        body += nla_string(IFA_LABEL, a.label or dev.name) + nla_u32(IFA_FLAGS, a.flags)
        body += nla(IFA_CACHEINFO, cache)
    else:
        body += nla(IFA_ADDRESS, a.packed) + nla(IFA_CACHEINFO, cache) + nla_u32(IFA_FLAGS, a.flags)
    return encode_msg(msg_type, flags, seq, portid, body)


RTNLGRP_IPV4_IFADDR, RTNLGRP_IPV6_IFADDR = 5, 9
IFA_F_TENTATIVE = 0x40


def rtmsg_ifa(dev, a: IfAddr, msg_type: int, seq: int = 0, portid: int = 0) -> None:
    """``rtmsg_ifa`` / ``inet6_ifa_notify``: the address to its family's group."""
    ns = dev.netns
    if ns is None:
        return
    from netlink_codec.netlink import NETLINK_ROUTE
    group = RTNLGRP_IPV4_IFADDR if a.family == 2 else RTNLGRP_IPV6_IFADDR
    ns.kernel.multicast(ns, NETLINK_ROUTE, group, fill_ifaddr(dev, a, seq, portid, 0, msg_type))
    from .fib import ifa_event          # the inetaddr / inet6addr chains: the FIB follows
    ifa_event(dev, a, msg_type)


def _del(dev, a: IfAddr) -> None:
    dev.addresses.remove(a)
    rtmsg_ifa(dev, a, RTM_DELADDR)


def netdev_up(dev) -> None:
    """NETDEV_UP: loopback gets 127.0.0.1/8 and ::1 (inetdev_event, init_loopback); IPv6
    addresses of a device now running finish DAD (instantly here)."""
    if dev.kind == "loopback":
        if not any(a.address == "127.0.0.1" for a in dev.addresses):
            a = add_address(dev, "127.0.0.1", 8)
            a.brd = None
            rtmsg_ifa(dev, a, RTM_NEWADDR)
        if not any(a.address == "::1" for a in dev.addresses):
            rtmsg_ifa(dev, add_address(dev, "::1", 128), RTM_NEWADDR)


def netdev_down(dev) -> None:
    """NETDEV_DOWN: ``addrconf_ifdown`` drops the IPv6 addresses (keep_addr_on_down=0);
    IPv4 addresses stay."""
    for a in [a for a in dev.addresses if a.family == 10]:
        _del(dev, a)


def netdev_unregister(dev) -> None:
    """NETDEV_UNREGISTER: every address goes, each with RTM_DELADDR."""
    for a in list(dev.addresses):
        _del(dev, a)


@rtnl_handler(RTM_GETADDR, dump=True)
def inet_dump_ifaddr(req):
    family = req.buf[req.payload_offset] if req.hdr.len > 16 else 0
    seq, portid = req.hdr.seq, req.sock.portid
    msgs = []
    for fam in (2, 10):                  # rtnl_dump_all: AF_INET first, then AF_INET6
        if family and family != fam:
            continue
        for dev in req.netns.links:
            for a in dev.addresses:
                if a.family == fam:
                    msgs.append(fill_ifaddr(dev, a, seq, portid, NLM_F_MULTI))
    return req.start_dump(msgs)


RTM_DELADDR = 21


def _parse(req, new: bool):
    """``rtm_to_ifaddr`` / ``inet6_rtm_newaddr`` and the two deladdr handlers, in the
    kernel's order: the policy parse (nlmsg_parse_deprecated), the prefix length, the
    address, then the device. Returns ((dev, address, plen, scope, brd, local_given), None)
    or (None, Reply)."""
    import errno as E
    from ..netlink.core import Reply
    from .policy import IFA_IPV4_POLICY, IFA_IPV6_POLICY, IFA_MAX, rtnl_parse
    off = req.payload_offset
    if req.end - off < IFADDRMSG.size:
        return None, Reply(-E.EINVAL, "Invalid header length")       # __nlmsg_parse
    family, plen, _flags, scope, index = IFADDRMSG.unpack_from(req.buf, off)
    if family not in (2, 10):
        # rtnetlink_rcv_msg: no handler for the family, none for PF_UNSPEC either
        return None, Reply(-E.EOPNOTSUPP)
    tb, bad = rtnl_parse(req, IFADDRMSG.size, IFA_IPV4_POLICY if family == 2 else IFA_IPV6_POLICY,
                         IFA_MAX)
    if bad is not None:
        return None, bad
    brd = tb.get(IFA_BROADCAST)
    if family == 2:
        if plen > 32 and new:
            return None, Reply(-E.EINVAL, "ipv4: Invalid prefix length")
        raw = tb.get(IFA_LOCAL, tb.get(IFA_ADDRESS) if not new else None)
        if raw is None:
            return None, Reply(-E.EINVAL, "ipv4: Local address is not supplied" if new else None)
        raw = raw[:4]
    else:
        if plen > 128:
            return None, Reply(-E.EINVAL, "ipv6: Invalid prefix length")
        raw = tb.get(IFA_LOCAL, tb.get(IFA_ADDRESS))     # extract_addr: the local one wins
        if raw is None:
            return None, Reply(-E.EINVAL)
        raw = raw[:16]
    dev = req.netns.links.by_index(index)
    if dev is None:
        return None, Reply(-E.ENODEV, "ipv4: Device not found" if family == 2
                           else "ipv6: Unable to find the interface")
    return (dev, str(ipaddress.ip_address(raw)), plen, scope, brd[:4] if brd else None,
            IFA_ADDRESS in tb), None


@rtnl_handler(RTM_NEWADDR)
def inet_rtm_newaddr(req):
    """``ip addr add``: EEXIST for an address the device has (with NLM_F_EXCL)."""
    import errno as E
    from ..netlink.core import Reply
    parsed, bad = _parse(req, True)
    if bad is not None:
        return bad
    dev, address, plen, scope, brd, _ = parsed
    for a in dev.addresses:
        if a.address == address and a.prefixlen == plen:
            # inet_insert_ifa / ipv6_add_addr_hash
            text = "ipv4: Address already assigned" if ":" not in address \
                else "ipv6: address already assigned"
            return Reply(-E.EEXIST, text) if req.hdr.flags & 0x200 else Reply()
    if ":" not in address:
        a = inet_insert_ifa(dev, address, plen, scope)
    else:
        a = add_address(dev, address, plen)
        a.scope = scope
    a.brd = brd if a.family == 2 else None
    if a.family == 10 and not (dev.up and dev.carrier):
        a.flags |= IFA_F_TENTATIVE               # DAD waits for a running device
    # IPv4: the request's seq and port (rtmsg_ifa with nlh); IPv6: 0, 0
    if a.family == 2:
        rtmsg_ifa(dev, a, RTM_NEWADDR, req.hdr.seq, req.sock.portid)
    else:
        rtmsg_ifa(dev, a, RTM_NEWADDR)
    return Reply()


@rtnl_handler(RTM_DELADDR)
def inet_rtm_deladdr(req):
    import errno as E
    from ..netlink.core import Reply
    parsed, bad = _parse(req, False)
    if bad is not None:
        return bad
    dev, address, plen, _, _, with_address = parsed
    for a in list(dev.addresses):
        # inet_rtm_deladdr compares the prefix length only when IFA_ADDRESS is given
        if a.address == address and (not plen or a.prefixlen == plen
                                     or (a.family == 2 and not with_address)):
            if a.family == 2 and not a.flags & IFA_F_SECONDARY:
                # __inet_del_ifa without promote_secondaries: the primary takes its
                # secondaries along, each with RTM_DELADDR first
                net = _subnet(a)
                for b in [b for b in dev.addresses if b.family == 2 and b is not a
                          and b.flags & IFA_F_SECONDARY and b.prefixlen == a.prefixlen
                          and _subnet(b) == net]:
                    dev.addresses.remove(b)
                    rtmsg_ifa(dev, b, RTM_DELADDR, req.hdr.seq, req.sock.portid)
            dev.addresses.remove(a)
            rtmsg_ifa(dev, a, RTM_DELADDR, *((req.hdr.seq, req.sock.portid)
                                             if a.family == 2 else (0, 0)))
            return Reply()
    # inet_rtm_deladdr / inet6_addr_del
    return Reply(-E.EADDRNOTAVAIL, "ipv4: Address not found" if ":" not in address
                 else "ipv6: address not found")


IFA_F_SECONDARY = 0x01


def _subnet(a: IfAddr):
    return ipaddress.ip_network(f"{a.address}/{a.prefixlen}", strict=False)


def inet_insert_ifa(dev, address: str, plen: int, scope: int) -> IfAddr:
    """``__inet_insert_ifa``: an address in the subnet of one the device has (same mask) is
    a secondary and goes to the end of the list; a primary goes after the last primary of no
    narrower scope."""
    a = IfAddr(address, plen, scope, label=dev.name)
    net = _subnet(a)
    v4 = [b for b in dev.addresses if b.family == 2]
    last_primary = None
    for b in v4:
        if not b.flags & IFA_F_SECONDARY and scope <= b.scope:
            last_primary = b
        if b.prefixlen == plen and _subnet(b) == net:
            a.flags |= IFA_F_SECONDARY
    if a.flags & IFA_F_SECONDARY or not v4:
        at = (dev.addresses.index(v4[-1]) + 1) if v4 else len(dev.addresses)
    elif last_primary is None:
        at = dev.addresses.index(v4[0])
    else:
        at = dev.addresses.index(last_primary) + 1
    dev.addresses.insert(at, a)
    return a
