"""Interface addresses: RTM_GETADDR dumps (devinet.c ``inet_fill_ifaddr``, addrconf.c
``inet6_fill_ifaddr``)."""
from __future__ import annotations

import errno as E
import ipaddress
import struct
from dataclasses import dataclass, field
from typing import Any

from netlink_codec.netlink import (NETLINK_ROUTE, NLM_F_MULTI, encode_msg, kernel_attrs, nla,
                                   nla_string, nla_u32)

from ..errors import KernelError
from ..netlink.core import OK, Reply, Request
from .policy import IFA_IPV4_POLICY, IFA_IPV6_POLICY, IFA_MAX, rtnl_parse

RTM_NEWADDR, RTM_DELADDR, RTM_GETADDR = 20, 21, 22
IFADDRMSG = struct.Struct("=BBBBi")
IFA_ADDRESS, IFA_LOCAL, IFA_LABEL, IFA_BROADCAST, IFA_CACHEINFO, IFA_FLAGS = 1, 2, 3, 4, 6, 8
IFA_PROTO = 11
IFA_F_SECONDARY, IFA_F_TENTATIVE = 0x01, 0x40
IFA_F_DEPRECATED, IFA_F_PERMANENT, IFA_F_NOPREFIXROUTE = 0x20, 0x80, 0x200
RT_SCOPE_UNIVERSE, RT_SCOPE_LINK, RT_SCOPE_HOST = 0, 253, 254
RTNLGRP_IPV4_IFADDR, RTNLGRP_IPV6_IFADDR = 5, 9
INFINITY = 0xFFFFFFFF
NLM_F_EXCL = 0x200


@dataclass
class IfAddr:
    address: str
    prefixlen: int
    scope: int = RT_SCOPE_UNIVERSE
    flags: int = IFA_F_PERMANENT
    label: str = ""
    # "auto": computed (topology addresses); None: none; bytes: given
    brd: bytes | str | None = "auto"
    peer: str | None = None   # IFA_ADDRESS when it differs from IFA_LOCAL (point-to-point)
    valid_lft: int = INFINITY
    prefered_lft: int = INFINITY
    tstamp: float = 0.0       # the clock when the lifetimes were set (ifa_tstamp)
    # IFA_RT_PRIORITY, the metric of the prefix route (not settable here: 0)
    rt_priority: int = field(default=0, compare=False, repr=False)
    # IFA_PROTO: who added the address (ifa_proto; 0: not said, and not dumped)
    proto: int = field(default=0, compare=False, repr=False)
    # addrconf made the IPv6 address's routes (xfrmd/rtnl/fib.py): once per address
    routed: bool = field(default=False, compare=False, repr=False)

    @property
    def prefix_base(self) -> str:
        """``ifa_address``: the peer where there is one; the subnet is the peer's."""
        return self.peer or self.address

    @property
    def family(self) -> int:
        return 10 if ":" in self.address else 2

    @property
    def packed(self) -> bytes:
        return ipaddress.ip_address(self.address).packed

    def broadcast(self) -> bytes | None:
        if isinstance(self.brd, bytes) or self.brd is None:
            return self.brd
        if self.family != 2 or self.prefixlen >= 31:
            return None
        net = ipaddress.ip_network(f"{self.address}/{self.prefixlen}", strict=False)
        return net.broadcast_address.packed


def add_address(dev: Any, address: str, prefixlen: int) -> IfAddr:
    """What an ``ip addr add`` leaves behind (used by topologies)."""
    scope = RT_SCOPE_HOST if address.startswith("127.") or address == "::1" else RT_SCOPE_UNIVERSE
    a = IfAddr(address, prefixlen, scope, label=dev.name)
    dev.addresses.append(a)
    return a


