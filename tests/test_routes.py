"""Routes on the sans-IO kernel, for what the differential suites cannot show: the Python
lookup the data path uses (``route_lookup``), charon's route requests (a dump of every table
without strict checking, RTM_NEWROUTE into table 220 with its notification), IPv6 route
expiry on the emulated clock, DAD completing at once, and what is not modelled answering
EOPNOTSUPP with an ``xfrmd:`` message."""
from __future__ import annotations

import errno as E
import ipaddress
import struct

from netlink_codec import netlink as N
from netlink_codec.netlink import nla, nla_u32
from tests.test_rtnl import Rt
from xfrmd.rtnl.fib import RTN_LOCAL, RTN_UNICAST, RouteResult, route_lookup

RTM_NEWROUTE, RTM_DELROUTE, RTM_GETROUTE, RTM_NEWRULE = 24, 25, 26, 32
RTA_DST, RTA_OIF, RTA_GATEWAY, RTA_PRIORITY, RTA_PREFSRC = 1, 4, 5, 6, 7
RTA_MULTIPATH, RTA_CACHEINFO, RTA_TABLE, RTA_EXPIRES = 9, 12, 15, 23
F_REQ_ACK = N.NLM_F_REQUEST | N.NLM_F_ACK
CREATE_REPLACE = F_REQ_ACK | 0x400 | 0x100
CREATE_EXCL = F_REQ_ACK | 0x400 | 0x200
GRP_IPV4_ROUTE, GRP_IPV6_ROUTE = 7, 11


def rtmsg(fam, dst_len, table=254, proto=4, scope=0, rtype=1, flags=0) -> bytes:
    return struct.pack("=BBBBBBBBI", fam, dst_len, 0, 0, table if table < 256 else 252, proto,
                       scope, rtype, flags)


def _a(text) -> bytes:
    return ipaddress.ip_address(text).packed


def _messages(rt, sock) -> list[tuple[int, int, int, int, dict]]:
    """(type, flags, seq, pid, {attr type: bytes}) of every datagram queued on ``sock``."""
    out = []
    while True:
        d = rt.k.recv(sock)
        if d is None:
            return out
        for h in N.split_messages(d):
            if h.type in (N.NLMSG_DONE, N.NLMSG_ERROR):
                continue
            attrs = {ra.type: bytes(d[ra.start:ra.end])
                     for ra in N.iter_attrs(d, h.offset + 16 + 12, h.offset + h.len)}
            attrs["rtm"] = bytes(d[h.offset + 16:h.offset + 28])
            out.append((h.type, h.flags, h.seq, h.pid, attrs))


def _route_listener(rt):
    s = rt.k.socket(N.NETLINK_ROUTE)
    rt.k.bind(s, groups=(1 << (GRP_IPV4_ROUTE - 1)) | (1 << (GRP_IPV6_ROUTE - 1)))
    return s


# -- the Python lookup -----------------------------------------------------------------------

def test_route_lookup_answers_like_ip_route_get_on_the_default_topology():
    rt = Rt("default")
    ns = rt.k.netns("default")
    res = route_lookup(ns, "8.8.8.8")
    assert isinstance(res, RouteResult)
    assert (res.dev.name, res.gw, res.src, res.type, res.table) == \
        ("eth2", "198.51.100.254", "198.51.100.1", RTN_UNICAST, 254)
    assert route_lookup(ns, "192.0.2.5").dev.name == "bond0"
    local = route_lookup(ns, "192.0.2.1")
    assert (local.type, local.dev.name, local.src) == (RTN_LOCAL, "lo", "192.0.2.1")
    six = route_lookup(ns, "2001:db8:3::9")
    assert (six.dev.name, six.src) == ("bond1", "2001:db8:3::1")
    assert route_lookup(ns, "2001:db8:99::1") == -E.ENETUNREACH     # no IPv6 default
    assert route_lookup(ns, "8.8.8.8", src="203.0.113.77") == -E.ENETUNREACH  # not local
    assert route_lookup(ns, "8.8.8.8", oif=999) == -E.ENODEV
    assert route_lookup(ns, "8.8.8.8", iif=ns.links.by_name("eth2"),
                        src="198.51.100.7") == -E.EHOSTUNREACH    # no forwarding


