"""A deleted policy's by-index entry and memory go at the end of a grace period, as
xfrm_policy_destroy hands the free to call_rcu (xfrmd/xfrm/spdb.py; docs/performance.md,
"The SPD's delete at a million policies"): until then the policy is gone for every reader —
by index, by selector, in the dump, in the counts — and its index can be taken again."""
import errno as E
import gc
import struct
import sys

import pytest

from netlink_codec import netlink as N
from netlink_codec import xfrm as X
from tests.differential.test_policy_diff import COUNT, DUMP, TMPL1, add, m, pid, sel
from tests.sad_helpers import M, Nl, messages
from xfrmd.xfrm import spdb

S1, S2 = sel(dst="10.0.1.0"), sel(dst="10.0.2.0")


@pytest.fixture
def nl(kernel):
    return Nl(kernel)


def dump(nl):
    """(selector, index) of each policy, in dump order."""
    return [(raw[16:16 + 56], struct.unpack_from("=I", raw, 16 + 156)[0])
            for d in nl.send(DUMP) for t, _f, _s, _p, raw in messages(d) if t == M.NEWPOLICY]


def spd_count(nl):
    (t, _f, _s, _p, raw), = [x for d in nl.send(COUNT) for x in messages(d)]
    # u32 flags, then XFRMA_SPD_INFO: xfrmu_spdinfo {incnt, outcnt, ...}
    return struct.unpack_from("=I", raw, 16 + 4 + 4 + 4)[0]


def test_deleted_is_gone_for_every_reader_before_the_grace_period_ends(kernel, nl):
    nl.ok(add(TMPL1, s=S1))
    nl.ok(add(TMPL1, s=S2))
    (_, i2), (_, i1) = dump(nl)
    nl.ok(m(M.DELPOLICY, pid(S1)))
    assert nl.errno_of(m(M.GETPOLICY, pid(index=i1)))[0] == -E.ENOENT
    assert nl.errno_of(m(M.DELPOLICY, pid(index=i1)))[0] == -E.ENOENT
    assert nl.errno_of(m(M.DELPOLICY, pid(S1)))[0] == -E.ENOENT
    assert dump(nl) == [(S2, i2)] and spd_count(nl) == 1
    # by index, then a second delete of the same index
    nl.ok(m(M.DELPOLICY, pid(S2, index=i2)))
    assert nl.errno_of(m(M.DELPOLICY, pid(S2, index=i2)))[0] == -E.ENOENT
    assert dump(nl) == [] and spd_count(nl) == 0
    kernel.advance(spdb.RCU_GRACE)
    assert dump(nl) == [] and spd_count(nl) == 0


def test_a_deleted_index_can_be_taken_again_at_once_and_stays_after_the_grace(kernel, nl):
    nl.ok(add(TMPL1, s=S1, index=0x1001))        # the user's index (| dir OUT)
    (_, i1), = dump(nl)
    nl.ok(m(M.DELPOLICY, pid(S1)))
    nl.ok(add(TMPL1, s=S2, index=i1))            # before the deleted one's entry went
    assert dump(nl) == [(S2, i1)]
    kernel.advance(spdb.RCU_GRACE)               # the dead one's end leaves the new one
    (t, _f, _s, _p, raw), = [x for d in nl.send(m(M.GETPOLICY, pid(index=i1), N.NLM_F_REQUEST))
                             for x in messages(d)]
    assert t == M.NEWPOLICY and raw[16:16 + 56] == S2
    nl.ok(m(M.DELPOLICY, pid(index=i1)))
    assert dump(nl) == []


