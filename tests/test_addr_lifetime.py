"""Address lifetimes and point-to-point peers on the sans-IO kernel, on a manual clock:
``set_ifa_lifetime`` / ``check_lifetime`` (IPv4) and ``addrconf_verify`` (IPv6) — an
address with a finite valid lifetime is dynamic, its IFA_CACHEINFO counts down with the
emulated clock, it turns deprecated (RTM_NEWADDR) when its preferred lifetime ends and is
deleted (RTM_DELADDR, its routes with it) when its valid lifetime ends. The differential
against the real kernel is tests/differential/test_addr_diff.py."""
from __future__ import annotations

import errno as E
import ipaddress
import struct

from netlink_codec import netlink as N
from netlink_codec.netlink import encode_msg, nla, nla_u32

from .test_rtnl import CREATE, Rt, linkinfo, ifinfo

RTM_NEWADDR, RTM_DELADDR, RTM_GETADDR = 20, 21, 22
IFA_ADDRESS, IFA_LOCAL, IFA_CACHEINFO = 1, 2, 6
IFA_F_DEPRECATED, IFA_F_PERMANENT = 0x20, 0x80
INF = 0xFFFFFFFF


def _ifaddr(family, plen, index, local, peer=None, lifetimes=None) -> bytes:
    body = struct.pack("=BBBBi", family, plen, 0, 0, index)
    body += nla(IFA_LOCAL, ipaddress.ip_address(local).packed)
    body += nla(IFA_ADDRESS, ipaddress.ip_address(peer or local).packed)
    if lifetimes is not None:
        valid, prefered = lifetimes
        body += nla(IFA_CACHEINFO, struct.pack("=IIII", prefered, valid, 0, 0))
    return body


def _decode(d) -> list[tuple]:
    """(type, address, peer-or-None, flags, preferred, valid) of each address message."""
    out = []
    for h in N.split_messages(d):
        if h.type not in (RTM_NEWADDR, RTM_DELADDR):
            continue
        attrs = {ra.type: bytes(d[ra.start:ra.end])
                 for ra in N.iter_attrs(d, h.offset + 24, h.offset + h.len)}
        local = attrs.get(IFA_LOCAL, attrs[IFA_ADDRESS])
        peer = attrs[IFA_ADDRESS] if attrs[IFA_ADDRESS] != local else None
        prefered, valid = struct.unpack_from("=II", attrs[IFA_CACHEINFO])
        (flags,) = struct.unpack("=I", attrs[8])
        out.append((h.type, str(ipaddress.ip_address(local)),
                    peer and str(ipaddress.ip_address(peer)), flags, prefered, valid))
    return out


class Addr(Rt):
    def __init__(self):
        super().__init__()
        from xfrmd.clock import ManualClock
        self.k.clock = ManualClock(start=self.k.clock.now())    # time moves only when told
        assert self.req(16, CREATE, ifinfo() + nla(3, b"d0\0") + linkinfo("dummy"))[0] == 0
        self.index = self.links.by_name("d0").ifindex
        self.ev2 = self.k.socket(N.NETLINK_ROUTE)
        self.k.bind(self.ev2, groups=(1 << 4) | (1 << 8))

    def addr_events(self) -> list[tuple]:
        out = []
        while (d := self.k.recv(self.ev2)) is not None:
            out += _decode(d)
        return out

    def dump(self) -> list[tuple]:
        self.k.deliver(self.s, encode_msg(RTM_GETADDR, N.NLM_F_REQUEST | N.NLM_F_DUMP, 99, 0,
                                          struct.pack("=BBBBi", 0, 0, 0, 0, 0)))
        out = []
        while (d := self.k.recv(self.s)) is not None:
            out += _decode(d)
        return out


def test_lifetimes_count_down_deprecate_and_expire_with_the_clock():
    a = Addr()
    assert a.req(RTM_NEWADDR, CREATE, _ifaddr(2, 24, a.index, "192.0.2.1",
                                               lifetimes=(5, 2))) == (0, None)
    assert a.req(RTM_NEWADDR, CREATE, _ifaddr(10, 64, a.index, "2001:db8::1",
                                               lifetimes=(6, 3))) == (0, None)
    ev = a.addr_events()
    assert [(e[1], e[3] & IFA_F_PERMANENT, e[4], e[5]) for e in ev] == [
        ("192.0.2.1", 0, 2, 5), ("2001:db8::1", 0, 3, 6)]
    a.k.advance(1.5)                                  # whole seconds come off, rounded down
    assert [(e[1], e[4], e[5]) for e in a.dump()] == [("192.0.2.1", 1, 4), ("2001:db8::1", 2, 5)]
    assert a.addr_events() == []
    a.k.advance(0.5)                                  # 2 s: IPv4's preferred lifetime ends
    assert [(e[0], e[1], e[3] & IFA_F_DEPRECATED, e[4], e[5]) for e in a.addr_events()] == [
        (RTM_NEWADDR, "192.0.2.1", IFA_F_DEPRECATED, 0, 3)]
    a.k.advance(1)                                    # 3 s: IPv6's
    assert [(e[0], e[1], e[3] & IFA_F_DEPRECATED) for e in a.addr_events()] == [
        (RTM_NEWADDR, "2001:db8::1", IFA_F_DEPRECATED)]
    a.k.advance(2)                                    # 5 s: the IPv4 address is gone
    assert [(e[0], e[1]) for e in a.addr_events()] == [(RTM_DELADDR, "192.0.2.1")]
    a.k.advance(1)
    assert [(e[0], e[1]) for e in a.addr_events()] == [(RTM_DELADDR, "2001:db8::1")]
    assert a.dump() == []
    from xfrmd.rtnl.fib import all_routes
    ns = a.k.netns("default")
    assert not [r for f in (2, 10) for r in all_routes(ns, f) if r.dev.name == "d0"]


