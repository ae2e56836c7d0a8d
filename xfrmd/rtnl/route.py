"""Routes over NETLINK_ROUTE: RTM_NEWROUTE / RTM_DELROUTE / RTM_GETROUTE for IPv4
(``inet_rtm_newroute``, ``inet_rtm_delroute``, ``inet_dump_fib``, ``inet_rtm_getroute``) and
IPv6 (``inet6_rtm_newroute``, ``inet6_rtm_delroute``, ``inet6_dump_fib``,
``inet6_rtm_getroute``) in tables of any id, with RTNLGRP_IPV4_ROUTE / RTNLGRP_IPV6_ROUTE
notifications. The tables, the kernel-made routes and the lookup are in fib.py
(:func:`xfrmd.rtnl.fib.route_lookup` is the call for Python users)."""
from __future__ import annotations

import errno as E
import ipaddress
import struct
from typing import Any, Iterator

from netlink_codec.netlink import NLM_F_MULTI, encode_msg, kernel_attrs, nla, nla_u32

from .. import kconfig
from ..errors import KernelError
from ..netlink.core import OK, Reply, Request
from .fib import (IP6_RT_PRIO_USER, FibNh, REJECT_TYPES, RT_SCOPE_HOST, RT_SCOPE_LINK,
                  RT_SCOPE_NOWHERE, RT_TABLE_COMPAT, RT_TABLE_LOCAL, RT_TABLE_MAIN, RTM_DELROUTE,
                  RTM_NEWROUTE, RTMSG, RTN_BROADCAST, RTN_LOCAL, RTN_UNICAST, Route, fib,
                  fib6_expire, fill_route, insert, remove, route_lookup, routes, rt6_fill_tail,
                  rt_notify, rta_cacheinfo)
from .policy import RTA_MAX, RTM_IPV4_POLICY, RTM_IPV6_POLICY, dump_error, rtnl_parse

# what other modules import from here (the FIB's wire form and lookup live in fib.py)
__all__ = ["fib6_expire", "fill_route", "routes", "route_lookup", "rt_notify"]

RTM_GETROUTE = 26
RTA_DST, RTA_SRC, RTA_IIF, RTA_OIF, RTA_GATEWAY, RTA_PRIORITY, RTA_PREFSRC = 1, 2, 3, 4, 5, 6, 7
RTA_METRICS, RTA_MULTIPATH, RTA_FLOW, RTA_CACHEINFO, RTA_TABLE, RTA_MARK = 8, 9, 11, 12, 15, 16
RTA_VIA, RTA_NEWDST, RTA_PREF, RTA_ENCAP_TYPE, RTA_ENCAP, RTA_EXPIRES = 18, 19, 20, 21, 22, 23
RTA_UID, RTA_NH_ID = 25, 30
NLM_F_REPLACE, NLM_F_EXCL, NLM_F_CREATE, NLM_F_APPEND = 0x100, 0x200, 0x400, 0x800
NLM_F_DUMP_FILTERED = 0x20
RTM_F_NOTIFY, RTM_F_CLONED, RTM_F_LOOKUP_TABLE, RTM_F_FIB_MATCH = 0x100, 0x200, 0x1000, 0x2000
MODELLED_TYPES4 = (RTN_UNICAST, RTN_LOCAL, RTN_BROADCAST) + REJECT_TYPES


# -- RTM_GETROUTE dump ---------------------------------------------------------------------

RTM_F_PREFIX = 0x800


def _dump_filter(req: Request) -> tuple[int, int, bool]:
    """``ip_valid_fib_dump_req``: with strict checking the header must be clean and only
    RTA_TABLE / RTA_OIF may filter the dump (parsed strictly): (table, oif, cloned)."""
    off = req.payload_offset
    table = oif = 0
    cloned = False
    strict = req.sock.strict_chk
    if req.end - off < RTMSG.size:
        if strict:
            raise KernelError(E.EINVAL, "Invalid header for FIB dump request")
        return 0, 0, False
    hdr = RTMSG.unpack_from(req.buf, off)
    cloned = bool(hdr[8] & RTM_F_CLONED)
    if not strict:
        return table, oif, cloned
    if hdr[1] or hdr[2] or hdr[3] or hdr[6]:          # dst_len, src_len, tos, scope
        raise KernelError(E.EINVAL, "Invalid values in header for FIB dump request")
    if hdr[8] & ~(RTM_F_CLONED | RTM_F_PREFIX):
        raise KernelError(E.EINVAL, "Invalid flags for FIB dump request")
    table = hdr[4]
    tb = rtnl_parse(req, RTMSG.size, RTM_IPV4_POLICY, RTA_MAX, strict=True)
    for t in sorted(tb):
        if t == RTA_TABLE:
            table = struct.unpack_from("=I", tb[t])[0]
        elif t == RTA_OIF:
            oif = struct.unpack_from("=I", tb[t])[0]
            if req.netns.links.by_index(oif) is None:
                raise KernelError(E.ENODEV)
        else:
            raise KernelError(E.EINVAL, "Unsupported attribute in dump request")
    return table, oif, cloned