def test_an_update_takes_the_index_of_the_policy_it_replaces(kernel, nl):
    nl.ok(add(TMPL1, s=S1, priority=1))
    (_, i1), = dump(nl)
    nl.ok(add(TMPL1, t=M.UPDPOLICY, s=S1, priority=2))
    kernel.advance(spdb.RCU_GRACE)
    (t, _f, _s, _p, raw), = [x for d in nl.send(m(M.GETPOLICY, pid(index=i1), N.NLM_F_REQUEST))
                             for x in messages(d)]
    assert t == M.NEWPOLICY and struct.unpack_from("=I", raw, 16 + 152)[0] == 2


def _policies(n):
    return [add(TMPL1, s=sel(dst=f"10.{i >> 8}.{i & 255}.0")) for i in range(n)]


def test_the_memory_goes_at_the_end_of_the_grace_period(kernel, nl):
    """The policy, its key, template and index (≥ 3.5 blocks each) are kept until the grace
    period ends, then freed; one timer for the whole batch of deletes."""
    adds = _policies(400)
    for a in adds:
        nl.ok(a)
    db = kernel.netns("default").xfrm.spd
    dels = [m(M.DELPOLICY, a[16:16 + 56] + struct.pack("=IB3x", 0, X.XFRM_POLICY_OUT))
            for a in adds]
    for d in dels[:50]:          # the first answers allocate the socket's buffers
        nl.ok(d)
    kernel.advance(spdb.RCU_GRACE)
    gc.disable()
    try:
        before = sys.getallocatedblocks()
        for d in dels[50:]:
            nl.ok(d)
        during = before - sys.getallocatedblocks()
        # one grace-period timer for the batch, not one per delete
        assert sum(not t.cancelled and t.fn == db.rcu_barrier
                   for _, _, t in kernel._timers) == 1
        kernel.advance(spdb.RCU_GRACE)
        after = before - sys.getallocatedblocks()
    finally:
        gc.enable()
    assert dump(nl) == []
    assert during < 2 * 350, during              # the policies are still there
    assert (after - during) / 350 >= 3.5, (during, after)


def test_deletes_with_no_time_passing_keep_a_bounded_number(kernel, nl, monkeypatch):
    """A process that never lets time pass (a ManualClock) holds at most RCU_QHIMARK."""
    monkeypatch.setattr(spdb, "RCU_QHIMARK", 64)
    adds = _policies(300)
    for a in adds:
        nl.ok(a)
    db = kernel.netns("default").xfrm.spd
    for a in adds:
        nl.ok(m(M.DELPOLICY, a[16:16 + 56] + struct.pack("=IB3x", 0, X.XFRM_POLICY_OUT)))
        assert len(db.byidx) - len(db.all) <= 64     # the dead ones waiting
    assert dump(nl) == []


def test_flush_and_namespace_teardown(kernel, nl):
    for a in _policies(5):
        nl.ok(a)
    nl.ok(m(M.FLUSHPOLICY, b""))
    assert dump(nl) == [] and spd_count(nl) == 0
    xnet = kernel.netns("default").xfrm
    for a in _policies(3):
        nl.ok(a)
    xnet.flush_all()
    assert not xnet.policy_all and not xnet.spd.byidx


def test_the_server_ends_the_grace_period_on_its_own(xfrmd_server):
    """Through the real server: the deleted policies' by-index entries and memory go on the
    server's timer, with no request after the deletes."""
    import time

    from tests.differential.test_policy_diff import info
    db = xfrmd_server.kernel.netns("default").xfrm.spd
    sels = [sel(dst=f"10.9.{i}.0") for i in range(3)]
    with xfrmd_server.netlink(N.NETLINK_XFRM) as c:
        for s in sels:
            c.request(M.NEWPOLICY, N.NLM_F_ACK, info(s=s) + TMPL1)
        for s in sels[:2]:
            c.request(M.DELPOLICY, N.NLM_F_ACK, pid(s))
        deadline = time.monotonic() + 5
        while len(db.byidx) > 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(db.byidx) == 1 and len(db.all) == 1
        (reply,) = c.request(M.GETPOLICY, 0, pid(sels[2]))
        assert reply.type == M.NEWPOLICY