def test_replace_sets_new_lifetimes_and_an_infinite_one_makes_it_permanent():
    a = Addr()
    REPLACE = N.NLM_F_REQUEST | N.NLM_F_ACK | 0x100
    assert a.req(RTM_NEWADDR, CREATE, _ifaddr(2, 24, a.index, "192.0.2.1",
                                               lifetimes=(5, 5))) == (0, None)
    a.k.advance(3)
    assert a.req(RTM_NEWADDR, REPLACE, _ifaddr(2, 24, a.index, "192.0.2.1",
                                                lifetimes=(INF, INF))) == (0, None)
    a.k.advance(10)
    assert [(e[1], e[3] & IFA_F_PERMANENT, e[4], e[5]) for e in a.dump()] == [
        ("192.0.2.1", IFA_F_PERMANENT, INF, INF)]
    assert a.req(RTM_NEWADDR, REPLACE, _ifaddr(2, 24, a.index, "192.0.2.1",
                                                lifetimes=(4, 0))) == (0, None)
    assert [(e[3] & (IFA_F_PERMANENT | IFA_F_DEPRECATED), e[4], e[5]) for e in a.dump()] == [
        (IFA_F_DEPRECATED, 0, 4)]
    a.k.advance(4)
    assert a.dump() == []


def test_invalid_lifetimes_are_refused_with_the_kernels_text():
    a = Addr()
    for fam, addr, plen in ((2, "192.0.2.1", 24), (10, "2001:db8::1", 64)):
        for lft in ((0, 0), (3, 4)):
            assert a.req(RTM_NEWADDR, CREATE, _ifaddr(fam, plen, a.index, addr, lifetimes=lft)) \
                == (-E.EINVAL, f"ipv{4 if fam == 2 else 6}: address lifetime invalid")
    assert a.dump() == []


def test_peer_is_kept_and_routed_like_the_kernel():
    a = Addr()
    assert a.req(RTM_NEWADDR, CREATE, _ifaddr(2, 24, a.index, "10.0.0.1", "10.0.1.1")) == (0, None)
    assert a.req(RTM_NEWADDR, CREATE, _ifaddr(10, 64, a.index, "2001:db8:1::1",
                                               "2001:db8:2::1")) == (0, None)
    assert [(e[1], e[2]) for e in a.dump()] == [("10.0.0.1", "10.0.1.1"),
                                                ("2001:db8:1::1", "2001:db8:2::1")]


def test_ipv6_prefix_route_of_a_dynamic_address_expires_with_it():
    """inet6_addr_add gives the prefix route RTF_EXPIRES; deleting the address leaves the
    route to expire (check_cleanup_prefix_route), a permanent address takes it along."""
    import ipaddress as ip
    from xfrmd.rtnl.fib import all_routes
    a = Addr()
    up = N.NLM_F_REQUEST | N.NLM_F_ACK
    assert a.req(16, up, ifinfo(a.index, 1, 1)) == (0, None)
    assert a.req(RTM_NEWADDR, CREATE, _ifaddr(10, 64, a.index, "2001:db8::1",
                                               lifetimes=(30, 20))) == (0, None)
    assert a.req(RTM_NEWADDR, CREATE, _ifaddr(10, 64, a.index, "2001:db8:7::1")) == (0, None)
    ns = a.k.netns("default")
    now = a.k.clock.now()

    def prefix(net):
        return [r for r in all_routes(ns, 10) if r.dst == ip.ip_network(net)]
    [r] = prefix("2001:db8::/64")
    assert r.expires == now + 30
    [p] = prefix("2001:db8:7::/64")
    assert p.expires is None
    assert a.req(RTM_DELADDR, CREATE, _ifaddr(10, 64, a.index, "2001:db8::1")) == (0, None)
    assert a.req(RTM_DELADDR, CREATE, _ifaddr(10, 64, a.index, "2001:db8:7::1")) == (0, None)
    assert prefix("2001:db8::/64") and not prefix("2001:db8:7::/64")
    a.k.advance(30)
    assert not prefix("2001:db8::/64")