# RTNL_FAMILY_IPMR / IP6MR have their RTM_GETROUTE dumpit (the empty mfc cache) only in a
# kernel with multicast routing
_MROUTE_OPTION = {128: "IP_MROUTE", 129: "IPV6_MROUTE"}


def inet_dump_fib(req: Request) -> Any:
    """``rtnl_dump_all`` over AF_INET then AF_INET6 (the IPMR / IP6MR caches are empty), or
    one family; a table that does not exist ends the dump with ENOENT."""
    ns = req.netns
    family = req.buf[req.payload_offset] if req.end > req.payload_offset else 0
    if family in _MROUTE_OPTION and not kconfig.enabled(ns.kernel, _MROUTE_OPTION[family]):
        family = 0      # rtnetlink_rcv_msg: no RTNL_FAMILY_IPMR dumpit, the PF_UNSPEC one runs
    seq, portid = req.hdr.seq, req.sock.portid
    try:
        table, oif, cloned = _dump_filter(req)
    except KernelError as err:
        return req.start_dump(dump_error(err))  # the first dumpit call fails: NLMSG_DONE says why
    fib6_expire(ns)
    f = fib(ns)

    def gen() -> Iterator[bytes]:
        for fam in (2, 10):
            if family and family != fam:
                continue
            if cloned:              # the route cache: nothing cached here
                continue
            flags = NLM_F_MULTI | (NLM_F_DUMP_FILTERED if (table or oif) else 0)
            if table and f.table(fam, table) is None:
                if family:
                    raise KernelError(E.ENOENT, ("ipv4" if fam == 2 else "ipv6")
                                      + ": FIB table does not exist")
                continue
            for tb_id, tbl in f.dump_order(fam):
                if table and tb_id != table:
                    continue
                for r in list(tbl):
                    if oif and (r.dev is None or r.dev.ifindex != oif):
                        continue
                    yield fill_route(ns, r, RTM_NEWROUTE, seq, portid, flags)
    return req.start_dump(gen())


# -- RTM_GETROUTE (ip route get) --------------------------------------------------------------

def _get_attrs(req: Request) -> tuple[tuple[int, ...], dict[int, bytes]]:
    """The rtmsg and the attributes of a route get: (header fields, attributes)."""
    off = req.payload_offset
    if req.end - off < RTMSG.size:
        fam = req.buf[off] if req.end > off else 0
        raise KernelError(E.EINVAL, "ipv6: Invalid header for get route request" if fam == 10
                          else "ipv4: Invalid header for route get request")
    hdr = RTMSG.unpack_from(req.buf, off)
    # inet_rtm_valid_getroute_req / inet6_rtm_valid_getroute_req: the family's policy; on a
    # socket with NETLINK_GET_STRICT_CHK (iproute2's) also a clean header, a strict parse and
    # only the attributes a lookup uses
    v6 = hdr[0] == 10
    strict = req.sock.strict_chk
    fam, dst_len, src_len, _tos, table, proto, scope, rtype, rflags = hdr
    full = 128 if v6 else 32
    if strict and ((src_len and src_len != full) or (dst_len and dst_len != full) or table
                   or proto or scope or rtype):
        raise KernelError(E.EINVAL, "ipv6: Invalid values in header for get route request" if v6
                          else "ipv4: Invalid values in header for route get request")
    if strict and rflags & ~(RTM_F_FIB_MATCH if v6 else (RTM_F_NOTIFY | RTM_F_LOOKUP_TABLE
                                                           | RTM_F_FIB_MATCH)):
        raise KernelError(E.EINVAL, "ipv6: Invalid flags for get route request" if v6
                          else "ipv4: Unsupported rtm_flags for route get request")
    a = rtnl_parse(req, RTMSG.size, RTM_IPV6_POLICY if v6 else RTM_IPV4_POLICY,
                   RTA_MAX, strict=strict)
    if strict:
        if (RTA_SRC in a and not src_len) or (RTA_DST in a and not dst_len):
            raise KernelError(E.EINVAL,
                              "ipv6: rtm_src_len and rtm_dst_len must be 128 for IPv6" if v6
                              else "ipv4: rtm_src_len and rtm_dst_len must be 32 for IPv4")
        extra = set(a) - _GETROUTE_ATTRS
        if v6 and extra == {RTA_FLOWLABEL} and len(a[RTA_FLOWLABEL]) >= 4:
            # inet6_rtm_valid_getroute_req (6.18): a flow label within IPV6_FLOWLABEL_MASK
            if int.from_bytes(a[RTA_FLOWLABEL][:4], "big") & ~IPV6_FLOWLABEL_MASK:
                off = next(ra.offset for ra in kernel_attrs(req.buf, off + RTMSG.size,
                                                            req.end)[0]
                           if ra.type == RTA_FLOWLABEL)
                raise KernelError(E.EINVAL, "Invalid flow label", offset=off - req.hdr.offset)
            extra = set()
        if extra:
            raise KernelError(E.EINVAL, "ipv6: Unsupported attribute in get route request" if v6
                              else "ipv4: Unsupported attribute in route get request")
    return hdr, a


