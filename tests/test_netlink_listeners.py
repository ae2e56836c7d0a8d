"""``netlink_has_listeners`` answers from a listeners mask that ``netlink_update_listeners``
keeps at every change of a socket's groups (bind, NETLINK_ADD/DROP_MEMBERSHIP, close);
the XFRM notifications (``km_policy_notify``, ``km_state_notify``) are built only when it
says a member listens. A stale mask would either lose a monitor's events or build them for
nobody."""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from netlink_codec import netlink as N
from netlink_codec import xfrm as X
from tests.differential.test_policy_diff import add, m, pid
from tests.sad_helpers import M, Nl, messages
from xfrmd.clock import ManualClock
from xfrmd.kernel import Kernel, KernelError
from xfrmd.topology import load_topology

G = X.XfrmNlGrp
PROTOCOLS = (N.NETLINK_XFRM, N.NETLINK_ROUTE)
NAMESPACES = ("default", "blue")

group = st.integers(1, 32)
pick = st.integers(0, 63)
op = st.one_of(
    st.tuples(st.just("socket"), st.sampled_from(NAMESPACES), st.sampled_from(PROTOCOLS)),
    st.tuples(st.just("bind"), pick, st.integers(0, 2 ** 32 - 1)),
    st.tuples(st.just("add"), pick, group),
    st.tuples(st.just("drop"), pick, group),
    st.tuples(st.just("close"), pick),
    st.tuples(st.just("unbind"), pick),
)


def brute_force(kernel, ns, protocol, g):
    """The walk has_listeners used to do: any open socket of the protocol in the group."""
    return any(s.groups >> (g - 1) & 1 for s in kernel.netns(ns).sockets.get(protocol, ()))


@settings(max_examples=150, deadline=None)
@given(st.lists(op, max_size=40))
def test_has_listeners_matches_the_sockets(ops):
    kernel = Kernel(ManualClock(), topology=load_topology("bare"), seed=1)
    socks = []
    for o in ops:
        if o[0] == "socket":
            socks.append(kernel.socket(o[2], o[1], create=True))
            continue
        if not socks:
            continue
        s = socks[o[1] % len(socks)]
        try:
            if o[0] == "bind":
                kernel.bind(s, 0, o[2])
            elif o[0] == "unbind":
                kernel.bind(s, 0, 0)          # bind with no groups leaves the legacy ones
            elif o[0] == "add":
                kernel.setsockopt(s, N.SOL_NETLINK, N.NETLINK_ADD_MEMBERSHIP, o[2])
            elif o[0] == "drop":
                kernel.setsockopt(s, N.SOL_NETLINK, N.NETLINK_DROP_MEMBERSHIP, o[2])
            else:
                kernel.close(s)
        except KernelError:
            pass
        for ns in NAMESPACES:
            for protocol in PROTOCOLS:
                for g in range(0, 34):
                    want = g > 0 and brute_force(kernel, ns, protocol, g)
                    assert kernel.has_listeners(kernel.netns(ns), protocol, g) == want, (o, ns, protocol, g)


def test_a_closed_member_stops_listening(kernel):
    a = kernel.socket(N.NETLINK_XFRM)
    b = kernel.socket(N.NETLINK_XFRM, "blue", create=True)
    kernel.bind(a, 0, 1 << (G.POLICY - 1))
    kernel.setsockopt(b, N.SOL_NETLINK, N.NETLINK_ADD_MEMBERSHIP, G.POLICY)
    assert kernel.has_listeners(a.netns, N.NETLINK_XFRM, G.POLICY)
    kernel.close(a)
    assert not kernel.has_listeners(a.netns, N.NETLINK_XFRM, G.POLICY)
    assert kernel.has_listeners(b.netns, N.NETLINK_XFRM, G.POLICY)   # the other namespace's


def newpolicies(mon):
    return [t for d in mon.recv_all() for (t, _f, _s, _p, _raw) in messages(d) if t == M.NEWPOLICY]


def test_monitor_joining_after_an_add_gets_the_next_newpolicy(kernel):
    nl = Nl(kernel)
    mon = Nl(kernel, pid=777)
    nl.ok(add())
    assert newpolicies(mon) == []                       # not yet a member
    kernel.setsockopt(mon.s, N.SOL_NETLINK, N.NETLINK_ADD_MEMBERSHIP, G.POLICY)
    nl.ok(m(M.DELPOLICY, pid()))
    nl.ok(add())
    assert newpolicies(mon) == [M.NEWPOLICY]
    kernel.setsockopt(mon.s, N.SOL_NETLINK, N.NETLINK_DROP_MEMBERSHIP, G.POLICY)
    nl.ok(m(M.DELPOLICY, pid()))
    nl.ok(add())
    assert newpolicies(mon) == []
