"""IPv6 address labels (``ip addrlabel``): net/ipv6/addrlabel.c's policy table of one
namespace, RTM_NEWADDRLABEL / RTM_DELADDRLABEL (``ip6addrlbl_newdel``) and RTM_GETADDRLABEL
(``ip6addrlbl_get``, ``ip6addrlbl_dump``), registered for PF_INET6 only as the kernel does.
The table starts with the RFC 6724 defaults (``ip6addrlbl_net_init``) and is kept in the
kernel's order: longer prefixes first, a device's entry before the global one of the same
length. Source address selection does not read it (xfrmd has none)."""
from __future__ import annotations

import errno as E
import ipaddress
import struct
from dataclasses import dataclass
from typing import Any

from netlink_codec.netlink import NLM_F_MULTI, encode_msg, nla, nla_u32

from ..errors import KernelError
from ..netlink.core import OK, Reply, Request
from .policy import IFAL_POLICY, rtnl_parse

RTM_NEWADDRLABEL, RTM_DELADDRLABEL, RTM_GETADDRLABEL = 72, 73, 74
IFAL_ADDRESS, IFAL_LABEL, IFAL_MAX = 1, 2, 2
IFADDRLBLMSG = struct.Struct("=BBBBII")       # family, reserved, prefixlen, flags, index, seq
NLM_F_REPLACE = 0x100
IPV6_ADDR_LABEL_DEFAULT = 0xFFFFFFFF
IPV6_ADDR_UNICAST, IPV6_ADDR_LOOPBACK, IPV6_ADDR_COMPATV4 = 0x0001, 0x0010, 0x0080
IPV6_ADDR_MAPPED = 0x1000

# ip6addrlbl_init_table, in the order ip6addrlbl_net_init adds it
INIT_TABLE = (("::", 0, 1), ("fc00::", 7, 5), ("fec0::", 10, 11), ("2002::", 16, 2),
              ("3ffe::", 16, 12), ("2001::", 32, 6), ("2001:10::", 28, 7),
              ("::ffff:0:0", 96, 4), ("::", 96, 3), ("::1", 128, 0))


@dataclass
class Ip6AddrLbl:
    """``struct ip6addrlbl_entry``."""
    prefix: int          # the address as an integer, host bits cleared
    prefixlen: int
    ifindex: int
    addrtype: int
    label: int


class Ip6AddrLblTable:
    """``net->ipv6.ip6addrlbl_table``: the entries in lookup order and the change count
    every dump and get reports as ``ifal_seq``."""

    def __init__(self) -> None:
        self.entries: list[Ip6AddrLbl] = []
        self.seq = 0
        for prefix, plen, label in INIT_TABLE:
            ip6addrlbl_add(self, ipaddress.IPv6Address(prefix).packed, plen, 0, label, False)


def addrlbl_table(ns: Any) -> Ip6AddrLblTable:
    t: Ip6AddrLblTable | None = ns.__dict__.get("ip6addrlbl_table")
    if t is None:
        t = ns.__dict__["ip6addrlbl_table"] = Ip6AddrLblTable()
    return t


def ipv6_addr_type(a: bytes) -> int:
    """The bits of ``__ipv6_addr_type`` the label table reads (the first 96 bits zero:
    unspecified, loopback or v4-compatible; ::ffff:0:0/96 v4-mapped); loopback and
    v4-compatible addresses are unicast too, a v4-mapped one is only mapped."""
    if a[:8] == bytes(8):
        if a[8:12] == bytes(4):
            v = int.from_bytes(a[12:], "big")
            return 0 if v == 0 else IPV6_ADDR_LOOPBACK | IPV6_ADDR_UNICAST if v == 1 \
                else IPV6_ADDR_COMPATV4 | IPV6_ADDR_UNICAST
        if a[8:12] == b"\0\0\xff\xff":
            return IPV6_ADDR_MAPPED
    return IPV6_ADDR_UNICAST