# what a strict route get may carry: RTA_SRC, RTA_DST, RTA_IIF, RTA_OIF, RTA_MARK, RTA_UID,
# RTA_IP_PROTO, RTA_SPORT, RTA_DPORT
_GETROUTE_ATTRS = {2, 1, 3, 4, 16, 25, 27, 28, 29}
RTM_F_NOTIFY = 0x100
RTA_FLOWLABEL, IPV6_FLOWLABEL_MASK = 31, 0x000FFFFF


def _u32(a: dict[int, bytes], t: int) -> int | None:
    v = a.get(t)
    return struct.unpack("=I", v[:4])[0] if v and len(v) >= 4 else None


def inet_rtm_getroute(req: Request) -> Reply:
    """``ip route get``: the lookup through the rules with the flow's source, input or
    output device and mark; the answer as ``rt_fill_info`` / ``rt6_fill_node`` write it."""
    hdr, a = _get_attrs(req)
    fam = hdr[0]
    if fam == 10 and any(len(a.get(t, b"\0" * 16)) < 16 for t in (RTA_SRC, RTA_DST)):
        raise KernelError(E.EINVAL)          # inet6_rtm_getroute: short RTA_SRC / RTA_DST
    rflags = hdr[8]
    ns = req.netns
    alen = 16 if fam == 10 else 4
    zero = "::" if fam == 10 else "0.0.0.0"
    dst = ipaddress.ip_address(a[RTA_DST][:alen]) if len(a.get(RTA_DST, b"")) >= alen \
        else ipaddress.ip_address(zero)
    src = ipaddress.ip_address(a[RTA_SRC][:alen]) if len(a.get(RTA_SRC, b"")) >= alen else None
    iif, oif, mark = (_u32(a, t) or 0 for t in (RTA_IIF, RTA_OIF, RTA_MARK))
    uid = _u32(a, RTA_UID) if RTA_UID in a else (None if iif else req.sock.uid)
    if iif and ns.links.by_index(iif) is None:
        raise KernelError(E.ENODEV)
    if oif and ns.links.by_index(oif) is None:
        raise KernelError(E.ENODEV)
    if fam == 10:
        fib6_expire(ns)
        return _getroute6(req, dst, src, iif, oif, mark)
    if rflags & RTM_F_FIB_MATCH:
        raise KernelError(E.EOPNOTSUPP, "xfrmd: route get fibmatch is not modelled")
    res = route_lookup(ns, dst, src=src, iif=iif or None, oif=oif or None, mark=mark,
                       tos=hdr[3])
    if isinstance(res, int):
        raise KernelError(E.EINVAL if (iif and res == -E.EINVAL) else -res)
    table_id = RT_TABLE_MAIN
    if rflags & RTM_F_LOOKUP_TABLE:
        table_id = res.table
    # rt_fill_info (6.18): rtm_tos is 0 whatever tos the lookup used
    body = RTMSG.pack(2, 32, 0, 0, table_id if table_id < 256 else RT_TABLE_COMPAT, 0, 0,
                      res.type, (res.flags & ~0xFFFF) | RTM_F_CLONED)
    body += nla_u32(RTA_TABLE, table_id) + nla(RTA_DST, dst.packed)
    if src is not None:
        body = body[:2] + b"\x20" + body[3:]          # rtm_src_len = 32
        body += nla(RTA_SRC, src.packed)
    if res.dev is not None:
        body += nla_u32(RTA_OIF, res.dev.ifindex)
    if not iif and res.src and (src is None or str(src) != res.src):
        body += nla(RTA_PREFSRC, ipaddress.ip_address(res.src).packed)
    if res.gw:
        body += nla(RTA_GATEWAY, ipaddress.ip_address(res.gw).packed)
    if mark:
        body += nla_u32(RTA_MARK, mark)
    if uid is not None:
        body += nla_u32(RTA_UID, uid)
    if iif:
        body += nla_u32(RTA_IIF, iif)
    body += rta_cacheinfo()
    req.unicast(encode_msg(RTM_NEWROUTE, 0, req.hdr.seq, req.sock.portid, body))
    return OK


