"""The neighbour tables (net/core/neighbour.c with arp_tbl and nd_tbl): RTM_NEWNEIGH /
RTM_DELNEIGH / RTM_GETNEIGH for IPv4 and IPv6 entries a program adds (``ip neigh add``),
dumps in ``neigh_fill_info``'s form (an empty dump for a namespace without entries, as
Linux gives one), the errors and extack of ``neigh_add`` / ``neigh_delete`` /
``neigh_get``, RTNLGRP_NEIGH notifications, proxy entries (``pneigh_*``: ``ip neigh add
proxy``, their dump, get and delete), and the flush of a device's entries when it goes
down or away (``neigh_ifdown``). Nothing resolves addresses: only entries that were added
exist, in the state they were given."""
from __future__ import annotations

import errno as E
import ipaddress
import struct
from dataclasses import dataclass
from typing import Any

from netlink_codec.netlink import (NETLINK_ROUTE, NLM_F_MULTI, encode_msg, kernel_attrs, nla,
                                   nla_u32)

from ..errors import KernelError
from ..netlink.core import OK, Reply, Request
from .fib import RT_TABLE_LOCAL, fib, table_lookup

RTM_NEWNEIGH, RTM_DELNEIGH, RTM_GETNEIGH = 28, 29, 30
NDMSG = struct.Struct("=BxxxiHBB")          # family, ifindex, state, flags, type
NDA_DST, NDA_LLADDR, NDA_CACHEINFO, NDA_PROBES, NDA_IFINDEX, NDA_MASTER = 1, 2, 3, 4, 8, 9
NDA_PROTOCOL = 12
NUD_INCOMPLETE, NUD_REACHABLE, NUD_STALE, NUD_DELAY, NUD_PROBE = 0x01, 0x02, 0x04, 0x08, 0x10
NUD_FAILED, NUD_NOARP, NUD_PERMANENT = 0x20, 0x40, 0x80
NUD_VALID = NUD_PERMANENT | NUD_NOARP | NUD_REACHABLE | NUD_PROBE | NUD_STALE | NUD_DELAY
NTF_USE, NTF_PROXY, NTF_ROUTER = 0x01, 0x08, 0x80
RTNLGRP_NEIGH = 3
RTN_UNICAST = 1
NLM_F_REPLACE, NLM_F_EXCL, NLM_F_CREATE = 0x100, 0x200, 0x400
IFF_LOOPBACK, IFF_POINTOPOINT = 0x8, 0x10
TABLES = (2, 10)                            # arp_tbl, nd_tbl: a dump's order


@dataclass
class Neighbour:
    family: int
    dst: bytes
    dev: Any
    lladdr: bytes | None
    state: int
    flags: int = 0
    protocol: int = 0
    updated: float = 0.0
    type: int = RTN_UNICAST


RTN_LOCAL, RTN_BROADCAST, RTN_MULTICAST = 2, 3, 5


def _addr_type(ns: Any, dev: Any, family: int, dst: bytes) -> int:
    """``arp_constructor``'s ``inet_addr_type_dev_table`` (a broadcast answer while the
    local table does not exist yet, then what the local table says for this device) /
    ``ndisc_constructor`` (multicast or unicast)."""
    addr = ipaddress.ip_address(dst)
    if addr.is_multicast:
        return RTN_MULTICAST
    if family == 10:
        return RTN_UNICAST
    if int(addr) == 0 or int(addr) == 0xFFFFFFFF:
        return RTN_BROADCAST
    if fib(ns).table(2, RT_TABLE_LOCAL) is None:
        return RTN_BROADCAST
    r = table_lookup(ns, 2, RT_TABLE_LOCAL, addr, None)
    return r.type if r is not None and r.dev is dev else RTN_UNICAST


def _constructor_ha(dev: Any, ntype: int, dst: bytes) -> bytes:
    """The hardware address the constructor starts an entry with: the device's broadcast
    address for a broadcast one, the multicast mapping for a group (arp_mc_map /
    ndisc_mc_map), zeros otherwise."""
    if ntype == RTN_BROADCAST:
        return bytes(dev.broadcast)
    if ntype == RTN_MULTICAST:
        if len(dst) == 4:
            return b"\x01\x00\x5e" + bytes([dst[1] & 0x7F]) + dst[2:4]
        return b"\x33\x33" + dst[12:16]
    return bytes(len(dev.address))