def _prefix(a: bytes, plen: int) -> int:
    v = int.from_bytes(a, "big")
    return v & ~((1 << (128 - plen)) - 1) & ((1 << 128) - 1) if plen < 128 else v


def ip6addrlbl_add(t: Ip6AddrLblTable, prefix: bytes, plen: int, ifindex: int, label: int,
                   replace: bool) -> None:
    """``ip6addrlbl_alloc`` + ``__ip6addrlbl_add``: the entry's address type is kept only
    where the prefix covers it exactly (a v4-mapped prefix longer than 96 is EINVAL); it goes
    before the first entry of a shorter prefix or a global one of the same length."""
    addrtype = ipv6_addr_type(prefix) & (IPV6_ADDR_MAPPED | IPV6_ADDR_COMPATV4
                                         | IPV6_ADDR_LOOPBACK)
    if addrtype == IPV6_ADDR_MAPPED:
        if plen > 96:
            raise KernelError(E.EINVAL)
        addrtype = addrtype if plen == 96 else 0
    elif addrtype == IPV6_ADDR_COMPATV4 and plen != 96 \
            or addrtype == IPV6_ADDR_LOOPBACK and plen != 128:
        addrtype = 0
    new = Ip6AddrLbl(_prefix(prefix, plen), plen, ifindex, addrtype, label)
    for i, p in enumerate(t.entries):
        if p.prefixlen == plen and p.ifindex == ifindex and p.prefix == new.prefix:
            if not replace:
                raise KernelError(E.EEXIST)
            t.entries[i] = new
            break
        if p.prefixlen == plen and not p.ifindex or p.prefixlen < plen:
            t.entries.insert(i, new)
            break
    else:
        t.entries.append(new)
    t.seq += 1


def ip6addrlbl_del(t: Ip6AddrLblTable, prefix: bytes, plen: int, ifindex: int) -> None:
    """``ip6addrlbl_del``: the entry of exactly this prefix and device, else ESRCH (the
    change count stays)."""
    key = _prefix(prefix, plen)
    for p in t.entries:
        if p.prefixlen == plen and p.ifindex == ifindex and p.prefix == key:
            t.entries.remove(p)
            return
    raise KernelError(E.ESRCH)


def _lookup(t: Ip6AddrLblTable, addr: bytes, addrtype: int, ifindex: int) -> Ip6AddrLbl | None:
    """``__ipv6_addr_label``: the first entry of the device (or any), type and prefix."""
    v = int.from_bytes(addr, "big")
    for p in t.entries:
        if p.ifindex and p.ifindex != ifindex or p.addrtype and p.addrtype != addrtype:
            continue
        if _prefix(v.to_bytes(16, "big"), p.prefixlen) == p.prefix:
            return p
    return None


def ip6addrlbl_fill(p: Ip6AddrLbl, lseq: int, seq: int, portid: int, flags: int) -> bytes:
    body = IFADDRLBLMSG.pack(10, 0, p.prefixlen, 0, p.ifindex, lseq)
    body += nla(IFAL_ADDRESS, p.prefix.to_bytes(16, "big")) + nla_u32(IFAL_LABEL, p.label)
    return encode_msg(RTM_NEWADDRLABEL, flags, seq, portid, body)


def ip6addrlbl_newdel(req: Request) -> Reply:
    tb = rtnl_parse(req, IFADDRLBLMSG.size, IFAL_POLICY, IFAL_MAX)
    family, _r, plen, _f, ifindex, _s = IFADDRLBLMSG.unpack_from(req.buf, req.payload_offset)
    if family != 10 or plen > 128 or IFAL_ADDRESS not in tb or IFAL_LABEL not in tb:
        raise KernelError(E.EINVAL)
    pfx = tb[IFAL_ADDRESS][:16]
    label = struct.unpack_from("=I", tb[IFAL_LABEL])[0]
    if label == IPV6_ADDR_LABEL_DEFAULT:
        raise KernelError(E.EINVAL)
    t = addrlbl_table(req.netns)
    if req.hdr.type == RTM_NEWADDRLABEL:
        if ifindex and req.netns.links.by_index(ifindex) is None:     # addrlbl_ifindex_exists
            raise KernelError(E.EINVAL)
        ip6addrlbl_add(t, pfx, plen, ifindex, label, bool(req.hdr.flags & NLM_F_REPLACE))
    else:
        ip6addrlbl_del(t, pfx, plen, ifindex)
    return OK