def _getroute6(req: Request, dst: Any, src: Any, iif: int, oif: int, mark: int) -> Reply:
    ns = req.netns
    res = route_lookup(ns, dst, src=src, iif=iif or None, oif=oif or None, mark=mark)
    if isinstance(res, int):
        raise KernelError(-res)
    r = res.route
    assert r is not None            # an IPv6 lookup answers with a route or an errno
    body = RTMSG.pack(10, 128, 128, 0, r.table if r.table < 256 else RT_TABLE_COMPAT, r.proto, 0,
                      r.type, 0)
    body += nla_u32(RTA_TABLE, r.table) + nla(RTA_DST, dst.packed)
    body += nla(RTA_SRC, (src or ipaddress.IPv6Address("::")).packed)
    if iif:
        body += nla_u32(RTA_IIF, iif)
    elif res.src:                        # ip6_route_get_saddr for the destination
        body += nla(RTA_PREFSRC, ipaddress.IPv6Address(res.src).packed)
    # then the route's own preferred source again and the rest as rt6_fill_node writes it;
    # the answer is a dst the lookup holds a reference on as the reply is made: clntref 2
    body += rt6_fill_tail(ns, r, res.dev, clntref=2)
    req.unicast(encode_msg(RTM_NEWROUTE, 0, req.hdr.seq, req.sock.portid, body))
    return OK


# -- RTM_NEWROUTE / RTM_DELROUTE ------------------------------------------------------------

def _rtm_to_config(req: Request) -> dict[str, Any]:
    """``rtm_to_fib_config`` / ``rtm_to_fib6_config``: the request as a route description."""
    off = req.payload_offset
    if req.end - off < RTMSG.size:
        raise KernelError(E.EINVAL)          # nlmsg_validate_deprecated: no message
    fam, dst_len, src_len, tos, table, proto, scope, rtype, _fl = RTMSG.unpack_from(req.buf, off)
    if fam not in (2, 10):
        raise KernelError(E.EAFNOSUPPORT)
    alen = 4 if fam == 2 else 16
    cfg: dict[str, Any] = {
        "family": fam, "dst_len": dst_len, "src_len": src_len, "tos": tos, "table": table,
        "proto": proto, "scope": scope, "type": rtype, "oif": 0, "gw": None, "src": None,
        "metric": 0, "dst": 0, "expires": None}
    tb = rtnl_parse(req, RTMSG.size, RTM_IPV4_POLICY if fam == 2 else RTM_IPV6_POLICY, RTA_MAX)
    if fam == 10:
        # rtm_to_fib6_config: RTA_DST / RTA_SRC must hold the prefix length's bytes
        for t, plen in ((RTA_DST, dst_len), (RTA_SRC, src_len)):
            if t in tb and len(tb[t]) < (plen + 7) >> 3:
                raise KernelError(E.EINVAL)
    for t in sorted(tb):
        v = tb[t]
        if t == RTA_DST:
            # IPv4 reads four bytes; IPv6 copies the prefix length's bytes (nla_memcpy)
            n = alen if fam == 2 else (dst_len + 7) >> 3
            cfg["dst"] = int.from_bytes(v[:n].ljust(alen, b"\0"), "big")
        elif t == RTA_OIF:
            cfg["oif"] = struct.unpack_from("=I", v)[0]
        elif t == RTA_GATEWAY and len(v) >= alen:
            cfg["gw"] = str(ipaddress.ip_address(v[:alen]))
        elif t == RTA_PREFSRC:
            cfg["src"] = str(ipaddress.ip_address(v[:alen]))
        elif t == RTA_PRIORITY:
            cfg["metric"] = struct.unpack_from("=I", v)[0]
        elif t == RTA_TABLE:
            cfg["table"] = struct.unpack_from("=I", v)[0]
        elif t == RTA_EXPIRES and fam == 10:
            # addrconf_timeout_fixup: 0xFFFFFFFF is an infinite lifetime, no RTF_EXPIRES
            exp = struct.unpack_from("=I", v)[0]
            cfg["expires"] = None if exp == 0xFFFFFFFF else exp
        elif t == RTA_METRICS and len(v) > 0 or t == RTA_FLOW:
            raise KernelError(E.EOPNOTSUPP, "xfrmd: route metrics and realms are not modelled")
        elif t == RTA_PREF and v[:1] not in (b"", b"\x00"):
            raise KernelError(E.EOPNOTSUPP, "xfrmd: IPv6 route preferences other than medium "
                              "are not modelled")
        elif t == RTA_MULTIPATH and fam == 2:
            cfg["mp"] = _fib_get_nhs(v)
        elif t in (RTA_MULTIPATH, RTA_VIA, RTA_ENCAP, RTA_NH_ID, RTA_NEWDST):
            raise KernelError(E.EOPNOTSUPP, "xfrmd: IPv6 multipath, via, encap and "
                              "nexthop-object routes are not modelled")
    if _fl & 4:                                          # RTNH_F_ONLINK
        raise KernelError(E.EOPNOTSUPP, "xfrmd: onlink nexthops are not modelled")
    if dst_len > alen * 8:
        # fib_table_insert, ip6_route_info_create
        raise KernelError(E.EINVAL, "Invalid prefix length")
    if fam == 10 and src_len > 128:
        raise KernelError(E.EINVAL, "Invalid source address length")
    if fam == 10 and src_len:
        raise KernelError(E.EOPNOTSUPP, "xfrmd: source-specific IPv6 routes are not modelled")
    return cfg


