"""Policy lifetimes on the manual clock, as xfrm_policy_timer runs them: the first check one
second after xfrm_policy_insert, soft warnings (POLEXPIRE hard=0) repeated every
XFRM_KM_TIMEOUT, a hard expiry deletes the policy and sends POLEXPIRE hard=1 and no
DELPOLICY; an unused policy's use-time limits count from its add time."""
import errno as E
import struct

import pytest

from netlink_codec import netlink as N
from netlink_codec import xfrm as X
from tests.differential.test_policy_diff import INF, MARK, TMPL1, add, m, pid
from tests.sad_helpers import M, Nl, attrs_of, messages

G = X.XfrmNlGrp


def lft(soft_add=0, hard_add=0, soft_use=0, hard_use=0):
    return (INF, INF, INF, INF, soft_add, hard_add, soft_use, hard_use)


@pytest.fixture
def nl(kernel):
    return Nl(kernel)


@pytest.fixture
def mon(kernel):
    return Nl(kernel, groups=(G.POLICY, G.EXPIRE), pid=777)


def events(mon):
    return [(t, raw) for d in mon.recv_all() for (t, _f, _s, _p, raw) in messages(d)]


def expiries(mon):
    """(hard flag, raw message) of each POLEXPIRE; nothing else may arrive."""
    evs = events(mon)
    assert all(t == M.POLEXPIRE for t, _ in evs), [t for t, _ in evs]
    return [(raw[16 + 168], raw) for _, raw in evs]


def get(nl, *attrs):
    return [msg for d in nl.send(m(M.GETPOLICY, pid() + b"".join(attrs), N.NLM_F_REQUEST))
            for msg in messages(d)][0]


def test_soft_then_hard_add_expiry(kernel, nl, mon):
    nl.ok(add(TMPL1, MARK, lft=lft(soft_add=5, hard_add=10)))
    assert [t for t, _ in events(mon)] == [M.NEWPOLICY]
    kernel.advance(4.9)
    assert events(mon) == []
    kernel.advance(0.1)
    (hard, raw), = expiries(mon)
    assert hard == 0
    assert raw[16 + 169:16 + 176] == bytes(7)
    # xfrm_exp_policy_notify copies the policy as GETPOLICY does (userpolicy_info, then
    # the same attributes after the 8-byte hard/pad block)
    t, _f, _s, _p, body = get(nl, MARK)
    assert t == M.NEWPOLICY
    assert raw[16:16 + 168] == body[16:16 + 168]
    assert raw[16 + 176:] == body[16 + 168:]
    kernel.advance(4.9)
    assert events(mon) == []
    kernel.advance(0.1)
    (hard, raw), = expiries(mon)
    assert hard == 1
    assert get(nl, MARK)[0] == N.NLMSG_ERROR
    assert nl.errno_of(m(M.GETPOLICY, pid() + MARK))[0] == -E.ENOENT
    kernel.advance(100)
    assert events(mon) == []


def test_soft_warning_repeats_every_km_timeout(kernel, nl, mon):
    nl.ok(add(lft=lft(soft_add=5)))
    events(mon)
    kernel.advance(5)
    assert [h for h, _ in expiries(mon)] == [0]
    kernel.advance(29.9)
    assert expiries(mon) == []
    kernel.advance(0.1)
    assert [h for h, _ in expiries(mon)] == [0]
    kernel.advance(60)
    assert [h for h, _ in expiries(mon)] == [0, 0]
    nl.ok(add(t=M.UPDPOLICY, lft=lft()))
    events(mon)
    kernel.advance(100)       # the replacement has no limits: its timer never warns
    assert events(mon) == []


def test_unused_policy_use_limit_counts_from_add_time(kernel, nl, mon):
    nl.ok(add(lft=lft(hard_use=7)))
    events(mon)
    kernel.advance(6.9)
    assert expiries(mon) == []
    kernel.advance(0.1)
    assert [h for h, _ in expiries(mon)] == [1]


def test_update_restarts_lifetimes(kernel, nl, mon):
    nl.ok(add(lft=lft(hard_add=10)))
    kernel.advance(8)
    nl.ok(add(t=M.UPDPOLICY, lft=lft(hard_add=10)))
    assert [t for t, _ in events(mon)] == [M.NEWPOLICY, M.UPDPOLICY]
    kernel.advance(9.9)
    assert expiries(mon) == []
    kernel.advance(0.1)
    assert [h for h, _ in expiries(mon)] == [1]


@pytest.mark.parametrize("remove", [
    m(M.DELPOLICY, pid()),
    m(M.FLUSHPOLICY, b""),
], ids=["delete", "flush"])
def test_removed_policy_never_expires(kernel, nl, mon, remove):
    nl.ok(add(lft=lft(soft_add=2, hard_add=3)))
    nl.ok(remove)
    events(mon)
    kernel.advance(100)
    assert events(mon) == []


def test_hard_expiry_frees_index_lookups_and_counts(kernel, nl, mon):
    nl.ok(add(lft=lft(hard_add=2)))
    nl.ok(add(dir=0))
    events(mon)
    kernel.advance(2)
    assert [h for h, _ in expiries(mon)] == [1]
    # only the in-policy is left: GETSPDINFO counts and both lookups agree
    t, _f, _s, _p, raw = [x for d in nl.send(m(M.GETSPDINFO, struct.pack("=I", 0xFFFFFFFF),
                                               N.NLM_F_REQUEST)) for x in messages(d)][0]
    assert t == M.NEWSPDINFO
    assert struct.unpack("=6I", attrs_of(raw, 4)[X.XfrmaSpd.INFO])[:3] == (1, 0, 0)
    assert nl.errno_of(m(M.GETPOLICY, pid(s=bytes(56), index=1)))[0] == -E.ENOENT
    assert nl.errno_of(m(M.GETPOLICY, pid()))[0] == -E.ENOENT
    nl.ok(add())             # the selector is free again
