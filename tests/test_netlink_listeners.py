"""``netlink_has_listeners`` answers from a listeners mask that ``netlink_update_listeners``
keeps at every change of a socket's groups (bind, NETLINK_ADD/DROP_MEMBERSHIP, close);
the XFRM notifications (``km_policy_notify``, ``km_state_notify``) are built only when it
says a member listens. A stale mask would either lose a monitor's events or build them for
nobody."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from netlink_codec import netlink as N
from netlink_codec import xfrm as X
from tests.differential.test_policy_diff import MARK, add, m, pid, tmpl
from tests.sad_helpers import M, Nl, messages, msg, newsa, usersa_id
from xfrmd.clock import ManualClock
from xfrmd.kernel import Kernel, KernelError
from xfrmd.topology import load_topology
from xfrmd.xfrm import sa_verify, spd
from xfrmd.xfrm.policy import Policy
from xfrmd.xfrm.state import SecurityAssociation

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


# -- the listener gate of NEWSA/UPDSA and NEWPOLICY/UPDPOLICY --------------------------------
# xfrm_add_sa, and xfrm_add_policy's C path, test the group's listener bit themselves and then
# notify without testing it again (xfrm_notify_sa, xfrm_notify_policy); the Python path of a
# policy (add_policy) and the deletes go through km_*_notify's own gate. Each way: the group's
# member gets the event, alone in its namespace with that group (a gate on the wrong bit would
# find no listener); the group's member in another namespace gets nothing, and once the member
# has left the group, neither it nor a socket in every other group gets anything.

OTHER_GROUPS = [g for g in G if g != G.NONE]
TMPL_INET = N.nla(X.Xfrma.TMPL, tmpl(family=X.AF_INET))


def _types(kernel, sock):
    out = []
    while (d := kernel.recv(sock)) is not None:
        out += [t for (t, _f, _s, _p, _raw) in messages(d)]
    return out


def _only_member_hears(kernel, group, requests, expect):
    nl = Nl(kernel)
    member = Nl(kernel, groups=(group,), pid=777)
    blue = kernel.socket(N.NETLINK_XFRM, "blue", create=True)
    kernel.setsockopt(blue, N.SOL_NETLINK, N.NETLINK_ADD_MEMBERSHIP, group)
    for r in requests[:-1]:
        nl.ok(r)
    assert [m[:3] for d in member.recv_all() for m in messages(d)] == expect
    assert _types(kernel, blue) == []
    assert nl.recv_all() == []                          # the sender: its ACKs only
    kernel.setsockopt(member.s, N.SOL_NETLINK, N.NETLINK_DROP_MEMBERSHIP, group)
    others = Nl(kernel, groups=[g for g in OTHER_GROUPS if g != group], pid=778)
    nl.ok(requests[-1])
    assert _types(kernel, member.s) == [] and _types(kernel, others.s) == []


@pytest.mark.parametrize("path", ["as built", "python"])
def test_sa_events_reach_the_sa_group_only(kernel, monkeypatch, path):
    if path == "python":
        monkeypatch.setattr(sa_verify, "_sacons", None)     # state_construct, not fast_state
    _only_member_hears(kernel, G.SA, [
        newsa(), newsa(t=M.UPDSA, seq=2), newsa(spi=0x2000, seq=3),
        msg(M.DELSA, usersa_id(), seq=4), newsa(spi=0x3000, seq=5)],
        [(M.NEWSA, 0, 1), (M.UPDSA, 0, 2), (M.NEWSA, 0, 3), (M.DELSA, 0, 4)])


@pytest.mark.parametrize("path", ["as built", "python"])
def test_policy_events_reach_the_policy_group_only(kernel, monkeypatch, path):
    calls = []
    python_path = spd.add_policy
    monkeypatch.setattr(spd, "add_policy", lambda req: calls.append(1) or python_path(req))
    # a template of the policy's family: the C path takes it when built; a mark: the Python
    mark = MARK if path == "python" else b""
    _only_member_hears(kernel, G.POLICY, [
        add(mark, TMPL_INET), add(mark, TMPL_INET, t=M.UPDPOLICY),
        add(mark, TMPL_INET, dir=X.XFRM_POLICY_IN), add(mark, TMPL_INET, dir=X.XFRM_POLICY_FWD)],
        [(M.NEWPOLICY, 0, 7), (M.UPDPOLICY, 0, 7), (M.NEWPOLICY, 0, 7)])
    if spd._polfast is not None:     # (else the dispatch table holds add_policy itself)
        assert len(calls) == (4 if path == "python" else 0)


def test_without_a_member_no_event_is_made(kernel, monkeypatch):
    """No listener: the events are not even built (the gate is before the message)."""
    def built(*a):
        raise AssertionError("a message built for nobody")
    monkeypatch.setattr(SecurityAssociation, "notify_message", built)
    monkeypatch.setattr(Policy, "notify_message", built)
    nl = Nl(kernel)
    Nl(kernel, groups=[g for g in OTHER_GROUPS if g not in (G.SA, G.POLICY)], pid=778)
    nl.ok(newsa())
    nl.ok(newsa(t=M.UPDSA))
    nl.ok(add(TMPL_INET))
    nl.ok(add(MARK, TMPL_INET))