RTNH = struct.Struct("=HBBi")       # struct rtnexthop: len, flags, hops, ifindex
RTNH_F_DEAD, RTNH_F_ONLINK, RTNH_F_LINKDOWN = 1, 4, 16


def _fib_get_nhs(v: bytes) -> list[tuple[int, int, int, str | None]]:
    """``fib_count_nexthops`` + ``fib_get_nhs``: the RTA_MULTIPATH payload as (ifindex,
    flags, weight, gateway) per ``struct rtnexthop``."""
    out = []
    off = 0
    while len(v) - off >= RTNH.size:
        ln, flags, hops, ifindex = RTNH.unpack_from(v, off)
        if ln < RTNH.size or ln > len(v) - off:
            break
        gw = None
        attrs = v[off + RTNH.size:off + ln]
        types: dict[int, bytes] = {}
        a = 0
        while len(attrs) - a >= 4:
            alen, atype = struct.unpack_from("=HH", attrs, a)
            if alen < 4 or alen > len(attrs) - a:
                break
            types.setdefault(atype & 0x3FFF, attrs[a + 4:a + alen])
            a += (alen + 3) & ~3
        if RTA_GATEWAY in types and RTA_VIA in types:
            raise KernelError(E.EINVAL, "Nexthop configuration can not contain both GATEWAY "
                              "and VIA")
        if RTA_VIA in types or RTA_ENCAP in types or RTA_FLOW in types:
            raise KernelError(E.EOPNOTSUPP, "xfrmd: via, encap and realms in multipath "
                              "nexthops are not modelled")
        if RTA_GATEWAY in types:
            if len(types[RTA_GATEWAY]) < 4:               # fib_gw_from_attr
                raise KernelError(E.EINVAL, "Invalid IPv4 address in RTA_GATEWAY")
            g = ipaddress.IPv4Address(types[RTA_GATEWAY][:4])
            gw = str(g) if int(g) else None
        out.append((ifindex, flags, hops + 1, gw))
        off += (ln + 3) & ~3
    if len(v) - off > 0 or not out:
        raise KernelError(E.EINVAL, "Invalid nexthop configuration - extra data after nexthops")
    for _ifindex, flags, _w, _gw in out:
        if flags & (RTNH_F_DEAD | RTNH_F_LINKDOWN):
            raise KernelError(E.EINVAL, "Invalid flags for nexthop - can not contain DEAD or "
                              "LINKDOWN")
        if flags & RTNH_F_ONLINK:
            raise KernelError(E.EOPNOTSUPP, "xfrmd: onlink nexthops are not modelled")
    return out


def _check_nh4(ns: Any, cfg: dict[str, Any], oif: int, gw: str | None) -> Any:
    """``fib_check_nh``: a gateway reached by a link-scope route (on ``oif`` if given), or
    a device that is up; the nexthop's device."""
    dev = None
    if oif:
        dev = ns.links.by_index(oif)
        if dev is None:
            raise KernelError(E.ENODEV)
    if gw:
        via = _gw_route(ns, gw, cfg["table"], oif)
        if via is None:
            raise KernelError(E.EINVAL, "Nexthop has invalid gateway")
        return dev or via.dev
    if dev is None:
        raise KernelError(E.ENODEV)
    if not dev.up:
        raise KernelError(E.ENETDOWN, "Nexthop device is not up")
    return dev


