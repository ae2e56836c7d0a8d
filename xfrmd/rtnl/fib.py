"""The forwarding information bases of a namespace (sans-IO): IPv4 (net/ipv4/fib_trie.c,
fib_frontend.c, fib_semantics.c) and IPv6 (net/ipv6/ip6_fib.c, route.c) tables of any id,
the routes the kernel makes itself (``fib_add_ifaddr`` / ``fib_del_ifaddr`` for IPv4
addresses, addrconf's multicast, link-local and address routes for IPv6), and the route
lookup through the policy routing rules (``fib_lookup`` / ``fib_rules_lookup``,
``ip_route_output_key_hash_rcu``, ``ip_route_input_slow``, ``ip6_route_output``).

Public entry point for other subsystems (the data path): :func:`route_lookup`. Netlink
handlers live in route.py."""
from __future__ import annotations

import errno as E
import ipaddress
import struct
import zlib
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from netlink_codec.netlink import NETLINK_ROUTE, encode_msg, nla, nla_u32

from .addr import RT_SCOPE_LINK as SCOPE_LINK
from .addr import RTM_NEWADDR, IfAddr, rtmsg_ifa
from .procfs import multipath_hash_policy
from .rule import FR_ACT_TO_TBL, fib_has_custom_rules, rules_of

RTN_UNICAST, RTN_LOCAL, RTN_BROADCAST, RTN_ANYCAST, RTN_MULTICAST = 1, 2, 3, 4, 5
RTN_BLACKHOLE, RTN_UNREACHABLE, RTN_PROHIBIT, RTN_THROW = 6, 7, 8, 9
RTPROT_KERNEL, RTPROT_BOOT = 2, 3
RT_SCOPE_UNIVERSE, RT_SCOPE_LINK, RT_SCOPE_HOST, RT_SCOPE_NOWHERE = 0, 253, 254, 255
RT_TABLE_UNSPEC, RT_TABLE_DEFAULT, RT_TABLE_MAIN, RT_TABLE_LOCAL = 0, 253, 254, 255
RTNH_F_DEAD, RTNH_F_LINKDOWN = 1, 16
RTCF_LOCAL, RTCF_BROADCAST = 0x80000000, 0x10000000
IP6_RT_PRIO_USER, IP6_RT_PRIO_ADDRCONF = 1024, 256
# fib_props[type].error: what a lookup ending on a route of that type answers
TYPE_ERROR = {RTN_BLACKHOLE: -E.EINVAL, RTN_UNREACHABLE: -E.EHOSTUNREACH,
              RTN_PROHIBIT: -E.EACCES, RTN_THROW: -E.EAGAIN}
REJECT_TYPES = tuple(TYPE_ERROR)
RTM_NEWROUTE, RTM_DELROUTE = 24, 25
RTMSG = struct.Struct("=BBBBBBBBI")
RTA_DST, RTA_OIF, RTA_GATEWAY, RTA_PRIORITY, RTA_PREFSRC = 1, 4, 5, 6, 7
RTA_MULTIPATH, RTA_CACHEINFO, RTA_TABLE, RTA_PREF = 9, 12, 15, 20
RTNLGRP_IPV4_ROUTE, RTNLGRP_IPV6_ROUTE = 7, 11
RT_TABLE_COMPAT = 252
USER_HZ = 100


@dataclass(eq=False)
class FibNh:
    """One nexthop of an IPv4 multipath route (``struct fib_nh``): gateway, device, weight
    (``rtnh_hops`` + 1) and RTNH_F_DEAD, which its device going down sets."""
    gw: str | None
    dev: Any
    weight: int = 1
    dead: bool = False

    def key(self) -> tuple[Any, ...]:
        return (self.gw, self.dev, self.weight)


@dataclass(eq=False)
class Route:
    """One route: a ``fib_alias`` + ``fib_info`` (IPv4) or a ``fib6_info`` (IPv6). An IPv4
    route of several nexthops lists them in ``nhs`` (``dev`` and ``gw`` are then the first
    one's). ``r["dst"]``, ``r["dev"]``, ``r["gw"]``, ``r["src"]`` also work (older callers)."""
    dst: Any                         # ipaddress.IPv4Network / IPv6Network
    dev: Any = None                  # NetDevice, None for reject routes
    gw: str | None = None
    prefsrc: str | None = None
    table: int = RT_TABLE_MAIN
    type: int = RTN_UNICAST
    proto: int = RTPROT_BOOT
    scope: int = RT_SCOPE_UNIVERSE
    metric: int = 0
    tos: int = 0
    expires: float | None = None     # IPv6 RTF_EXPIRES: absolute time on the kernel clock
    linkdown: bool = False           # IPv6: RTNH_F_LINKDOWN kept on the nexthop
    nhs: list[FibNh] | None = None   # IPv4 multipath (RTA_MULTIPATH), two or more

    @property
    def family(self) -> int:
        return 2 if self.dst.version == 4 else 10

    _KEYS = {"src": "prefsrc"}

    def __getitem__(self, key: str) -> Any:
        return getattr(self, self._KEYS.get(key, key))

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, self._KEYS.get(key, key), default)

    def same(self, o: "Route") -> bool:
        """``fib_info`` equality as ``fib_find_info`` / ``rt6_duplicate_nexthop`` see it."""
        return (self.type == o.type and self.dev is o.dev and self.gw == o.gw
                and self.prefsrc == o.prefsrc and self.metric == o.metric
                and self.scope == o.scope and self.proto == o.proto and self.tos == o.tos
                and [n.key() for n in self.nhs or ()] == [n.key() for n in o.nhs or ()])

    def uses(self, dev: Any) -> bool:
        """Whether a nexthop of the route goes out through ``dev``."""
        return self.dev is dev or any(n.dev is dev for n in self.nhs or ())


