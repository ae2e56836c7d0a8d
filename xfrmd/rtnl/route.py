"""Routes: RTM_GETROUTE dumps of the connected routes the addresses imply and of configured
routes; ``ip route get`` style lookups (fib_table_lookup, longest prefix); RTM_NEWROUTE /
RTM_DELROUTE of IPv4 unicast routes in the main table (inet_rtm_newroute, fib_table_insert,
fib_table_delete) with their RTNLGRP_IPV4_ROUTE notifications. A device going down takes its
IPv4 routes along, without notifications (fib_disable_ip)."""
from __future__ import annotations

import errno as E
import ipaddress
import struct

from netlink_codec.netlink import NLM_F_MULTI, encode_msg, iter_attrs, nla, nla_u32

from ..netlink.core import Reply
from . import rtnl_handler

RTM_NEWROUTE, RTM_DELROUTE, RTM_GETROUTE = 24, 25, 26
RTMSG = struct.Struct("=BBBBBBBBI")
RTA_DST, RTA_OIF, RTA_GATEWAY, RTA_PRIORITY, RTA_PREFSRC = 1, 4, 5, 6, 7
RTA_CACHEINFO, RTA_TABLE, RTA_UID = 12, 15, 25
RTNLGRP_IPV4_ROUTE = 7
RTNH_F_LINKDOWN = 16
NLM_F_REPLACE, NLM_F_EXCL, NLM_F_CREATE, NLM_F_APPEND = 0x100, 0x200, 0x400, 0x800
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
    out.sort(key=lambda r: (r["dst"].version, int(r["dst"].network_address), r["dst"].prefixlen,
                            r.get("metric", 0)))
    return out


def fill_route(r: dict, seq: int, portid: int, flags: int, *, dst_host=None,
               msg_type: int = RTM_NEWROUTE) -> bytes:
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
    return encode_msg(msg_type, flags, seq, portid, fib_dump_info(r))


def fib_dump_info(r: dict) -> bytes:
    """The route as ``fib_dump_info`` writes it: rtmsg, table, dst, priority, prefsrc, then
    the nexthop (gateway, oif) with RTNH_F_LINKDOWN while the device has no carrier."""
    net = r["dst"]
    fam = 2 if net.version == 4 else 10
    dev = r["dev"]
    rflags = RTNH_F_LINKDOWN if fam == 2 and dev.up and not dev.carrier else 0
    body = RTMSG.pack(fam, net.prefixlen, 0, 0, RT_TABLE_MAIN, r["proto"], r["scope"],
                      RTN_UNICAST, rflags)
    body += nla_u32(RTA_TABLE, RT_TABLE_MAIN)
    if net.prefixlen:
        body += nla(RTA_DST, net.network_address.packed)
    if r.get("metric"):
        body += nla_u32(RTA_PRIORITY, r["metric"])
    if r.get("src"):
        body += nla(RTA_PREFSRC, ipaddress.ip_address(r["src"]).packed)
    if r.get("gw"):
        body += nla(RTA_GATEWAY, ipaddress.ip_address(r["gw"]).packed)
    body += nla_u32(RTA_OIF, dev.ifindex)
    return body


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
            if (best is None or r["dst"].prefixlen > best["dst"].prefixlen or
                    (r["dst"].prefixlen == best["dst"].prefixlen
                     and r.get("metric", 0) < best.get("metric", 0))):
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


# -- RTM_NEWROUTE / RTM_DELROUTE (IPv4, main table) -----------------------------------------

def _rtm_to_fib_config(req):
    """``rtm_to_fib_config``: the request as a route description, or a Reply refusing it."""
    off = req.payload_offset
    if req.end - off < RTMSG.size:
        return Reply(-E.EINVAL, "Invalid header for route request")   # nlmsg_parse
    fam, dst_len, _src_len, tos, table, proto, scope, rtype, _fl = RTMSG.unpack_from(req.buf, off)
    if fam != 2:
        return Reply(-E.EOPNOTSUPP, "xfrmd: only IPv4 routes can be added or deleted")
    cfg = {"dst_len": dst_len, "tos": tos, "table": table, "proto": proto, "scope": scope,
           "type": rtype, "oif": 0, "gw": None, "src": None, "metric": 0, "dst": 0}
    for ra in iter_attrs(req.buf, off + RTMSG.size, req.end):
        v = bytes(req.buf[ra.start:ra.end])
        if ra.type == RTA_DST and len(v) == 4:
            cfg["dst"] = int.from_bytes(v, "big")
        elif ra.type == RTA_OIF and len(v) == 4:
            cfg["oif"] = struct.unpack("=I", v)[0]
        elif ra.type == RTA_GATEWAY and len(v) == 4:
            cfg["gw"] = str(ipaddress.IPv4Address(v))
        elif ra.type == RTA_PREFSRC and len(v) == 4:
            cfg["src"] = str(ipaddress.IPv4Address(v))
        elif ra.type == RTA_PRIORITY and len(v) == 4:
            cfg["metric"] = struct.unpack("=I", v)[0]
        elif ra.type == RTA_TABLE and len(v) == 4:
            cfg["table"] = struct.unpack("=I", v)[0]
    if dst_len > 32:
        return Reply(-E.EINVAL, "Invalid prefix length")
    if cfg["table"] not in (0, RT_TABLE_MAIN):
        return Reply(-E.EOPNOTSUPP, "xfrmd: only the main routing table is modelled")
    return cfg


def _key_ok(cfg):
    """``fib_valid_key_len``: no host bits under the prefix length."""
    plen = cfg["dst_len"]
    mask = ((1 << 32) - 1) ^ ((1 << (32 - plen)) - 1) if plen else 0
    return not cfg["dst"] & ~mask & 0xFFFFFFFF