def _key_ok(cfg: dict[str, Any]) -> bool:
    """``fib_valid_key_len``: no host bits under the prefix length."""
    plen = cfg["dst_len"]
    mask = ((1 << 32) - 1) ^ ((1 << (32 - plen)) - 1) if plen else 0
    return not cfg["dst"] & ~mask & 0xFFFFFFFF


def _gw_route(ns: Any, gw: str, table: int, oif: int) -> Route | None:
    """``fib_check_nh_v4_gw``: the gateway must be reached, in the route's table or else
    through the rules, by a route of link or host scope (no gateway of its own) whose type
    is unicast or local, on ``oif`` when one is given."""
    a = ipaddress.IPv4Address(gw)
    tables = ([table] if table and table != RT_TABLE_MAIN else []) + [RT_TABLE_LOCAL, RT_TABLE_MAIN]
    for tb in tables:
        best = None
        for r in fib(ns).table(2, tb) or []:
            if a not in r.dst or r.gw or r.scope < RT_SCOPE_LINK:
                continue
            if r.dev is not None and not r.dev.up and r.type != RTN_LOCAL:
                continue
            if oif and (r.dev is None or r.dev.ifindex != oif):
                continue
            if best is None or r.dst.prefixlen > best.dst.prefixlen:
                best = r
        if best is not None:
            return best if best.type in (RTN_UNICAST, RTN_LOCAL) else None
    return None


def _local_addr(ns: Any, addr: str, family: int, *, dev: Any = None, usable: bool = True) -> bool:
    for d in ns.links:
        if dev is not None and d is not dev:
            continue
        for a in d.addresses:
            if a.family == family and a.address == addr and not (usable and a.flags & 0x40):
                return True
    return False


def _newroute4(req: Request, cfg: dict[str, Any]) -> Reply:
    ns = req.netns
    rtype = cfg["type"] or RTN_UNICAST
    if rtype not in MODELLED_TYPES4:
        raise KernelError(E.EOPNOTSUPP, "xfrmd: only unicast, local, broadcast and reject routes "
                          "are modelled")
    if cfg["scope"] > RT_SCOPE_HOST:
        raise KernelError(E.EINVAL, "Invalid scope")
    if not _key_ok(cfg):                                   # fib_table_insert
        raise KernelError(E.EINVAL, "Invalid prefix for given prefix length")
    dev = None
    mp = cfg.get("mp")
    if mp:                                                 # fib_get_nhs
        if cfg["oif"] and mp[0][0] != cfg["oif"]:
            raise KernelError(E.EINVAL, "Nexthop device index does not match RTA_OIF")
        if cfg["gw"] and mp[0][3] != cfg["gw"]:
            raise KernelError(E.EINVAL, "Nexthop gateway does not match RTA_GATEWAY or "
                              "RTA_VIA")
    if mp and rtype in REJECT_TYPES:
        raise KernelError(E.EINVAL, "Gateway, device and multipath can not be specified for "
                          "this route type")
    if mp and len(mp) > 1 and cfg["scope"] == RT_SCOPE_HOST:
        raise KernelError(E.EINVAL, "Route with host scope can not have multiple nexthops")
    nhs = None
    if mp and len(mp) > 1:
        nhs = [FibNh(gw, _check_nh4(ns, cfg, oif, gw), w) for oif, _f, w, gw in mp]
    elif mp:                              # one nexthop: an ordinary route
        cfg["oif"], cfg["gw"] = mp[0][0], mp[0][3]
    if nhs:
        dev = nhs[0].dev
    elif rtype in REJECT_TYPES:                            # fib_create_info
        if cfg["gw"] or cfg["oif"]:
            raise KernelError(E.EINVAL, "Gateway, device and multipath can not be specified for "
                              "this route type")
    elif cfg["scope"] == RT_SCOPE_HOST:                    # fib_check_nh, host scope
        if cfg["gw"]:
            raise KernelError(E.EINVAL, "Route with host scope can not have a gateway")
        dev = ns.links.by_index(cfg["oif"]) if cfg["oif"] else None
        if dev is None:
            raise KernelError(E.ENODEV, "Nexthop device required for host scope")
    else:
        if cfg["oif"]:
            dev = ns.links.by_index(cfg["oif"])
            if dev is None:
                raise KernelError(E.ENODEV)
        if cfg["gw"]:
            via = _gw_route(ns, cfg["gw"], cfg["table"], cfg["oif"])
            if via is None:
                raise KernelError(E.EINVAL, "Nexthop has invalid gateway")
            dev = dev or via.dev
        elif dev is None:
            raise KernelError(E.ENODEV)
        elif not dev.up:
            raise KernelError(E.ENETDOWN, "Nexthop device is not up")
    dst = ipaddress.ip_network((cfg["dst"], cfg["dst_len"]))
    if cfg["src"] and not (rtype == RTN_LOCAL and cfg["src"] == str(dst.network_address)) \
            and not _local_addr(ns, cfg["src"], 2, usable=False):       # fib_valid_prefsrc
        raise KernelError(E.EINVAL, "Invalid prefsrc address")
    table_id = cfg["table"] or RT_TABLE_MAIN
    new = Route(dst, dev, nhs[0].gw if nhs else cfg["gw"], cfg["src"], table_id, rtype,
                cfg["proto"], cfg["scope"], cfg["metric"], cfg["tos"], nhs=nhs)
    return _insert_checked(req, new)