class Fib:
    """Per-namespace FIB state: ``tables[(family, id)]`` in dump order; ``order`` the tables
    as ``fib_new_table`` / ``fib6_new_table`` made them."""

    def __init__(self) -> None:
        self.tables: dict[tuple[int, int], list[Route]] = {}
        self.created: dict[tuple[int, int], int] = {}
        self.carrier_seen: dict[int, bool] = {}
        self.addrconf_done: set[int] = set()

    def table(self, family: int, tb_id: int, create: bool = False) -> list[Route] | None:
        key = (family, tb_id)
        t = self.tables.get(key)
        if t is None and create:
            t = self.tables[key] = []
            self.created[key] = len(self.created)
        return t

    def dump_order(self, family: int) -> list[tuple[int, list[Route]]]:
        """Tables as ``inet_dump_fib`` / ``inet6_dump_fib`` walk them: by hash bucket
        (id & 255), the newest table first in a bucket (hlist_add_head)."""
        keys = [k for k in self.tables if k[0] == family]
        keys.sort(key=lambda k: (k[1] & 255, -self.created[k]))
        return [(k[1], self.tables[k]) for k in keys]


def fib(ns: Any) -> Fib:
    """The namespace's FIB; made on first use from the addresses and the topology's routes
    (which were put in place without events)."""
    f: Fib | None = ns.__dict__.get("fib")
    if f is None:
        f = ns.__dict__["fib"] = Fib()
        # fib4: main exists, local comes with its first route; fib6_tables_init: both
        f.table(2, RT_TABLE_MAIN, True)
        f.table(10, RT_TABLE_MAIN, True)
        f.table(10, RT_TABLE_LOCAL, True)
        for dev in ns.links:
            f.carrier_seen[dev.ifindex] = bool(dev.carrier)
            for a in [a for a in dev.addresses if a.family == 2]:
                fib_add_ifaddr(ns, dev, a, notify=False)
            for a in [a for a in dev.addresses if a.family == 10 and dev.up]:
                a.routed = True
                addrconf_prefix_route(ns, dev, a, notify=False)
                if not a.flags & 0x40 and (dev.up or dev.kind == "loopback"):
                    addrconf_local_route(ns, dev, a, notify=False)
        for r in getattr(ns, "routes", []) or []:
            if isinstance(r, Route):
                insert(ns, r, notify=False)
            else:
                insert(ns, Route(dst=r["dst"], dev=r["dev"], gw=r.get("gw"),
                                 prefsrc=r.get("src"), proto=r.get("proto", RTPROT_BOOT),
                                 scope=r.get("scope", 0), metric=r.get("metric", 0)),
                       notify=False)
    return f


def fib_rebuild(ns: Any) -> Fib:
    """Make the FIB again from the namespace's addresses and ``ns.routes``, without events
    (a topology builds devices and addresses directly)."""
    ns.__dict__.pop("fib", None)
    return fib(ns)


def fib_ready(ns: Any) -> bool:
    return ns is not None and "fib" in ns.__dict__


# -- ordering ------------------------------------------------------------------------------

def _key4(r: Route) -> tuple[int, int]:
    return (int(r.dst.network_address), r.dst.prefixlen)


def _key6(r: Route) -> str:
    """fib6 tree walk (``fib6_walk_continue``: left, right, then the node): a prefix after
    every more specific prefix below it."""
    bits = format(int(r.dst.network_address), "0128b")[:r.dst.prefixlen]
    return bits + "2"


def insert(ns: Any, r: Route, *, notify: bool = True, nlflags: int | None = None,
           append: bool = False, seq: int = 0, portid: int = 0) -> bool:
    """Put ``r`` in its table at the place the kernel would (``fib_insert_alias`` /
    ``fib6_add_rt2node``); an identical route is not added twice. Returns whether added."""
    tbl = fib(ns).table(r.family, r.table, True)
    assert tbl is not None                  # made if missing
    if any(x.dst == r.dst and x.same(r) for x in tbl):
        return False
    if r.family == 2:
        k = _key4(r)
        i = 0
        while i < len(tbl) and _key4(tbl[i]) < k:
            i += 1
        while i < len(tbl) and _key4(tbl[i]) == k and (
                tbl[i].tos > r.tos or tbl[i].metric < r.metric
                or (append and tbl[i].metric == r.metric)):
            i += 1
    else:
        k6 = _key6(r)
        i = 0
        while i < len(tbl) and (_key6(tbl[i]), tbl[i].metric) <= (k6, r.metric):
            i += 1
    tbl.insert(i, r)
    if notify:
        rt_notify(ns, RTM_NEWROUTE, r, seq, portid, 0x600 if nlflags is None else nlflags)
    return True


def remove(ns: Any, r: Route, *, notify: bool = True, seq: int = 0, portid: int = 0) -> None:
    tbl = fib(ns).table(r.family, r.table)
    if tbl is not None and r in tbl:
        tbl.remove(r)
        if notify:
            rt_notify(ns, RTM_DELROUTE, r, seq, portid, 0)


def all_routes(ns: Any, family: int) -> Iterator[Route]:
    for _, tbl in fib(ns).dump_order(family):
        yield from tbl


def routes(ns: Any) -> list[Route]:
    """The main table's routes, IPv4 then IPv6 (kept for older callers)."""
    f = fib(ns)
    return list(f.table(2, RT_TABLE_MAIN) or []) + list(f.table(10, RT_TABLE_MAIN) or [])