def fill_ifaddr(dev: Any, a: IfAddr, seq: int, portid: int, flags: int,
                msg_type: int = RTM_NEWADDR) -> bytes:
    body = IFADDRMSG.pack(a.family, a.prefixlen, a.flags & 0xFF, a.scope, dev.ifindex)
    cache = struct.pack("=IIII", *ifa_lifetimes_left(dev, a), 0, 0)
    peer = ipaddress.ip_address(a.peer).packed if a.peer else None
    if a.family == 2:
        body += nla(IFA_ADDRESS, peer or a.packed) + nla(IFA_LOCAL, a.packed)
        brd = a.broadcast()
        if brd is not None:
            body += nla(IFA_BROADCAST, brd)
        body += nla_string(IFA_LABEL, a.label or dev.name)
        if a.proto:
            body += nla(IFA_PROTO, bytes([a.proto]))
        body += nla_u32(IFA_FLAGS, a.flags) + nla(IFA_CACHEINFO, cache)
    else:
        # inet6_fill_ifaddr: with a peer, IFA_LOCAL is the address and IFA_ADDRESS the peer
        body += (nla(IFA_LOCAL, a.packed) + nla(IFA_ADDRESS, peer)) if peer \
            else nla(IFA_ADDRESS, a.packed)
        body += nla(IFA_CACHEINFO, cache) + nla_u32(IFA_FLAGS, a.flags)
        if a.proto:
            body += nla(IFA_PROTO, bytes([a.proto]))
    return encode_msg(msg_type, flags, seq, portid, body)


def _now(dev: Any) -> float:
    ns = getattr(dev, "netns", None)
    return ns.kernel.clock.now() if ns is not None else 0.0


def ifa_lifetimes_left(dev: Any, a: IfAddr) -> tuple[int, int]:
    """(preferred, valid) seconds left, as ``inet_fill_ifaddr`` / ``inet6_fill_ifaddr`` count
    them: whole seconds since the lifetimes were set come off both, but only when the
    preferred lifetime is finite (with an infinite one the valid lifetime stays as set)."""
    if a.family == 2:
        infinite = a.flags & IFA_F_PERMANENT or a.valid_lft == INFINITY
    else:
        infinite = a.flags & IFA_F_PERMANENT and a.prefered_lft == INFINITY
    if infinite:
        return INFINITY, INFINITY
    preferred, valid = a.prefered_lft, a.valid_lft
    if preferred != INFINITY:
        tval = int(_now(dev) - a.tstamp)
        preferred = max(preferred - tval, 0)
        if valid != INFINITY:
            valid = max(valid - tval, 0)
    return preferred, valid


def set_ifa_lifetime(dev: Any, a: IfAddr, valid: int, prefered: int) -> None:
    """``set_ifa_lifetime`` (IPv4) / the lifetime part of ``inet6_addr_add`` and
    ``inet6_addr_modify``: a finite valid lifetime makes the address dynamic (no
    IFA_F_PERMANENT), a zero preferred one deprecated; the countdown starts now and the
    expiry check (``check_lifetime`` / ``addrconf_verify``) is scheduled on the clock."""
    a.flags &= ~(IFA_F_PERMANENT | IFA_F_DEPRECATED)
    if valid == INFINITY:
        a.flags |= IFA_F_PERMANENT
    if prefered == 0:
        a.flags |= IFA_F_DEPRECATED
    a.valid_lft, a.prefered_lft = valid, prefered
    a.tstamp = _now(dev)
    _schedule_lifetime_check(dev, a)


def _schedule_lifetime_check(dev: Any, a: IfAddr) -> None:
    ns = getattr(dev, "netns", None)
    if ns is None:
        return
    due = None
    if a.valid_lft != INFINITY:
        due = a.valid_lft
    if a.prefered_lft != INFINITY and not a.flags & IFA_F_DEPRECATED:
        due = a.prefered_lft if due is None else min(due, a.prefered_lft)
    if due is None:
        return
    stamp = a.tstamp
    wait = max(a.tstamp + due - _now(dev), 0.0)
    ns.kernel.add_timer(wait, lambda: _check_lifetime(dev, a, stamp))


def _check_lifetime(dev: Any, a: IfAddr, stamp: float) -> None:
    """``check_lifetime`` (IPv4) / ``addrconf_verify_rtnl`` (IPv6) for one address: past
    its valid lifetime it is deleted (RTM_DELADDR, its routes go); past its preferred one
    it turns deprecated, announced with RTM_NEWADDR."""
    if a.tstamp != stamp or a not in dev.addresses or getattr(dev, "netns", None) is None:
        return                          # deleted, or its lifetimes were set again
    age = _now(dev) - a.tstamp
    if a.valid_lft != INFINITY and age >= a.valid_lft:
        if a.family == 2:
            inet_del_ifa(dev, a, 0, 0)
        else:
            _del(dev, a)                # ipv6_del_addr
        return
    if a.prefered_lft != INFINITY and age >= a.prefered_lft and not a.flags & IFA_F_DEPRECATED:
        a.flags |= IFA_F_DEPRECATED
        _ifa_notify(dev, a, RTM_NEWADDR)
    _schedule_lifetime_check(dev, a)