def _insert_checked(req: Request, new: Route) -> Reply:
    """``fib_table_insert`` / ``fib6_add_rt2node``: EXCL, REPLACE, CREATE and APPEND."""
    ns = req.netns
    flags = req.hdr.flags
    tbl = fib(ns).table(new.family, new.table)
    same = [r for r in (tbl or []) if r.dst == new.dst and r.metric == new.metric
            and r.tos == new.tos]
    if same:
        if flags & NLM_F_EXCL:
            raise KernelError(E.EEXIST)
        if flags & NLM_F_REPLACE:
            assert tbl is not None
            old = same[0]
            tbl[tbl.index(old)] = new
            rt_notify(ns, RTM_NEWROUTE, new, req.hdr.seq, req.sock.portid, NLM_F_REPLACE)
            return OK
        if any(r.same(new) for r in same):
            raise KernelError(E.EEXIST)      # fib_find_alias / rt6_duplicate_nexthop
        if new.family == 10:
            raise KernelError(E.EOPNOTSUPP, "xfrmd: IPv6 multipath routes are not modelled")
    if not flags & NLM_F_CREATE:
        if new.family == 10 and flags & NLM_F_REPLACE:
            raise KernelError(E.ENOENT, "Can not replace route - no match found")
        raise KernelError(E.ENOENT)
    nl = NLM_F_CREATE | (NLM_F_EXCL if not same or new.family == 10 else 0)
    if new.family == 10 and flags & NLM_F_APPEND:
        nl = NLM_F_CREATE | NLM_F_APPEND
    insert(ns, new, nlflags=nl, append=bool(flags & NLM_F_APPEND), seq=req.hdr.seq,
           portid=req.sock.portid)
    return OK


def _ip6_route_check_nh(ns: Any, gw: str, table: int, dev: Any) -> Route | None:
    """``ip6_nh_lookup_table`` / ``ip6_route_check_nh``: the gateway must be reached by a
    route without a gateway (on ``dev`` when one is given)."""
    a = ipaddress.IPv6Address(gw)
    for tb in ([table] if table else []) + [RT_TABLE_MAIN]:
        best = None
        for r in fib(ns).table(10, tb) or []:
            if a in r.dst and (best is None or r.dst.prefixlen > best.dst.prefixlen):
                best = r
        if best is not None:
            if best.gw or best.type != RTN_UNICAST or (dev is not None and best.dev is not dev):
                return None
            return best
    return None


