"""Routes: RTM_GETROUTE dumps of the connected routes the addresses imply and of configured
routes; ``ip route get`` style lookups (fib_table_lookup, longest prefix)."""
from __future__ import annotations

import errno as E
import ipaddress
import struct

from netlink_codec.netlink import NLM_F_MULTI, encode_msg, iter_attrs, nla, nla_u32

from ..netlink.core import Reply
from . import rtnl_handler

RTM_NEWROUTE, RTM_GETROUTE = 24, 26
RTMSG = struct.Struct("=BBBBBBBBI")
RTA_DST, RTA_OIF, RTA_GATEWAY, RTA_PREFSRC, RTA_CACHEINFO, RTA_TABLE, RTA_UID = 1, 4, 5, 7, 12, 15, 25
RTM_F_CLONED = 0x200
RT_TABLE_MAIN = 254
RTPROT_KERNEL, RTPROT_BOOT = 2, 3
RT_SCOPE_UNIVERSE, RT_SCOPE_LINK = 0, 253
RTN_UNICAST = 1


def routes(ns) -> list[dict]:
    """Main-table routes: one connected route per address (prefix route), then the
    topology's configured routes."""
    out = []
    for dev in ns.links:
        if not dev.up:
            continue
        for a in dev.addresses:
            if a.address.startswith("127.") or a.address == "::1":
                continue
            net = ipaddress.ip_network(f"{a.address}/{a.prefixlen}", strict=False)
            if net.prefixlen == net.max_prefixlen:
                continue        # fib_add_ifaddr: no prefix route for a host address
            out.append({"dst": net, "dev": dev, "src": a.address, "gw": None,
                        "proto": RTPROT_KERNEL, "scope": RT_SCOPE_LINK})
    for r in getattr(ns, "routes", []):
        out.append(r)
    # the FIB trie walks keys in order: by network address, then prefix length
    out.sort(key=lambda r: (r["dst"].version, int(r["dst"].network_address), r["dst"].prefixlen))
    return out


def fill_route(r: dict, seq: int, portid: int, flags: int, *, dst_host=None) -> bytes:
    """``fib_dump_info`` for table routes; ``rt_fill_info`` (a cloned route: uid, cache
    info) for ``route get`` answers."""
    net = r["dst"]
    fam = 2 if net.version == 4 else 10
    if dst_host is not None:
        body = RTMSG.pack(fam, net.max_prefixlen, 0, 0, RT_TABLE_MAIN, 0, 0, RTN_UNICAST,
                          RTM_F_CLONED)
        body += nla_u32(RTA_TABLE, RT_TABLE_MAIN) + nla(RTA_DST, dst_host.packed)
        body += nla_u32(RTA_OIF, r["dev"].ifindex)
        if r.get("src"):
            body += nla(RTA_PREFSRC, ipaddress.ip_address(r["src"]).packed)
        if r.get("gw"):
            body += nla(RTA_GATEWAY, ipaddress.ip_address(r["gw"]).packed)
        body += nla_u32(RTA_UID, 0) + nla(RTA_CACHEINFO, bytes(32))
        return encode_msg(RTM_NEWROUTE, flags, seq, portid, body)
    body = RTMSG.pack(fam, net.prefixlen, 0, 0, RT_TABLE_MAIN, r["proto"], r["scope"],
                      RTN_UNICAST, 0)
    body += nla_u32(RTA_TABLE, RT_TABLE_MAIN)
    if net.prefixlen:
        body += nla(RTA_DST, net.network_address.packed)
    if r.get("src") and r["proto"] == RTPROT_KERNEL:
        body += nla(RTA_PREFSRC, ipaddress.ip_address(r["src"]).packed)
    if r.get("gw"):
        body += nla(RTA_GATEWAY, ipaddress.ip_address(r["gw"]).packed)
    body += nla_u32(RTA_OIF, r["dev"].ifindex)
    return encode_msg(RTM_NEWROUTE, flags, seq, portid, body)


@rtnl_handler(RTM_GETROUTE, dump=True)
def inet_dump_fib(req):
    family = req.buf[req.payload_offset] if req.hdr.len > 16 else 0
    seq, portid = req.hdr.seq, req.sock.portid
    msgs = [fill_route(r, seq, portid, NLM_F_MULTI) for r in routes(req.netns)
            if not family or (family == 2) == (r["dst"].version == 4)]
    return req.start_dump(msgs)


@rtnl_handler(RTM_GETROUTE)
def inet_rtm_getroute(req):
    """``ip route get``: the longest matching route, with the source address to use."""
    off = req.payload_offset
    fam = req.buf[off]
    dst = None
    for ra in iter_attrs(req.buf, off + RTMSG.size, req.end):
        if ra.type == RTA_DST:
            dst = ipaddress.ip_address(bytes(req.buf[ra.start:ra.end]))
    if dst is None:
        dst = ipaddress.ip_address("0.0.0.0" if fam != 10 else "::")
    best = None
    for r in routes(req.netns):
        if r["dst"].version == dst.version and dst in r["dst"]:
            if best is None or r["dst"].prefixlen > best["dst"].prefixlen:
                best = r
    if best is None:
        return Reply(-E.ENETUNREACH)
    if not best.get("src"):
        for a in best["dev"].addresses:
            if (":" in a.address) == (dst.version == 6):
                best = dict(best, src=a.address)
                break
    req.unicast(fill_route(best, req.hdr.seq, req.sock.portid, 0, dst_host=dst))
    return Reply()