def _table(ns: Any, family: int) -> list[Neighbour]:
    tbl: list[Neighbour] = ns.__dict__.setdefault("neigh_tables", {}).setdefault(family, [])
    return tbl


def _now(ns: Any) -> float:
    now: float = ns.kernel.clock.now()
    return now


def neigh_fill_info(ns: Any, n: Neighbour, msg_type: int, seq: int, portid: int,
                    flags: int) -> bytes:
    body = NDMSG.pack(n.family, n.dev.ifindex, n.state, n.flags, n.type)
    body += nla(NDA_DST, n.dst)
    if n.state & NUD_VALID and n.lladdr is not None:
        body += nla(NDA_LLADDR, n.lladdr)
    age = int((_now(ns) - n.updated) * 100)     # clock_t since confirmed / used / updated
    body += nla_u32(NDA_PROBES, 0) + nla(NDA_CACHEINFO, struct.pack("=IIII", age, age, age, 0))
    if n.protocol:
        body += nla(NDA_PROTOCOL, bytes([n.protocol]))
    return encode_msg(msg_type, flags, seq, portid, body)


def _notify(ns: Any, n: Neighbour, msg_type: int) -> None:
    ns.kernel.multicast(ns, NETLINK_ROUTE, RTNLGRP_NEIGH, neigh_fill_info(ns, n, msg_type, 0, 0, 0))


def _key(dev: Any, family: int, dst: bytes) -> bytes:
    """arp_hashfn / arp_key_eq: a loopback or point-to-point device has one IPv4 entry,
    keyed 0.0.0.0."""
    if family == 2 and dev.flags & (IFF_LOOPBACK | IFF_POINTOPOINT):
        return bytes(4)
    return dst


def _find(ns: Any, family: int, dst: bytes, dev: Any) -> Neighbour | None:
    key = _key(dev, family, dst)
    return next((n for n in _table(ns, family) if n.dev is dev and n.dst == key), None)


def _parse(req: Request) -> tuple[tuple[int, int, int, int, int], dict[int, bytes]]:
    """(ndmsg fields, attrs by type)."""
    off = req.payload_offset
    if req.end - off < NDMSG.size:
        raise KernelError(E.EINVAL, "Invalid header for neighbor message")
    family, ifindex, state, flags, ntype = NDMSG.unpack_from(req.buf, off)
    attrs = {ra.type: bytes(req.buf[ra.start:ra.end])
             for ra in kernel_attrs(req.buf, off + NDMSG.size, req.end)[0]}
    return (family, ifindex, state, flags, ntype), attrs


def _dst(family: int, attrs: dict[int, bytes]) -> bytes:
    """The table and NDA_DST checked as neigh_add / neigh_delete check them."""
    if NDA_DST not in attrs:
        raise KernelError(E.EINVAL, "Network address not specified")
    if family not in TABLES:
        raise KernelError(E.EAFNOSUPPORT)
    if len(attrs[NDA_DST]) < (4 if family == 2 else 16):
        raise KernelError(E.EINVAL, "Invalid network address")
    return attrs[NDA_DST][:4 if family == 2 else 16]


def _lookup(req: Request, unknown_dev: str | None
            ) -> tuple[Any, tuple[int, int, int, int, int], Neighbour | None]:
    """The prologue of ``neigh_delete`` / ``neigh_get``: the header, the device (ENODEV,
    with ``unknown_dev`` as the message), NDA_DST, then the entry of that device if any:
    (device, ndmsg fields, entry or None)."""
    fields, attrs = _parse(req)
    family, ifindex = fields[0], fields[1]
    ns = req.netns
    dev = ns.links.by_index(ifindex) if ifindex else None
    if ifindex and dev is None:
        raise KernelError(E.ENODEV, unknown_dev)
    dst = _dst(family, attrs)
    return dev, fields, (_find(ns, family, dst, dev) if dev is not None else None)