def _newroute6(req: Request, cfg: dict[str, Any]) -> Reply:
    """``ip6_route_info_create`` → ``fib6_nh_init`` / ``ip6_validate_gw``."""
    ns = req.netns
    rtype = cfg["type"] or RTN_UNICAST
    if rtype != RTN_UNICAST:
        raise KernelError(E.EOPNOTSUPP, "xfrmd: only unicast IPv6 routes can be added")
    dev = None
    if cfg["oif"]:
        dev = ns.links.by_index(cfg["oif"])
        if dev is None:
            raise KernelError(E.ENODEV)
    if cfg["gw"]:
        gw = ipaddress.IPv6Address(cfg["gw"])
        if _local_addr(ns, cfg["gw"], 10, dev=dev, usable=False):
            raise KernelError(E.EINVAL, "Gateway can not be a local address")
        if not gw.is_link_local:
            if gw.is_multicast or gw.is_unspecified:
                raise KernelError(E.EINVAL, "Invalid gateway address")
            via = _ip6_route_check_nh(ns, cfg["gw"], cfg["table"], dev)
            if via is None:
                raise KernelError(E.EHOSTUNREACH)
            dev = dev or via.dev
        if dev is None:
            raise KernelError(E.EINVAL, "Egress device not specified")
        if dev.kind == "loopback":
            raise KernelError(E.EINVAL, "Egress device can not be loopback device for this route")
    if dev is None:
        raise KernelError(E.ENODEV)
    if not dev.up:
        raise KernelError(E.ENETDOWN, "Nexthop device is not up")
    if cfg["src"] and not _local_addr(ns, cfg["src"], 10, dev=None):
        raise KernelError(E.EINVAL, "Invalid source address")
    plen = cfg["dst_len"]
    mask = ((1 << 128) - 1) ^ ((1 << (128 - plen)) - 1) if plen else 0
    dst = ipaddress.IPv6Network((cfg["dst"] & mask, plen))   # ipv6_addr_prefix: host bits go
    exp = ns.kernel.clock.now() + cfg["expires"] if cfg["expires"] else None
    new = Route(dst, dev, cfg["gw"], cfg["src"], cfg["table"] or RT_TABLE_MAIN, RTN_UNICAST,
                cfg["proto"], 0, cfg["metric"] or IP6_RT_PRIO_USER, expires=exp,
                linkdown=not dev.carrier)
    res = _insert_checked(req, new)
    if exp is not None:                            # the fib6 GC timer (fib6_run_gc)
        ns.kernel.add_timer(cfg["expires"], lambda: fib6_expire(ns))
    return res


def inet_rtm_newroute(req: Request) -> Reply:
    cfg = _rtm_to_config(req)
    if cfg["family"] == 10:
        fib6_expire(req.netns)
        return _newroute6(req, cfg)
    return _newroute4(req, cfg)


def inet_rtm_delroute(req: Request) -> Reply:
    cfg = _rtm_to_config(req)
    ns = req.netns
    fam = cfg["family"]
    tbl = fib(ns).table(fam, cfg["table"] or RT_TABLE_MAIN)
    if tbl is None:
        raise KernelError(E.ESRCH, "FIB table does not exist")
    if fam == 2:
        if not _key_ok(cfg):
            raise KernelError(E.EINVAL, "Invalid prefix for given prefix length")
        dst = ipaddress.ip_network((cfg["dst"], cfg["dst_len"]))
    else:
        fib6_expire(ns)
        plen = cfg["dst_len"]
        mask = ((1 << 128) - 1) ^ ((1 << (128 - plen)) - 1) if plen else 0
        dst = ipaddress.IPv6Network((cfg["dst"] & mask, plen))
    for r in list(tbl):                                  # fib_table_delete / ip6_route_del
        if r.dst != dst:
            continue
        if cfg["metric"] and r.metric != cfg["metric"]:
            continue
        if cfg["proto"] and r.proto != cfg["proto"]:
            continue
        if cfg.get("mp") and not _fib_nh_match(cfg["mp"], r):
            continue
        if cfg["oif"] and (r.dev is None or r.dev.ifindex != cfg["oif"]):
            continue
        if cfg["gw"] and r.gw != cfg["gw"]:
            continue
        if fam == 2:
            if cfg["type"] and r.type != cfg["type"]:
                continue
            if cfg["scope"] != RT_SCOPE_NOWHERE and r.scope != cfg["scope"]:
                continue
            if cfg["src"] and r.prefsrc != cfg["src"]:
                continue
        remove(ns, r, seq=req.hdr.seq, portid=req.sock.portid)
        return OK
    raise KernelError(E.ESRCH)


def _fib_nh_match(mp: list[tuple[int, int, int, str | None]], r: Route) -> bool:
    """``fib_nh_match`` for RTA_MULTIPATH: nexthop by nexthop, an ifindex or gateway given
    must be the route's."""
    nhs = r.nhs or [FibNh(r.gw, r.dev)]
    if len(mp) != len(nhs):
        return False
    return all((not oif or (nh.dev is not None and nh.dev.ifindex == oif))
               and (gw is None or gw == nh.gw) for (oif, _f, _w, gw), nh in zip(mp, nhs))


RTNL_MSG_HANDLERS = (
    (0, RTM_NEWROUTE, inet_rtm_newroute, None),
    (0, RTM_DELROUTE, inet_rtm_delroute, None),
    (0, RTM_GETROUTE, inet_rtm_getroute, inet_dump_fib),
)
