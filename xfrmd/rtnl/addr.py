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

    @property
    def family(self) -> int:
        return 10 if ":" in self.address else 2

    @property
    def packed(self) -> bytes:
        return ipaddress.ip_address(self.address).packed

    def broadcast(self) -> bytes | None:
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


def fill_ifaddr(dev, a: IfAddr, seq: int, portid: int, flags: int) -> bytes:
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
    return encode_msg(RTM_NEWADDR, flags, seq, portid, body)


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


def _parse(req):
    import errno as E
    from ..netlink.core import Reply
    off = req.payload_offset
    if req.hdr.len - 16 < IFADDRMSG.size:
        return None, Reply(-E.EINVAL)
    family, plen, _flags, scope, index = IFADDRMSG.unpack_from(req.buf, off)
    local = address = None
    for ra in iter_attrs(req.buf, off + IFADDRMSG.size, req.end):
        if ra.type == IFA_LOCAL:
            local = bytes(req.buf[ra.start:ra.end])
        elif ra.type == IFA_ADDRESS:
            address = bytes(req.buf[ra.start:ra.end])
    raw = local or address
    dev = req.netns.links.by_index(index)
    if dev is None:
        return None, Reply(-E.ENODEV)
    if raw is None or family not in (2, 10) or len(raw) != (4 if family == 2 else 16):
        return None, Reply(-E.EINVAL)
    return (dev, str(ipaddress.ip_address(raw)), plen, scope), None


@rtnl_handler(RTM_NEWADDR)
def inet_rtm_newaddr(req):
    """``ip addr add``: EEXIST for an address the device has (with NLM_F_EXCL)."""
    import errno as E
    from ..netlink.core import Reply
    parsed, bad = _parse(req)
    if bad is not None:
        return bad
    dev, address, plen, scope = parsed
    for a in dev.addresses:
        if a.address == address and a.prefixlen == plen:
            return Reply(-E.EEXIST) if req.hdr.flags & 0x200 else Reply()
    a = add_address(dev, address, plen)
    a.scope = scope
    return Reply()


@rtnl_handler(RTM_DELADDR)
def inet_rtm_deladdr(req):
    import errno as E
    from ..netlink.core import Reply
    parsed, bad = _parse(req)
    if bad is not None:
        return bad
    dev, address, plen, _ = parsed
    for a in list(dev.addresses):
        if a.address == address and (not plen or a.prefixlen == plen):
            dev.addresses.remove(a)
            return Reply()
    return Reply(-E.EADDRNOTAVAIL, "Address not found" if False else None)