def neigh_add(req: Request) -> Reply:
    (family, ifindex, state, nflags, _), attrs = _parse(req)
    ns = req.netns
    dev = None
    if ifindex:
        dev = ns.links.by_index(ifindex)
        if dev is None:
            raise KernelError(E.ENODEV)
    dst = _dst(family, attrs)
    if nflags & NTF_PROXY:
        return pneigh_add(ns, family, dst, dev, nflags, state,
                          attrs.get(NDA_PROTOCOL, b"\0")[0])
    if dev is None:
        raise KernelError(E.EINVAL, "Device not specified")     # pneigh only without a device
    lladdr = attrs.get(NDA_LLADDR)
    if lladdr is not None and len(lladdr) < len(dev.address):
        raise KernelError(E.EINVAL, "Invalid link address")
    if lladdr is not None:
        lladdr = lladdr[:len(dev.address)]
    n = _find(ns, family, dst, dev)
    flags = req.hdr.flags
    if n is None:
        if not flags & NLM_F_CREATE:
            raise KernelError(E.ENOENT)
        key = _key(dev, family, dst)
        ntype = _addr_type(ns, dev, family, key)
        n = Neighbour(family, key, dev, lladdr or _constructor_ha(dev, ntype, key),
                      state or NUD_PERMANENT, nflags & NTF_ROUTER,
                      attrs.get(NDA_PROTOCOL, b"\0")[0], _now(ns), ntype)
        _table(ns, family).append(n)
        _notify(ns, n, RTM_NEWNEIGH)
        return OK
    if flags & NLM_F_EXCL:
        raise KernelError(E.EEXIST)
    n.state = state or n.state
    if lladdr is not None:
        n.lladdr = lladdr
    n.flags = (n.flags & ~NTF_ROUTER) | (nflags & NTF_ROUTER)
    n.updated = _now(ns)
    _notify(ns, n, RTM_NEWNEIGH)
    return OK


def neigh_delete(req: Request) -> Reply:
    dev, fields, n = _lookup(req, None)
    if fields[3] & NTF_PROXY:
        return pneigh_delete(req.netns, fields[0], _dst(fields[0], _parse(req)[1]), dev)
    if n is None:
        raise KernelError(E.ENOENT)
    ns = req.netns
    _table(ns, fields[0]).remove(n)
    n.state = 0                                   # neigh_update(NUD_FAILED) then the delete
    _notify(ns, n, RTM_DELNEIGH)
    return OK


def neigh_get(req: Request) -> Reply:
    dev, fields, n = _lookup(req, "Unknown device ifindex")
    if fields[3] & NTF_PROXY:
        pn = pneigh_lookup(req.netns, fields[0], _dst(fields[0], _parse(req)[1]), dev)
        if pn is None:
            raise KernelError(E.ENOENT, "Proxy neighbour entry not found")
        req.unicast(pneigh_fill_info(pn, RTM_NEWNEIGH, req.hdr.seq, req.sock.portid, 0))
        return OK
    if n is None:
        raise KernelError(E.ENOENT, "Neighbour entry not found")
    req.unicast(neigh_fill_info(req.netns, n, RTM_NEWNEIGH, req.hdr.seq, req.sock.portid, 0))
    return OK


def neigh_dump_info(req: Request) -> Any:
    """Every table for AF_UNSPEC (arp, then nd), or one; NDA_IFINDEX / NDA_MASTER filter
    (``neigh_dump_filter``)."""
    off = req.payload_offset
    family = req.buf[off] if req.end > off else 0
    ifindex = master = 0
    # a request whose whole ndmsg has exactly NTF_PROXY dumps the proxy entries instead
    proxy = req.end - off >= NDMSG.size and req.buf[off + 10] == NTF_PROXY
    if req.end - off >= NDMSG.size:
        for ra in kernel_attrs(req.buf, off + NDMSG.size, req.end)[0]:
            if ra.type in (NDA_IFINDEX, NDA_MASTER) and ra.end - ra.start >= 4:
                v = struct.unpack_from("=i", req.buf, ra.start)[0]
                if ra.type == NDA_IFINDEX:
                    ifindex = v
                else:
                    master = v
    ns = req.netns
    flags = NLM_F_MULTI | (0x20 if ifindex or master else 0)     # NLM_F_DUMP_FILTERED
    msgs = []
    for fam in TABLES:
        if family and family != fam:
            continue
        if proxy:                                       # pneigh_dump_table
            for pn in sorted(_ptable(ns, fam), key=lambda p: pneigh_hash(p.key)):
                if ifindex and (pn.dev is None or pn.dev.ifindex != ifindex):
                    continue
                if master and (pn.dev is None or pn.dev.master is None
                               or pn.dev.master.ifindex != master):
                    continue
                msgs.append(pneigh_fill_info(pn, RTM_NEWNEIGH, req.hdr.seq, req.sock.portid,
                                             flags))
            continue
        for n in _table(ns, fam):
            if ifindex and n.dev.ifindex != ifindex:
                continue
            if master and (n.dev.master is None or n.dev.master.ifindex != master):
                continue
            msgs.append(neigh_fill_info(ns, n, RTM_NEWNEIGH, req.hdr.seq, req.sock.portid, flags))
    return req.start_dump(msgs)