def ip6addrlbl_dump(req: Request) -> Any:
    """Every entry with the table's change count; a strict dump's header must be zero but
    for the family (``ip6addrlbl_valid_dump_req``)."""
    if req.sock.strict_chk:
        off = req.payload_offset
        if req.end - off < IFADDRLBLMSG.size:
            raise KernelError(E.EINVAL, "ipv6: Invalid header for address label dump request")
        _fam, res, plen, flags, ifindex, seq = IFADDRLBLMSG.unpack_from(req.buf, off)
        if res or plen or flags or ifindex or seq:
            raise KernelError(E.EINVAL,
                              "ipv6: Invalid values in header for address label dump request")
        if req.end - off > IFADDRLBLMSG.size:
            raise KernelError(E.EINVAL,
                              "ipv6: Invalid data after header for address label dump request")
    t = addrlbl_table(req.netns)
    return req.start_dump([ip6addrlbl_fill(p, t.seq, req.hdr.seq, req.sock.portid, NLM_F_MULTI)
                           for p in t.entries])


def ip6addrlbl_get(req: Request) -> Reply:
    """The entry an address of prefix length 128 matches. The kernel passes the address's
    whole type here (not the three bits ``ipv6_addr_label`` keeps), so of the typed entries
    only ::ffff:0:0/96 can match a get (a loopback or v4-compatible address is unicast too)."""
    off = req.payload_offset
    if req.end - off < IFADDRLBLMSG.size:
        raise KernelError(E.EINVAL, "ipv6: Invalid header for addrlabel get request")
    family, res, plen, flags, ifindex, seq = IFADDRLBLMSG.unpack_from(req.buf, off)
    if req.sock.strict_chk:                                   # ip6addrlbl_valid_get_req
        if res or flags or seq:
            raise KernelError(E.EINVAL, "ipv6: Invalid values in header for addrlabel get "
                              "request")
        tb = rtnl_parse(req, IFADDRLBLMSG.size, IFAL_POLICY, IFAL_MAX, strict=True)
        if set(tb) - {IFAL_ADDRESS}:
            raise KernelError(E.EINVAL, "ipv6: Unsupported attribute in addrlabel get request")
    else:
        tb = rtnl_parse(req, IFADDRLBLMSG.size, IFAL_POLICY, IFAL_MAX)
    if family != 10 or plen != 128:
        raise KernelError(E.EINVAL)
    if ifindex and req.netns.links.by_index(ifindex) is None:
        raise KernelError(E.EINVAL)
    if IFAL_ADDRESS not in tb:
        raise KernelError(E.EINVAL)
    addr = tb[IFAL_ADDRESS][:16]
    t = addrlbl_table(req.netns)
    p = _lookup(t, addr, ipv6_addr_type(addr), ifindex)
    if p is None:
        raise KernelError(E.ESRCH)
    req.unicast(ip6addrlbl_fill(p, t.seq, req.hdr.seq, req.sock.portid, 0))
    return OK


RTNL_MSG_HANDLERS = (
    (10, RTM_NEWADDRLABEL, ip6addrlbl_newdel, None),
    (10, RTM_DELADDRLABEL, ip6addrlbl_newdel, None),
    (10, RTM_GETADDRLABEL, ip6addrlbl_get, ip6addrlbl_dump),
)