def _ifa_notify(dev: Any, a: IfAddr, msg_type: int, seq: int = 0, portid: int = 0) -> None:
    """The netlink notification alone (the address's routes are unchanged)."""
    ns = dev.netns
    group = RTNLGRP_IPV4_IFADDR if a.family == 2 else RTNLGRP_IPV6_IFADDR
    ns.kernel.multicast(ns, NETLINK_ROUTE, group, fill_ifaddr(dev, a, seq, portid, 0, msg_type))


def rtmsg_ifa(dev: Any, a: IfAddr, msg_type: int, seq: int = 0, portid: int = 0) -> None:
    """``rtmsg_ifa`` / ``inet6_ifa_notify``: the address to its family's group, then the
    inetaddr / inet6addr notifier chain (``blocking_notifier_call_chain(&inetaddr_chain,
    NETDEV_UP or NETDEV_DOWN, ifa)``: the FIB follows, xfrmd/rtnl/fib.py), then for a new
    IPv6 address of a running device the solicited-node group (``addrconf_join_solict``)."""
    ns = dev.netns
    if ns is None:
        return
    _ifa_notify(dev, a, msg_type, seq, portid)
    ns.kernel.inetaddr_chain.call("NETDEV_UP" if msg_type == RTM_NEWADDR else "NETDEV_DOWN",
                                  a, dev=dev)
    if msg_type == RTM_NEWADDR:
        addrconf_join_solict(dev, a)


def addrconf_join_solict(dev: Any, a: IfAddr) -> None:
    """An IPv6 address of a running device starts DAD: its solicited-node group joins the
    device's multicast list (in that order; read by ``dev_mc_list`` in xfrmd/rtnl/br_fdb.py)."""
    if a.family != 10 or not dev.up or not dev.carrier:
        return
    joined = getattr(dev, "mc_solicit", None)      # transitional: until NetDevice declares it
    if joined is None:
        joined = dev.mc_solicit = []
    mac = b"\x33\x33\xff" + a.packed[13:16]
    if mac not in joined:
        joined.append(mac)


def _del(dev: Any, a: IfAddr) -> None:
    dev.addresses.remove(a)
    rtmsg_ifa(dev, a, RTM_DELADDR)


def netdev_up(dev: Any) -> None:
    """NETDEV_UP: loopback gets 127.0.0.1/8 and ::1 (inetdev_event, init_loopback); IPv6
    addresses of a device now running finish DAD (instantly here)."""
    if dev.kind == "loopback":
        if not any(a.address == "127.0.0.1" for a in dev.addresses):
            a = add_address(dev, "127.0.0.1", 8)
            a.brd = None
            rtmsg_ifa(dev, a, RTM_NEWADDR)
        if not any(a.address == "::1" for a in dev.addresses):
            rtmsg_ifa(dev, add_address(dev, "::1", 128), RTM_NEWADDR)


def netdev_down(dev: Any) -> None:
    """NETDEV_DOWN: ``addrconf_ifdown`` drops the IPv6 addresses (keep_addr_on_down=0);
    IPv4 addresses stay."""
    for a in [a for a in dev.addresses if a.family == 10]:
        _del(dev, a)


def netdev_unregister(dev: Any) -> None:
    """NETDEV_UNREGISTER: every address goes, each with RTM_DELADDR."""
    for a in list(dev.addresses):
        _del(dev, a)


def inet_dump_ifaddr(req: Request) -> Any:
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