# -- proxy entries (struct pneigh_entry): ``ip neigh add proxy`` ------------------------

@dataclass
class PneighEntry:
    family: int
    key: bytes
    dev: Any                 # None: an entry for every device
    flags: int
    protocol: int = 0
    permanent: bool = False


def _ptable(ns: Any, family: int) -> list[PneighEntry]:
    """The table's proxy entries, newest first (each hash bucket adds at its head)."""
    tbl: list[PneighEntry] = ns.__dict__.setdefault("pneigh_tables", {}).setdefault(family, [])
    return tbl


def pneigh_hash(key: bytes) -> int:
    """``pneigh_hash``: the key's last four bytes as a (little-endian) word, folded to one
    of 16 buckets — the order a dump walks them in."""
    h = int.from_bytes(key[-4:], "little")
    h ^= h >> 16
    h ^= h >> 8
    h ^= h >> 4
    return h & 0xF


def pneigh_lookup(ns: Any, family: int, key: bytes, dev: Any) -> PneighEntry | None:
    """``__pneigh_lookup_1``: an entry of this key for the device or for every device."""
    return next((p for p in _ptable(ns, family)
                 if p.key == key and (p.dev is dev or p.dev is None)), None)


def pneigh_add(ns: Any, family: int, key: bytes, dev: Any, nflags: int, state: int,
               protocol: int) -> Reply:
    """``neigh_add`` with NTF_PROXY: ``pneigh_lookup(…, creat=1)`` finds or makes the entry
    (an existing one is updated, never EEXIST); nd_tbl's ``pndisc_constructor`` refuses an
    entry without a device, which the kernel reports as ENOBUFS."""
    pn = pneigh_lookup(ns, family, key, dev)
    if pn is None:
        if family == 10 and dev is None:
            raise KernelError(E.ENOBUFS)
        pn = PneighEntry(family, key, dev, 0)
        _ptable(ns, family).insert(0, pn)
    pn.flags = nflags
    pn.permanent = bool(state & NUD_PERMANENT)
    if protocol:
        pn.protocol = protocol
    return OK


def pneigh_delete(ns: Any, family: int, key: bytes, dev: Any) -> Reply:
    """``pneigh_delete``: the entry of exactly this key and device, else ENOENT."""
    tbl = _ptable(ns, family)
    for pn in tbl:
        if pn.key == key and pn.dev is dev:
            tbl.remove(pn)
            return OK
    raise KernelError(E.ENOENT)


def pneigh_fill_info(pn: PneighEntry, msg_type: int, seq: int, portid: int, flags: int) -> bytes:
    body = NDMSG.pack(pn.family, pn.dev.ifindex if pn.dev is not None else 0, 0,
                      (pn.flags | NTF_PROXY) & 0xFF, RTN_UNICAST)
    body += nla(NDA_DST, pn.key)
    if pn.protocol:
        body += nla(NDA_PROTOCOL, bytes([pn.protocol]))
    return encode_msg(msg_type, flags, seq, portid, body)


def neigh_ifdown(dev: Any) -> None:
    """NETDEV_DOWN / NETDEV_UNREGISTER: every entry of the device goes (neigh_flush_dev),
    announced with RTM_DELNEIGH."""
    ns = getattr(dev, "netns", None)
    if ns is None:
        return
    for fam in TABLES:
        # pneigh_ifdown_and_unlock: the device's proxy entries go too, permanent or not
        ptbl = _ptable(ns, fam)
        ptbl[:] = [p for p in ptbl if p.dev is not dev]
        tbl = _table(ns, fam)
        for n in [n for n in tbl if n.dev is dev]:
            tbl.remove(n)
            n.state = 0
            _notify(ns, n, RTM_DELNEIGH)


def neigh_netdev_event(event: str, dev: Any, **info: Any) -> None:
    """``neigh_netdev_event``: a device going down or away flushes its entries; its
    solicited-node groups go with it (``ipv6_mc_down``)."""
    if event in ("NETDEV_DOWN", "NETDEV_UNREGISTER"):
        neigh_ifdown(dev)
        dev.mc_solicit = []


RTNL_MSG_HANDLERS = (
    (0, RTM_NEWNEIGH, neigh_add, None),
    (0, RTM_DELNEIGH, neigh_delete, None),
    (0, RTM_GETNEIGH, neigh_get, neigh_dump_info),
)