# -- what routes look like on the wire (fib_semantics.c, ip6 route.c) -----------------

def fib_dump_info(r: Route) -> bytes:
    """An IPv4 route as ``fib_dump_info`` writes it: rtmsg, table, dst, priority, prefsrc,
    then the nexthop (gateway, oif) with RTNH_F_LINKDOWN while the device has no carrier
    (host-scope nexthops never get it)."""
    dev = r.dev
    rflags = RTNH_F_LINKDOWN if (dev is not None and r.scope != RT_SCOPE_HOST
                                 and not dev.carrier) else 0
    if r.nhs:               # fib_create_info / fib_sync_down_dev: once every nexthop is down
        rflags = RTNH_F_LINKDOWN if all(nh.dead or not nh.dev.carrier for nh in r.nhs) else 0
    body = RTMSG.pack(2, r.dst.prefixlen, 0, r.tos, r.table if r.table < 256 else RT_TABLE_COMPAT,
                      r.proto, r.scope, r.type, rflags)
    body += nla_u32(RTA_TABLE, r.table)
    if r.dst.prefixlen:
        body += nla(RTA_DST, r.dst.network_address.packed)
    if r.metric:
        body += nla_u32(RTA_PRIORITY, r.metric)
    if r.prefsrc:
        body += nla(RTA_PREFSRC, ipaddress.ip_address(r.prefsrc).packed)
    if r.nhs:
        return body + fib_add_multipath(r)
    if r.gw:
        body += nla(RTA_GATEWAY, ipaddress.ip_address(r.gw).packed)
    if dev is not None:
        body += nla_u32(RTA_OIF, dev.ifindex)
    return body


def fib_add_multipath(r: Route) -> bytes:
    """RTA_MULTIPATH: one ``struct rtnexthop`` per nexthop (``fib_add_nexthop``: length,
    flags — RTNH_F_DEAD, RTNH_F_LINKDOWN without carrier —, weight - 1, ifindex) with its
    RTA_GATEWAY inside."""
    out = b""
    for nh in r.nhs or ():
        attrs = nla(RTA_GATEWAY, ipaddress.ip_address(nh.gw).packed) if nh.gw else b""
        flags = (RTNH_F_DEAD | RTNH_F_LINKDOWN) if nh.dead else \
            RTNH_F_LINKDOWN if not nh.dev.carrier else 0
        out += struct.pack("=HBBi", 8 + len(attrs), flags, nh.weight - 1, nh.dev.ifindex) + attrs
    return nla(RTA_MULTIPATH, out)