def test_route_lookup_follows_the_rules_and_the_mark():
    rt = Rt("default")
    ns = rt.k.netns("default")
    # ip rule add pref 100 fwmark 5 lookup 220; ip route add 8.8.8.0/24 dev bond0 table 220
    hdr = struct.pack("=BBBBBBBBI", 2, 0, 0, 0, 220, 0, 0, 1, 0)
    assert rt.req(RTM_NEWRULE, CREATE_EXCL,
                  hdr + nla_u32(6, 100) + nla_u32(10, 5) + nla_u32(16, 0xFFFFFFFF))[0] == 0
    bond0 = ns.links.by_name("bond0").ifindex
    assert rt.req(RTM_NEWROUTE, CREATE_EXCL, rtmsg(2, 24, 220, scope=253)
                  + nla(RTA_DST, _a("8.8.8.0")) + nla_u32(RTA_OIF, bond0)
                  + nla_u32(RTA_TABLE, 220))[0] == 0
    marked = route_lookup(ns, "8.8.8.8", mark=5)
    assert (marked.dev.name, marked.table, marked.src) == ("bond0", 220, "192.0.2.1")
    plain = route_lookup(ns, "8.8.8.8")
    assert (plain.dev.name, plain.table) == ("eth2", 254)


# -- what charon sends (install_routes = yes) -----------------------------

def test_charon_route_dump_and_table_220_route():
    rt = Rt("default")
    ns = rt.k.netns("default")
    ev = _route_listener(rt)
    # the dump charon sends: family 2 + RTA_DST, no strict checking: every table comes back
    rt.seq += 1
    rt.k.deliver(rt.s, N.encode_msg(RTM_GETROUTE, N.NLM_F_REQUEST | N.NLM_F_DUMP, rt.seq, 0,
                                    rtmsg(2, 32, 0, 0) + nla(RTA_DST, _a("198.51.100.9"))))
    tables = {struct.unpack("=I", a[RTA_TABLE])[0] for _, _, _, _, a in _messages(rt, rt.s)}
    assert tables == {254, 255}
    eth2 = ns.links.by_name("eth2").ifindex
    body = (rtmsg(2, 32, 220) + nla_u32(RTA_TABLE, 220) + nla(RTA_DST, _a("10.1.0.7"))
            + nla(RTA_PREFSRC, _a("198.51.100.1")) + nla(RTA_GATEWAY, _a("198.51.100.254"))
            + nla_u32(RTA_OIF, eth2))
    assert rt.req(RTM_NEWROUTE, CREATE_REPLACE, body) == (0, None)
    (t, flags, seq, pid, a), = _messages(rt, ev)
    # a new route is announced CREATE|EXCL even though charon asked CREATE|REPLACE
    assert (t, flags, seq, pid) == (RTM_NEWROUTE, 0x600, rt.seq, rt.s.portid)
    assert struct.unpack("=I", a[RTA_TABLE])[0] == 220 and a[RTA_DST] == _a("10.1.0.7")
    # charon's rule (pref 220 lookup 220) sends the peer through table 220
    hdr = struct.pack("=BBBBBBBBI", 2, 0, 0, 0, 220, 0, 0, 1, 0)
    assert rt.req(RTM_NEWRULE, CREATE_EXCL, hdr + nla_u32(6, 220))[0] == 0
    res = route_lookup(ns, "10.1.0.7")
    assert (res.table, res.gw, res.src) == (220, "198.51.100.254", "198.51.100.1")
    assert rt.req(RTM_DELROUTE, F_REQ_ACK, rtmsg(2, 32, 220, 0, 0, 0)
                  + nla_u32(RTA_TABLE, 220) + nla(RTA_DST, _a("10.1.0.7")))[0] == 0
    assert [m[0] for m in _messages(rt, ev)] == [RTM_DELROUTE]
    assert route_lookup(ns, "10.1.0.7").table == 254