def _parse(req: Request, new: bool) -> tuple[Any, str, int, int, bytes | None, bool]:
    """``rtm_to_ifaddr`` / ``inet6_rtm_newaddr`` and the two deladdr handlers, in the
    kernel's order: the policy parse (nlmsg_parse_deprecated), the prefix length, the
    address, then the device: (dev, address, plen, scope, brd, local_given)."""
    off = req.payload_offset
    if req.end - off < IFADDRMSG.size:
        raise KernelError(E.EINVAL, "Invalid header length")       # __nlmsg_parse
    family, plen, _flags, scope, index = IFADDRMSG.unpack_from(req.buf, off)
    if family not in (2, 10):
        # rtnetlink_rcv_msg: no handler for the family, none for PF_UNSPEC either
        raise KernelError(E.EOPNOTSUPP)
    tb = rtnl_parse(req, IFADDRMSG.size, IFA_IPV4_POLICY if family == 2 else IFA_IPV6_POLICY,
                    IFA_MAX)
    brd = tb.get(IFA_BROADCAST)
    if family == 2:
        if plen > 32 and new:
            raise KernelError(E.EINVAL, "ipv4: Invalid prefix length")
        raw = tb.get(IFA_LOCAL, tb.get(IFA_ADDRESS) if not new else None)
        if raw is None:
            raise KernelError(E.EINVAL, "ipv4: Local address is not supplied" if new else None)
        raw = raw[:4]
    else:
        if plen > 128:
            raise KernelError(E.EINVAL, "ipv6: Invalid prefix length")
        raw = tb.get(IFA_LOCAL, tb.get(IFA_ADDRESS))     # extract_addr: the local one wins
        if raw is None:
            raise KernelError(E.EINVAL)
        raw = raw[:16]
    dev = req.netns.links.by_index(index)
    if dev is None:
        raise KernelError(E.ENODEV, "ipv4: Device not found" if family == 2
                          else "ipv6: Unable to find the interface")
    return (dev, str(ipaddress.ip_address(raw)), plen, scope, brd[:4] if brd else None,
            IFA_ADDRESS in tb)


def inet_rtm_newaddr(req: Request) -> Reply:
    """``ip addr add``: EEXIST for an address the device has (with NLM_F_EXCL)."""
    dev, address, plen, scope, brd, _ = _parse(req, True)
    peer, lifetimes = _ifa_peer_and_lifetimes(req, address, True)
    for a in dev.addresses:
        if a.address == address and a.prefixlen == plen and (
                a.family == 10 or _same_subnet(a, peer or address, plen)):
            # find_matching_ifa / ipv6_add_addr_hash
            text = "ipv4: Address already assigned" if ":" not in address \
                else "ipv6: address already assigned"
            if req.hdr.flags & NLM_F_EXCL:
                raise KernelError(E.EEXIST, text)
            # NLM_F_REPLACE: new lifetimes (infinite unless given) and protocol (0 unless
            # given), announced
            set_ifa_lifetime(dev, a, *(lifetimes or (INFINITY, INFINITY)))
            a.proto = _ifa_proto(req)
            _ifa_notify(dev, a, RTM_NEWADDR, *((req.hdr.seq, req.sock.portid)
                                               if a.family == 2 else (0, 0)))
            return OK
    if ":" not in address:
        a = inet_insert_ifa(dev, address, plen, scope, peer)
    else:
        a = IfAddr(address, plen, scope, label=dev.name, peer=peer)
        # ipv6_link_dev_addr: before the first address of no smaller scope (a global one
        # goes first)
        at = next((i for i, b in enumerate(dev.addresses)
                   if b.family == 10 and b.scope >= scope), len(dev.addresses))
        dev.addresses.insert(at, a)
    a.brd = brd if a.family == 2 else None
    a.proto = _ifa_proto(req)                        # rtm_to_ifaddr / inet6_rtm_newaddr
    if a.family == 2:                                # IFA_LABEL: an alias name (eth0:1)
        for ra in kernel_attrs(req.buf, req.payload_offset + IFADDRMSG.size, req.end)[0]:
            if ra.type == IFA_LABEL and ra.end > ra.start:
                a.label = bytes(req.buf[ra.start:ra.end]).split(b"\0", 1)[0].decode(
                    errors="replace")[:15] or dev.name
    if lifetimes is not None:
        set_ifa_lifetime(dev, a, *lifetimes)
    if a.family == 10 and not (dev.up and dev.carrier):
        a.flags |= IFA_F_TENTATIVE               # DAD waits for a running device
    # IPv4: the request's seq and port (rtmsg_ifa with nlh); IPv6: 0, 0
    if a.family == 2:
        rtmsg_ifa(dev, a, RTM_NEWADDR, req.hdr.seq, req.sock.portid)
    else:
        rtmsg_ifa(dev, a, RTM_NEWADDR)
    return OK