def _gw_route(ns, gw: str, oif: int):
    """``fib_check_nh_v4_gw``: the gateway must be on a link route (a connected or a
    device-only route, of a device that is up), on ``oif`` when one is given."""
    a = ipaddress.IPv4Address(gw)
    best = None
    for r in routes(ns):
        if r["dst"].version != 4 or a not in r["dst"] or r.get("gw") or not r["dev"].up:
            continue
        if oif and r["dev"].ifindex != oif:
            continue
        if best is None or r["dst"].prefixlen > best["dst"].prefixlen:
            best = r
    return best


def _local_v4(ns, addr: str) -> bool:
    return any(a.address == addr for dev in ns.links for a in dev.addresses)


def _notify(ns, msg_type: int, r: dict, req, nlflags: int) -> None:
    """``rtmsg_fib``: to RTNLGRP_IPV4_ROUTE with the requester's seq and port id."""
    from netlink_codec.netlink import NETLINK_ROUTE
    ns.kernel.multicast(ns, NETLINK_ROUTE, RTNLGRP_IPV4_ROUTE,
                        fill_route(r, req.hdr.seq, req.sock.portid, nlflags, msg_type=msg_type))


def _same_slot(r: dict, dst, metric: int) -> bool:
    return r["dst"] == dst and r.get("metric", 0) == metric


@rtnl_handler(RTM_NEWROUTE)
def inet_rtm_newroute(req):
    cfg = _rtm_to_fib_config(req)
    if isinstance(cfg, Reply):
        return cfg
    if cfg["type"] != RTN_UNICAST:
        return Reply(-E.EOPNOTSUPP, "xfrmd: only unicast routes are modelled")
    ns = req.netns
    if not _key_ok(cfg):                                   # fib_table_insert
        return Reply(-E.EINVAL, "Invalid prefix for given prefix length")
    # fib_create_info → fib_check_nh
    dev = None
    if cfg["oif"]:
        dev = ns.links.by_index(cfg["oif"])
        if dev is None:
            return Reply(-E.ENODEV)
    if cfg["gw"]:
        via = _gw_route(ns, cfg["gw"], cfg["oif"])
        if via is None:
            return Reply(-E.EINVAL, "Nexthop has invalid gateway")
        dev = dev or via["dev"]
    elif dev is None:
        return Reply(-E.ENODEV)
    elif not dev.up:
        return Reply(-E.ENETDOWN, "Nexthop device is not up")
    if cfg["src"] and not _local_v4(ns, cfg["src"]):       # fib_valid_prefsrc
        return Reply(-E.EINVAL, "Invalid prefsrc address")
    dst = ipaddress.ip_network((cfg["dst"], cfg["dst_len"]))
    new = {"dst": dst, "dev": dev, "gw": cfg["gw"], "src": cfg["src"], "proto": cfg["proto"],
           "scope": cfg["scope"], "metric": cfg["metric"]}
    table = ns.__dict__.setdefault("routes", [])
    flags = req.hdr.flags
    old = next((r for r in table if _same_slot(r, dst, cfg["metric"])), None)
    if old is not None:
        if flags & NLM_F_EXCL:
            return Reply(-E.EEXIST)
        if flags & NLM_F_REPLACE:
            table[table.index(old)] = new
            _notify(ns, RTM_NEWROUTE, new, req, NLM_F_REPLACE)
            return Reply()
        if any(_same_slot(r, dst, cfg["metric"]) and r["dev"] is dev and r.get("gw") == cfg["gw"]
               for r in table):
            return Reply(-E.EEXIST)      # fib_find_alias: the very same nexthop
    if not flags & NLM_F_CREATE:
        return Reply(-E.ENOENT)
    table.append(new)
    _notify(ns, RTM_NEWROUTE, new, req, NLM_F_CREATE | (NLM_F_EXCL if old is None else 0))
    return Reply()


@rtnl_handler(RTM_DELROUTE)
def inet_rtm_delroute(req):
    cfg = _rtm_to_fib_config(req)
    if isinstance(cfg, Reply):
        return cfg
    ns = req.netns
    if not _key_ok(cfg):
        return Reply(-E.EINVAL, "Invalid prefix for given prefix length")
    dst = ipaddress.ip_network((cfg["dst"], cfg["dst_len"]))
    table = getattr(ns, "routes", [])
    for r in table:                                      # fib_table_delete
        if r["dst"] != dst:
            continue
        if cfg["metric"] and r.get("metric", 0) != cfg["metric"]:
            continue
        if cfg["proto"] and r["proto"] != cfg["proto"]:
            continue
        if cfg["oif"] and r["dev"].ifindex != cfg["oif"]:
            continue
        if cfg["gw"] and r.get("gw") != cfg["gw"]:
            continue
        table.remove(r)
        _notify(ns, RTM_DELROUTE, r, req, 0)
        return Reply()
    return Reply(-E.ESRCH)


def _route_netdev_event(event: str, dev, **info) -> None:
    """``fib_disable_ip`` on NETDEV_DOWN / UNREGISTER: the device's IPv4 routes (and those
    whose gateway it carried) go away; IPv4 sends no RTM_DELROUTE for them."""
    if event not in ("NETDEV_DOWN", "NETDEV_UNREGISTER"):
        return
    ns = getattr(dev, "netns", None)
    table = getattr(ns, "routes", None) if ns is not None else None
    if table:
        table[:] = [r for r in table if r["dev"] is not dev or r["dst"].version != 4]


def _register() -> None:
    from devices.netdev import register_netdevice_notifier
    register_netdevice_notifier(_route_netdev_event)


_register()