# -- IPv6 specifics --------------------------------------------------------------------------

def test_ipv6_route_expires_on_the_emulated_clock():
    rt = Rt("default")
    ns = rt.k.netns("default")
    ev = _route_listener(rt)
    bond0 = ns.links.by_name("bond0").ifindex
    body = (rtmsg(10, 48, 254, 3) + nla(RTA_DST, _a("2001:db8:9::")) + nla_u32(RTA_OIF, bond0)
            + nla_u32(RTA_EXPIRES, 100))
    assert rt.req(RTM_NEWROUTE, CREATE_EXCL, body) == (0, None)
    (_, _, _, _, a), = _messages(rt, ev)
    assert struct.unpack_from("=I", a[RTA_PRIORITY])[0] == 1024        # IP6_RT_PRIO_USER
    assert struct.unpack_from("=i", a[RTA_CACHEINFO], 8)[0] == 100 * 100  # clock_t
    rt.k.advance(40)
    res = route_lookup(ns, "2001:db8:9::1")
    assert res.route.expires is not None and res.dev.name == "bond0"
    rt.k.advance(61)
    assert route_lookup(ns, "2001:db8:9::1") == -E.ENETUNREACH
    rt.seq += 1
    rt.k.deliver(rt.s, N.encode_msg(RTM_GETROUTE, N.NLM_F_REQUEST | N.NLM_F_DUMP, rt.seq, 0,
                                    rtmsg(10, 0, 0, 0)))
    dsts = [a.get(RTA_DST) for *_, a in _messages(rt, rt.s)]
    assert _a("2001:db8:9::") not in dsts
    assert [m[0] for m in _messages(rt, ev)] == [RTM_DELROUTE]          # fib6_age


def test_link_local_address_and_routes_when_a_veth_runs():
    rt = Rt()
    assert rt.add("v0", "veth", data=nla(1, struct.pack("=BxHiII", 0, 0, 0, 0, 0)
                                         + N.nla_string(3, "v1")))[0] == 0
    links = rt.links
    links.by_name("v0").address = bytes.fromhex("020000000001")
    assert rt.up("v0")[0] == 0
    assert [a.address for a in links.by_name("v0").addresses] == []    # no carrier yet
    assert rt.up("v1")[0] == 0
    (ll,) = links.by_name("v0").addresses
    assert (ll.address, ll.prefixlen, ll.scope, ll.flags) == ("fe80::ff:fe00:1", 64, 253, 0x80)
    ns = rt.k.netns("default")
    res = route_lookup(ns, "fe80::5", oif=links.by_name("v0"))
    assert (res.dev.name, res.src) == ("v0", "fe80::ff:fe00:1")
    assert rt.down("v0")[0] == 0
    assert links.by_name("v0").addresses == []                          # addrconf_ifdown


def test_what_is_not_modelled_answers_eopnotsupp_with_xfrmd_text():
    rt = Rt("default")
    bond0 = rt.links.by_name("bond0").ifindex
    err, msg = rt.req(RTM_NEWROUTE, CREATE_EXCL, rtmsg(10, 48)
                      + nla(RTA_DST, _a("2001:db8:7::"))
                      + nla(RTA_MULTIPATH, b"\x10\x00\x00\x00" + struct.pack("=I", bond0)
                            + bytes(8)))            # IPv6 multipath (IPv4's is modelled)
    assert err == -E.EOPNOTSUPP and msg.startswith("xfrmd:")
    err, msg = rt.req(RTM_NEWROUTE, CREATE_EXCL, rtmsg(10, 48, rtype=6)
                      + nla(RTA_DST, _a("2001:db8:7::")))
    assert err == -E.EOPNOTSUPP and msg.startswith("xfrmd:")
    err, msg = rt.req(RTM_NEWROUTE, CREATE_EXCL, rtmsg(2, 16, rtype=5)
                      + nla(RTA_DST, _a("10.7.0.0")) + nla_u32(RTA_OIF, bond0))
    assert err == -E.EOPNOTSUPP and msg.startswith("xfrmd:")