def inet_rtm_deladdr(req: Request) -> Reply:
    dev, address, plen, _, _, with_address = _parse(req, False)
    peer, _ = _ifa_peer_and_lifetimes(req, address, False)
    for a in list(dev.addresses):
        if a.family == 2 and peer and not _same_subnet(a, peer, plen):
            continue                # inet_rtm_deladdr: IFA_ADDRESS names the peer's subnet
        # inet_rtm_deladdr compares the prefix length only when IFA_ADDRESS is given
        if a.address == address and (not plen or a.prefixlen == plen
                                     or (a.family == 2 and not with_address)):
            if a.family == 2:
                inet_del_ifa(dev, a, req.hdr.seq, req.sock.portid)
            else:
                dev.addresses.remove(a)
                rtmsg_ifa(dev, a, RTM_DELADDR)
            return OK
    # inet_rtm_deladdr / inet6_addr_del
    raise KernelError(E.EADDRNOTAVAIL, "ipv4: Address not found" if ":" not in address
                      else "ipv6: address not found")


def inet_del_ifa(dev: Any, a: IfAddr, seq: int, portid: int) -> None:
    """``__inet_del_ifa`` without promote_secondaries: a primary takes its secondaries
    along, each with RTM_DELADDR first."""
    if not a.flags & IFA_F_SECONDARY:
        net = _subnet(a)
        for b in [b for b in dev.addresses if b.family == 2 and b is not a
                  and b.flags & IFA_F_SECONDARY and b.prefixlen == a.prefixlen
                  and _subnet(b) == net]:
            dev.addresses.remove(b)
            rtmsg_ifa(dev, b, RTM_DELADDR, seq, portid)
    dev.addresses.remove(a)
    rtmsg_ifa(dev, a, RTM_DELADDR, seq, portid)


def _ifa_peer_and_lifetimes(req: Request, local: str, new: bool
                            ) -> tuple[str | None, tuple[int, int] | None]:
    """IFA_ADDRESS beside IFA_LOCAL names a point-to-point peer (``rtm_to_ifaddr``,
    ``extract_addr``); IFA_CACHEINFO carries the lifetimes, checked as ``rtm_to_ifaddr`` /
    ``inet6_rtm_newaddr`` check them: (peer or None, (valid, preferred) or None). Invalid
    lifetimes refuse a new address; a delete ignores them, and the peer with them."""
    off = req.payload_offset
    family = req.buf[off]
    peer: str | None = None
    lifetimes: tuple[int, int] | None = None
    has_local = False
    for ra in kernel_attrs(req.buf, off + IFADDRMSG.size, req.end)[0]:
        v = bytes(req.buf[ra.start:ra.end])
        if ra.type == IFA_LOCAL:
            has_local = True
        elif ra.type == IFA_ADDRESS and len(v) == (4 if family == 2 else 16):
            peer = str(ipaddress.ip_address(v))
        elif ra.type == IFA_CACHEINFO and len(v) >= 16:
            prefered, valid = struct.unpack_from("=II", v)
            if not valid or prefered > valid:
                if not new:
                    return None, None
                raise KernelError(E.EINVAL, "ipv4: address lifetime invalid" if family == 2
                                  else "ipv6: address lifetime invalid")
            lifetimes = (valid, prefered)
    if not has_local or peer == local:
        peer = None
    return peer, lifetimes


def _ifa_proto(req: Request) -> int:
    """IFA_PROTO of the request (a u8; 0 when absent)."""
    for ra in kernel_attrs(req.buf, req.payload_offset + IFADDRMSG.size, req.end)[0]:
        if ra.type == IFA_PROTO and ra.end > ra.start:
            return int(req.buf[ra.start])
    return 0


def _subnet(a: IfAddr) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    return ipaddress.ip_network(f"{a.prefix_base}/{a.prefixlen}", strict=False)


def _same_subnet(a: IfAddr, base: str, plen: int) -> bool:
    return a.prefixlen == plen and _subnet(a) == ipaddress.ip_network(f"{base}/{plen}",
                                                                         strict=False)


def inet_insert_ifa(dev: Any, address: str, plen: int, scope: int,
                    peer: str | None = None) -> IfAddr:
    """``__inet_insert_ifa``: an address in the subnet of one the device has (same mask) is
    a secondary and goes to the end of the list; a primary goes after the last primary of no
    narrower scope."""
    a = IfAddr(address, plen, scope, label=dev.name, peer=peer)
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


RTNL_MSG_HANDLERS = (
    (0, RTM_NEWADDR, inet_rtm_newaddr, None),
    (0, RTM_DELADDR, inet_rtm_deladdr, None),
    (0, RTM_GETADDR, None, inet_dump_ifaddr),
)