def fib_select_multipath(ns: Any, r: Route, src: Any, dst: Any) -> FibNh | None:
    """``fib_select_multipath``: the first live nexthop whose upper bound (its share of
    the weights, ``fib_rebalance``, on a 31-bit scale) is not below the flow's hash. The
    hash covers the addresses (every ``fib_multipath_hash_policy`` reduces to them for a
    flow without ports); it is a CRC, not the kernel's jhash with the namespace's random
    seed, so which nexthop a flow takes differs from Linux's as it does between two boots."""
    live = [nh for nh in r.nhs or () if not nh.dead]
    if not live:
        return None
    total = sum(nh.weight for nh in live)
    policy = multipath_hash_policy(ns)        # 1-3 add ports and protocol: 0 here
    key = (src.packed if src is not None else b"") + b"|" + dst.packed
    key += bytes(5) if policy else b""
    h = zlib.crc32(key) >> 1
    w = 0
    for nh in live:
        w += nh.weight
        if h <= ((w << 31) + total // 2) // total - 1:
            return nh
    return live[-1]


def rta_cacheinfo(expires_clk: int = 0, error: int = 0, clntref: int = 0) -> bytes:
    # struct rta_cacheinfo: clntref lastuse expires error used id ts tsage
    # rtnl_put_cacheinfo: the expiry in clock ticks, capped at INT_MAX
    expires_clk = max(-0x7FFFFFFF, min(expires_clk, 0x7FFFFFFF))
    return nla(RTA_CACHEINFO, struct.pack("=IiiIIIII", clntref, 0, expires_clk,
                                          error & 0xFFFFFFFF, 0, 0, 0, 0))


def rt6_fill_node(ns: Any, r: Route) -> bytes:
    """An IPv6 route as ``rt6_fill_node`` writes it for a dump or a notification."""
    rflags = RTNH_F_LINKDOWN if r.linkdown else 0
    body = RTMSG.pack(10, r.dst.prefixlen, 0, 0, r.table if r.table < 256 else RT_TABLE_COMPAT,
                      r.proto, 0, r.type, rflags)
    body += nla_u32(RTA_TABLE, r.table)
    if r.dst.prefixlen:
        body += nla(RTA_DST, r.dst.network_address.packed)
    return body + rt6_fill_tail(ns, r, r.dev)


def rt6_fill_tail(ns: Any, r: Route, dev: Any, clntref: int = 0) -> bytes:
    """rt6_fill_node's attributes after the addresses: the route's preferred source, its
    priority, gateway, output device dev, cacheinfo (expiry in USER_HZ; clntref, the dst's
    references) and preference."""
    body = b""
    if r.prefsrc:
        body += nla(RTA_PREFSRC, ipaddress.ip_address(r.prefsrc).packed)
    body += nla_u32(RTA_PRIORITY, r.metric)
    if r.gw:
        body += nla(RTA_GATEWAY, ipaddress.ip_address(r.gw).packed)
    if dev is not None:
        body += nla_u32(RTA_OIF, dev.ifindex)
    exp = max(0, round((r.expires - _now(ns)) * USER_HZ)) if r.expires is not None else 0
    return body + rta_cacheinfo(exp, clntref=clntref) + nla(RTA_PREF, b"\x00")


def fill_route(ns: Any, r: Route, msg_type: int, seq: int, portid: int, flags: int) -> bytes:
    body = fib_dump_info(r) if r.family == 2 else rt6_fill_node(ns, r)
    return encode_msg(msg_type, flags, seq, portid, body)


def rt_notify(ns: Any, msg_type: int, r: Route, seq: int, portid: int, nlflags: int) -> None:
    """``rtmsg_fib`` / ``inet6_rt_notify``: to RTNLGRP_IPV4_ROUTE or RTNLGRP_IPV6_ROUTE with the
    requester's seq and port id (0, 0 for routes the kernel makes itself)."""
    group = RTNLGRP_IPV4_ROUTE if r.family == 2 else RTNLGRP_IPV6_ROUTE
    ns.kernel.multicast(ns, NETLINK_ROUTE, group, fill_route(ns, r, msg_type, seq, portid, nlflags))


def fib6_expire(ns: Any) -> None:
    """``fib6_age`` (the fib6 GC): routes whose RTF_EXPIRES time has passed go, with
    RTM_DELROUTE."""
    now = _now(ns)
    for _, tbl in fib(ns).dump_order(10):
        for r in [r for r in tbl if r.expires is not None and r.expires <= now]:
            remove(ns, r)


def _now(ns: Any) -> float:
    now: float = ns.kernel.clock.now()
    return now


# -- IPv4: the routes addresses imply (fib_add_ifaddr / fib_del_ifaddr) ------------------

def _net(a: IfAddr) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """The subnet of ``ifa_address`` (the peer of a point-to-point address)."""
    return ipaddress.ip_network(f"{a.prefix_base}/{a.prefixlen}", strict=False)


def _primary(dev: Any, a: IfAddr) -> IfAddr:
    """``inet_ifa_byprefix``: the first address of the device in the same subnet (the
    primary one; later ones are secondaries, IFA_F_SECONDARY)."""
    n = _net(a)
    b: IfAddr
    for b in dev.addresses:
        if b.family == 2 and b.prefixlen == a.prefixlen and _net(b) == n:
            return b
    return a


def _ifaddr_routes(dev: Any, a: IfAddr) -> list[Route]:
    """What ``fib_add_ifaddr`` adds for one address, in its order."""
    prim = _primary(dev, a)
    src = prim.address
    lo = dev.kind == "loopback"
    out = [Route(ipaddress.ip_network(f"{a.address}/32"), dev, None, src, RT_TABLE_LOCAL,
                 RTN_LOCAL, RTPROT_KERNEL, RT_SCOPE_HOST)]
    if not dev.up:
        return out
    brd = a.broadcast()
    if brd is not None and brd != b"\xff\xff\xff\xff":
        out.append(Route(ipaddress.ip_network(f"{ipaddress.IPv4Address(brd)}/32"), dev, None,
                         src, RT_TABLE_LOCAL, RTN_BROADCAST, RTPROT_KERNEL, RT_SCOPE_LINK))
    n = _net(a)
    if int(n.network_address) and prim is a and (n.prefixlen < 32 or a.peer):
        if not a.flags & 0x200:                         # IFA_F_NOPREFIXROUTE
            out.append(Route(n, dev, None, src, RT_TABLE_LOCAL if lo else RT_TABLE_MAIN,
                             RTN_LOCAL if lo else RTN_UNICAST, RTPROT_KERNEL,
                             RT_SCOPE_HOST if lo else RT_SCOPE_LINK, a.rt_priority))
        if n.prefixlen < 31:
            out.append(Route(ipaddress.ip_network(f"{n.broadcast_address}/32"), dev, None, src,
                             RT_TABLE_LOCAL, RTN_BROADCAST, RTPROT_KERNEL, RT_SCOPE_LINK))
    return out


def fib_add_ifaddr(ns: Any, dev: Any, a: IfAddr, notify: bool = True) -> None:
    for r in _ifaddr_routes(dev, a):
        insert(ns, r, notify=notify)


def fib_del_ifaddr(ns: Any, dev: Any, a: IfAddr) -> None:
    """``fib_del_ifaddr``: the routes of the address that no other address still needs
    (prefix route, broadcasts, then the local route)."""
    keep = []
    for d in ns.links:
        for b in d.addresses:
            if b.family == 2 and b is not a:
                keep += _ifaddr_routes(d, b)
    gone = _ifaddr_routes(dev, a)
    order = [r for r in gone if r.type == RTN_UNICAST or (r.type == RTN_LOCAL and r.dst.prefixlen < 32)]
    order += [r for r in gone if r.type == RTN_BROADCAST]
    order += [r for r in gone if r.type == RTN_LOCAL and r.dst.prefixlen == 32]
    f = fib(ns)
    for g in order:
        if any(k.dst == g.dst and k.type == g.type and k.table == g.table for k in keep):
            continue
        tbl = f.table(2, g.table) or []
        for x in list(tbl):
            if x.dst == g.dst and x.same(g):
                remove(ns, x)
    if not any(b.family == 2 and b is not a and b.address == a.address
               for d in ns.links for b in d.addresses):
        # fib_sync_down_addr + fib_flush: routes with the vanished source go (this path
        # sends RTM_DELROUTE, as the kernel does)
        # (main-table routes only, as fib_sync_down_addr looks at RT_TABLE_MAIN)
        for r in [r for r in f.table(2, RT_TABLE_MAIN) or [] if r.prefsrc == a.address]:
            remove(ns, r)
    if dev.netns is ns and not any(b.family == 2 for b in dev.addresses):
        fib_disable_ip(ns, dev, True)    # fib_inetaddr_event: the last address went


def fib_disable_ip(ns: Any, dev: Any, force: bool) -> None:
    """``fib_sync_down_dev`` + ``fib_flush`` on NETDEV_DOWN (host-scope routes stay) and
    NETDEV_UNREGISTER (all go); IPv4 sends no RTM_DELROUTE for them."""
    for _, tbl in fib(ns).dump_order(2):
        for r in tbl:
            for nh in r.nhs or ():           # fib_sync_down_dev: its nexthops die
                if nh.dev is dev:
                    nh.dead = True
        # a multipath route goes once every nexthop is dead, or when one's device goes away
        tbl[:] = [r for r in tbl if not (
            r.nhs and (all(nh.dead for nh in r.nhs) or force and r.uses(dev))
            or not r.nhs and r.dev is dev and (force or r.scope != RT_SCOPE_HOST))]


# -- IPv6: addrconf ----------------------------------------------------------------------

def addrconf_prefix_route(ns: Any, dev: Any, a: IfAddr, notify: bool = True) -> None:
    if dev.kind == "loopback" or a.flags & 0x200:
        return
    n = ipaddress.ip_network(f"{a.address}/{a.prefixlen}", strict=False)
    # inet6_addr_add: a finite valid lifetime gives the prefix route RTF_EXPIRES
    expires = None
    if not a.flags & IFA_F_PERMANENT and getattr(a, "valid_lft", 0xFFFFFFFF) != 0xFFFFFFFF:
        expires = a.tstamp + a.valid_lft
        ns.kernel.add_timer(max(expires - ns.kernel.clock.now(), 0), lambda: fib6_expire(ns))
    insert(ns, Route(n, dev, None, None, RT_TABLE_MAIN, RTN_UNICAST, RTPROT_KERNEL,
                     RT_SCOPE_UNIVERSE, IP6_RT_PRIO_ADDRCONF, expires=expires,
                     linkdown=not dev.carrier), notify=notify)


def rt6_remove_prefsrc(ns: Any, a: IfAddr) -> None:
    """``rt6_remove_prefsrc``: routes that named the address as their source forget it."""
    for r in all_routes(ns, 10):
        if r.prefsrc == a.address:
            r.prefsrc = None


def addrconf_local_route(ns: Any, dev: Any, a: IfAddr, notify: bool = True) -> None:
    """``addrconf_f6i_alloc`` inserted by ``__ipv6_ifa_notify`` once DAD is done."""
    insert(ns, Route(ipaddress.ip_network(f"{a.address}/128"), dev, None, None, RT_TABLE_LOCAL,
                     RTN_LOCAL, RTPROT_KERNEL, RT_SCOPE_UNIVERSE, 0), notify=notify)
    if a.peer:                          # and a host route to a point-to-point peer
        insert(ns, Route(ipaddress.ip_network(f"{a.peer}/128"), dev, None, None, RT_TABLE_MAIN,
                         RTN_UNICAST, RTPROT_KERNEL, RT_SCOPE_UNIVERSE, IP6_RT_PRIO_ADDRCONF,
                         linkdown=not dev.carrier), notify=notify)


def _del_v6(ns: Any, dev: Any, pred: Callable[[Route], bool]) -> None:
    for _, tbl in fib(ns).dump_order(10):
        for r in [r for r in tbl if r.dev is dev and pred(r)]:
            remove(ns, r)


def addrconf_del(ns: Any, dev: Any, a: IfAddr) -> None:
    """``__ipv6_ifa_notify(RTM_DELADDR)`` then ``cleanup_prefix_route``."""
    host = ipaddress.ip_network(f"{a.address}/128")
    if a.peer:
        peer = ipaddress.ip_network(f"{a.peer}/128")
        _del_v6(ns, dev, lambda r: r.proto == RTPROT_KERNEL and r.dst == peer
                and r.type == RTN_UNICAST)
    _del_v6(ns, dev, lambda r: r.type == RTN_LOCAL and r.dst == host)
    n = ipaddress.ip_network(f"{a.address}/{a.prefixlen}", strict=False)
    # check_cleanup_prefix_route: a dynamic address leaves its prefix route to expire
    if a.flags & IFA_F_PERMANENT and not any(b.family == 10 and b is not a and ipaddress.ip_network(
            f"{b.address}/{b.prefixlen}", strict=False) == n for b in dev.addresses):
        _del_v6(ns, dev, lambda r: r.proto == RTPROT_KERNEL and r.dst == n and r.type == RTN_UNICAST)
    rt6_remove_prefsrc(ns, a)


ARPHRD_ETHER = 1
IFA_F_TENTATIVE, IFA_F_PERMANENT = 0x40, 0x80


def _eui64_linklocal(dev: Any) -> str | None:
    mac = bytes(dev.address or b"")
    if getattr(dev, "type", ARPHRD_ETHER) != ARPHRD_ETHER or len(mac) != 6 or not any(mac):
        return None
    iid = bytes([mac[0] ^ 2]) + mac[1:3] + b"\xff\xfe" + mac[3:6]
    return str(ipaddress.IPv6Address(b"\xfe\x80" + bytes(6) + iid))


def addrconf_dev_config(ns: Any, dev: Any) -> None:
    """``addrconf_dev_config`` once the device runs (NETDEV_UP with carrier, or
    NETDEV_CHANGE gaining it): ff00::/8 (``addrconf_add_mroute``), the EUI-64 link-local
    address with fe80::/64 (``addrconf_add_linklocal``, ``addrconf_prefix_route``);
    DAD completes at once here, so each tentative address gets its local route."""
    f = fib(ns)
    if dev.flags & 0x800 or (dev.master is not None and dev.master.kind == "bond"):
        return          # bond_enslave sets IFF_NO_ADDRCONF before opening a slave
    if dev.kind != "loopback" and dev.ifindex not in f.addrconf_done:
        ll = _eui64_linklocal(dev)
        if ll is not None:
            f.addrconf_done.add(dev.ifindex)
            insert(ns, Route(ipaddress.ip_network("ff00::/8"), dev, None, None, RT_TABLE_LOCAL,
                             RTN_MULTICAST, RTPROT_KERNEL, RT_SCOPE_UNIVERSE, IP6_RT_PRIO_ADDRCONF))
            if not any(a.address == ll for a in dev.addresses):
                a = IfAddr(ll, 64, SCOPE_LINK, IFA_F_PERMANENT | IFA_F_TENTATIVE, label=dev.name,
                           brd=None)
                # ipv6_link_dev_addr: before the first address of no larger scope
                at = next((i for i, b in enumerate(dev.addresses)
                           if b.family == 10 and b.scope >= SCOPE_LINK), len(dev.addresses))
                dev.addresses.insert(at, a)
                a.routed = True
                addrconf_prefix_route(ns, dev, a)
    for a in dev.addresses:                       # addrconf_dad_completed
        if a.family == 10 and a.flags & IFA_F_TENTATIVE:
            a.flags &= ~IFA_F_TENTATIVE
            rtmsg_ifa(dev, a, RTM_NEWADDR)
            addrconf_local_route(ns, dev, a)


def addrconf_ifdown(ns: Any, dev: Any) -> None:
    """``addrconf_ifdown`` → ``rt6_disable_ip``: every IPv6 route through the device goes,
    each with RTM_DELROUTE, in the order of a dump."""
    _del_v6(ns, dev, lambda r: True)
    fib(ns).addrconf_done.discard(dev.ifindex)


# -- events ------------------------------------------------------------------------------

def fib_inetaddr_event(event: str, a: IfAddr, *, dev: Any, **info: Any) -> None:
    """The inetaddr / inet6addr notifiers (``fib_inetaddr_event``; addrconf's
    ``__ipv6_ifa_notify``): an address came (NETDEV_UP) or went (NETDEV_DOWN)."""
    ns = getattr(dev, "netns", None)
    if not fib_ready(ns):
        return
    if a.family == 2:
        if event == "NETDEV_UP":
            fib_add_ifaddr(ns, dev, a)
        else:
            fib_del_ifaddr(ns, dev, a)
    elif event == "NETDEV_UP":
        if a.routed:
            return
        a.routed = True
        if dev.up:                      # a down device gets it on NETDEV_UP
            addrconf_prefix_route(ns, dev, a)
        if not a.flags & IFA_F_TENTATIVE:
            addrconf_local_route(ns, dev, a)
    else:
        addrconf_del(ns, dev, a)


def fib_netdev_event(event: str, dev: Any, **info: Any) -> None:
    """``fib_netdev_event`` and addrconf's ``addrconf_notify``: the routes of a device
    that came up, went down or away; carrier changes (:func:`sync_carrier`)."""
    ns = getattr(dev, "netns", None)
    if not fib_ready(ns):
        return
    f = fib(ns)
    if event == "NETDEV_UP":
        for r in all_routes(ns, 2):                               # fib_sync_up
            for nh in r.nhs or ():
                if nh.dev is dev:
                    nh.dead = False
        for a in [a for a in dev.addresses if a.family == 2]:     # fib_netdev_event
            fib_add_ifaddr(ns, dev, a)
        for a in [a for a in dev.addresses if a.family == 10]:  # addrconf_permanent_addr
            a.routed = True
            addrconf_prefix_route(ns, dev, a)
        f.carrier_seen[dev.ifindex] = bool(dev.carrier)
        if dev.carrier and dev.kind != "loopback":          # addrconf_notify: this one first
            addrconf_dev_config(ns, dev)
    elif event == "NETDEV_DOWN":
        fib_disable_ip(ns, dev, False)
        addrconf_ifdown(ns, dev)
    elif event == "NETDEV_UNREGISTER":
        fib_disable_ip(ns, dev, True)
        addrconf_ifdown(ns, dev)
        f.carrier_seen.pop(dev.ifindex, None)
    sync_carrier(ns)


def sync_carrier(ns: Any) -> None:
    """NETDEV_CHANGE as linkwatch delivers it: devices that started running get addrconf
    (the one just opened first, then the rest by index); IPv6 routes of a device that lost
    its carrier get RTNH_F_LINKDOWN (``rt6_sync_down_dev``), and lose it with the carrier
    back (``rt6_sync_up``)."""
    f = fib(ns)
    for dev in ns.links:
        was = f.carrier_seen.get(dev.ifindex)
        now = bool(dev.carrier)
        f.carrier_seen[dev.ifindex] = now
        if was is not None and was != now:
            for r in all_routes(ns, 10):      # fib6_ifdown / fib6_ifup: not local routes
                if r.dev is dev and r.type != RTN_LOCAL:
                    r.linkdown = not now
        if dev.up and dev.carrier:
            if dev.kind == "loopback":
                continue
            if dev.ifindex not in f.addrconf_done or any(
                    a.family == 10 and a.flags & IFA_F_TENTATIVE for a in dev.addresses):
                addrconf_dev_config(ns, dev)


# -- lookups -----------------------------------------------------------------------------

@dataclass
class RouteResult:
    """What a lookup found: the route (None for a made-up one), its table (0 when no table
    answered), the type, the output device, the source address and the gateway."""
    route: Route | None
    table: int
    type: int
    dev: Any
    src: str | None
    gw: str | None
    flags: int = 0          # RTCF_LOCAL / RTCF_BROADCAST


def _rule_matches(ns: Any, rule: Any, family: int, dst: Any, src: Any, iif_dev: Any,
                  oif_dev: Any, mark: int, tos: int = 0) -> bool:
    """``fib_rule_match`` + ``fib4_rule_match`` / ``fib6_rule_match`` (an IPv4 rule's tos
    compares DSCP, the ECN bits left out)."""
    ok = True
    if rule.tos and family == 2 and (rule.tos ^ tos) & 0xFC:
        ok = False
    if rule.iifname:
        ok = iif_dev is not None and iif_dev.name == rule.iifname
    if ok and rule.oifname:
        ok = oif_dev is not None and oif_dev.name == rule.oifname
    if ok and (rule.mark ^ mark) & rule.mask:
        ok = False
    if ok and rule.src_len:
        net = ipaddress.ip_network((int.from_bytes(rule.src, "big"), rule.src_len), strict=False)
        ok = src is not None and src in net
    if ok and rule.dst_len:
        net = ipaddress.ip_network((int.from_bytes(rule.dst, "big"), rule.dst_len), strict=False)
        ok = dst in net
    if rule.flags & 2:                                  # FIB_RULE_INVERT
        ok = not ok
    return ok


def table_lookup(ns: Any, family: int, tb_id: int, dst: Any, oif_dev: Any) -> Route | None:
    """``fib_table_lookup`` / ``fib6_table_lookup``: the longest prefix, then the first
    usable alias (a dead or wrong-device nexthop is skipped)."""
    tbl = fib(ns).table(family, tb_id)
    if not tbl:
        return None
    cands = [r for r in tbl if dst in r.dst]
    cands.sort(key=lambda r: -r.dst.prefixlen)          # stable: list order within a prefix
    for r in cands:
        if r.type in REJECT_TYPES:
            return r
        if r.nhs:
            # fib_table_lookup: a nexthop that is alive (and the flow's oif, if it has one)
            if not any(not nh.dead and nh.dev.up and (oif_dev is None or nh.dev is oif_dev)
                       for nh in r.nhs):
                continue
            return r
        if oif_dev is not None and r.dev is not oif_dev and r.type != RTN_LOCAL:
            continue
        if r.dev is not None and not r.dev.up and r.type != RTN_LOCAL:
            continue
        return r
    return None


def fib_rules_lookup(ns: Any, family: int, dst: Any, src: Any = None, iif_dev: Any = None,
                     oif_dev: Any = None, mark: int = 0, tos: int = 0
                     ) -> tuple[Route | int, int]:
    """Walk the rules (rule.py) in order: (route or a negative errno, table id)."""
    for rule in rules_of(ns, family):
        if not _rule_matches(ns, rule, family, dst, src, iif_dev, oif_dev, mark, tos):
            continue
        if rule.action == FR_ACT_TO_TBL:
            r = table_lookup(ns, family, rule.table, dst, oif_dev)
            if r is None or r.type == RTN_THROW:
                continue
            if r.type in REJECT_TYPES:
                return TYPE_ERROR[r.type], rule.table
            return r, rule.table
        if rule.action == 6:                            # FR_ACT_BLACKHOLE
            return -E.EINVAL, 0
        if rule.action == 7:                            # FR_ACT_UNREACHABLE
            return -E.ENETUNREACH, 0
        if rule.action == 8:                            # FR_ACT_PROHIBIT
            return -E.EACCES, 0
    return -E.ENETUNREACH, 0


def inet_select_addr(ns: Any, dev: Any, dst: Any = None, scope: int = RT_SCOPE_LINK) -> str | None:
    """``inet_select_addr``: a primary address of the device no wider than ``scope`` (the
    one in the subnet of ``dst`` first), else one of another device, not of link scope."""
    first: str | None = None
    a: IfAddr
    if dev is not None:
        for a in dev.addresses:
            if a.family != 2 or a.scope > scope or _primary(dev, a) is not a:
                continue
            if dst is not None and ipaddress.IPv4Address(dst) in _net(a):
                return a.address
            first = first or a.address
    if first:
        return first
    for d in ns.links:
        for a in d.addresses:
            if a.family == 2 and a.scope != RT_SCOPE_LINK and a.scope <= scope:
                return a.address
    return None


def _local4(ns: Any, addr: Any) -> bool:
    s = str(addr)
    return any(a.address == s for d in ns.links for a in d.addresses if a.family == 2)


def ipv6_dev_get_saddr(ns: Any, dev: Any, dst: Any) -> str | None:
    """``ipv6_dev_get_saddr`` simplified: a non-tentative address of the same scope class
    as ``dst`` on the output device first, then on the others; the destination itself when
    it is local."""
    a: IfAddr
    dst = ipaddress.IPv6Address(dst)
    ll = dst.is_link_local or (dst.is_multicast and (dst.packed[1] & 0xF) <= 2)
    devs = ([dev] if dev is not None else []) + [d for d in ns.links if d is not dev]
    for d in devs:
        for a in d.addresses:
            if a.family == 10 and a.address == str(dst) and not a.flags & IFA_F_TENTATIVE:
                return a.address
    for i, d in enumerate(devs):
        for a in d.addresses:
            if a.family != 10 or a.flags & IFA_F_TENTATIVE:
                continue
            is_ll = ipaddress.IPv6Address(a.address).is_link_local
            if ll and is_ll and i == 0:
                return a.address
            if not ll and not is_ll and a.address != "::1":
                return a.address
    return None


def route_lookup(ns: Any, dst: Any, *, src: Any = None, iif: Any = None, oif: Any = None,
                 mark: int = 0,
                 tos: int = 0) -> RouteResult | int:
    """``ip route get`` as a Python call — the data path's route lookup.

    ``dst``/``src``: address strings or ipaddress objects (IPv4 or IPv6); ``iif``/``oif``:
    a NetDevice, an ifindex or None; ``mark``: the fwmark; ``tos``: the IPv4 dsfield the
    rules see. With ``iif`` the lookup is an
    input route (``ip_route_input_slow``: a local destination, or EHOSTUNREACH as this
    kernel does not forward); without, an output route (``ip_route_output_key_hash_rcu``
    / ``ip6_route_output``). Returns a :class:`RouteResult` or a negative errno
    (-ENETUNREACH, -EHOSTUNREACH, -EACCES, -EINVAL, -ENODEV). The rules of rule.py are
    consulted in order."""
    dst = ipaddress.ip_address(dst)
    src = ipaddress.ip_address(src) if src is not None else None
    family = 2 if dst.version == 4 else 10

    def _dev(x: Any) -> Any:
        if x is None or x == 0:
            return None
        if isinstance(x, int):
            d = ns.links.by_index(x)
            return d if d is not None else -E.ENODEV
        return x
    iif_dev, oif_dev = _dev(iif), _dev(oif)
    if iif_dev == -E.ENODEV or oif_dev == -E.ENODEV:
        return -E.ENODEV
    fib(ns)                                  # made on first use
    if family == 10:
        return _lookup6(ns, dst, src, iif_dev, oif_dev, mark)
    lo = ns.links.by_index(1)
    if iif_dev is not None:                              # ip_route_input_slow
        if src is None or int(src) == 0 or src.is_multicast or int(src) == 0xFFFFFFFF:
            return -E.EINVAL                             # martian source
        found, tb = fib_rules_lookup(ns, 2, dst, src, iif_dev, None, mark, tos)
        if isinstance(found, Route):
            if found.type == RTN_LOCAL:
                return RouteResult(found, _tb4(ns, tb), RTN_LOCAL, lo, None, None, RTCF_LOCAL)
            if found.type == RTN_BROADCAST:
                return RouteResult(found, _tb4(ns, tb), RTN_BROADCAST, lo, None, None,
                                   RTCF_LOCAL | RTCF_BROADCAST)
        return -E.EHOSTUNREACH if not isinstance(found, int) or found == -E.ENETUNREACH \
            else found
    # ip_route_output_key_hash_rcu
    if src is not None:
        if src.is_multicast or int(src) == 0xFFFFFFFF or int(src) == 0:
            return -E.EINVAL
        if oif_dev is None and not _local4(ns, src):
            return -E.ENETUNREACH
    if oif_dev is not None and not oif_dev.up:
        return -E.ENETUNREACH
    if int(dst) == 0:
        return RouteResult(None, 0, RTN_LOCAL, lo, str(src) if src is not None else "127.0.0.1",
                           None, RTCF_LOCAL)
    found, tb = fib_rules_lookup(ns, 2, dst, src, lo, oif_dev, mark, tos)
    s: str | None
    if isinstance(found, int):
        if oif_dev is not None and found == -E.ENETUNREACH:
            # "routing tables are wrong; assume the destination is on link"
            s = str(src) if src else inet_select_addr(ns, oif_dev, None, RT_SCOPE_LINK)
            return RouteResult(None, 0, RTN_UNICAST, oif_dev, s, None,
                               RTCF_LOCAL if oif_dev.kind == "loopback" else 0)
        return found
    r = found
    tb = _tb4(ns, tb)
    if r.type == RTN_LOCAL:
        s = str(src) if src else (r.prefsrc or str(dst))
        return RouteResult(r, tb, RTN_LOCAL, lo, s, None, RTCF_LOCAL)
    out_dev, gw = r.dev, r.gw
    if r.nhs:                                            # fib_select_path
        nh = next((n for n in r.nhs if n.dev is oif_dev and not n.dead), None) \
            if oif_dev is not None else fib_select_multipath(ns, r, src, dst)
        if nh is not None:
            out_dev, gw = nh.dev, nh.gw
    s = str(src) if src else (r.prefsrc or inet_select_addr(ns, out_dev, gw, r.scope))
    if r.type == RTN_BROADCAST:
        return RouteResult(r, tb, RTN_BROADCAST, out_dev, s, None, RTCF_LOCAL | RTCF_BROADCAST)
    flags = RTCF_LOCAL if out_dev is not None and out_dev.kind == "loopback" else 0
    return RouteResult(r, tb, r.type, out_dev, s, gw, flags)


def _tb4(ns: Any, tb: int) -> int:
    """Without custom rules the local table is merged into main (``fib_table_merge`` /
    the ``fib_lookup`` fast path), so a result reports the main table."""
    return tb if fib_has_custom_rules(ns) else RT_TABLE_MAIN


def _lookup6(ns: Any, dst: Any, src: Any, iif_dev: Any, oif_dev: Any,
             mark: int) -> RouteResult | int:
    r, tb = fib_rules_lookup(ns, 10, dst, src, iif_dev, oif_dev, mark)
    if isinstance(r, int):
        return r
    if r.type == RTN_LOCAL:
        lo = ns.links.by_index(1)
        return RouteResult(r, tb, RTN_LOCAL, lo, str(dst), None, 0)
    s = r.prefsrc or ipv6_dev_get_saddr(ns, r.dev, dst)
    return RouteResult(r, tb, r.type, r.dev, s, r.gw, 0)
