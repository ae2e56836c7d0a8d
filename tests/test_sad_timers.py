"""A state's timer (sadb._arm, ``xfrm_timer_handler``): the larval state ALLOCSPI leaves
expires ``acq_expires`` seconds after it was made (``__find_acq_core`` starts its timer with
``sysctl_acq_expires``), no earlier and no later, with one hard EXPIRE; an UPDSA that replaces
it leaves no timer behind; and the states' timers run in deadline order with the other
kernel timers."""
from __future__ import annotations

import struct

from netlink_codec import netlink as N
from netlink_codec import xfrm as X
from xfrmd.xfrm import sadb

from .sad_helpers import INF, M, Nl, messages, msg, newsa, usersa_info

G = X.XfrmNlGrp


def allocspi(reqid: int, dst: str = "198.51.100.1") -> bytes:
    info = usersa_info(dst=dst, spi=0, reqid=reqid)
    return msg(M.ALLOCSPI, info + struct.pack("=II", 0x100, 0x1000), N.NLM_F_REQUEST,
               seq=reqid)


def _spi(nl: Nl, data: bytes) -> int:
    (t, _, _, _, raw), = [m for d in nl.send(data) for m in messages(d)]
    assert t == M.NEWSA
    return X.XfrmUsersaInfo.decode(raw, 16).id.spi


def _expires(nl: Nl) -> list[tuple[int, int]]:
    """(reqid, hard) of each EXPIRE received."""
    out = []
    for d in nl.recv_all():
        for t, _, _, _, raw in messages(d):
            if t == M.EXPIRE:
                e = X.XfrmUserExpire.decode(raw, 16)
                out.append((e.state.reqid, e.hard))
    return out


def test_the_larval_state_expires_at_acq_expires(kernel):
    km = Nl(kernel, groups=(G.EXPIRE,))
    _spi(km, allocspi(reqid=7))
    kernel.advance(29.75)
    assert _expires(km) == []
    assert kernel.next_deadline() == kernel.clock.now() + 0.25
    kernel.advance(0.25)
    assert _expires(km) == [(7, 1)]
    # what is left is the deleted state's grace period (sadb.StateDb.gc_task), then nothing
    assert kernel.next_deadline() == kernel.clock.now() + sadb.STATE_GC_GRACE
    assert kernel.advance(sadb.STATE_GC_GRACE) == 1
    assert kernel.next_deadline() is None
    # gone from the SAD: a second ALLOCSPI for the same flow makes a new larval state
    _spi(km, allocspi(reqid=7))
    kernel.advance(30)
    assert _expires(km) == [(7, 1)]


def test_an_updsa_of_the_larval_state_leaves_no_timer(kernel):
    km = Nl(kernel, groups=(G.EXPIRE,))
    spi = _spi(km, allocspi(reqid=3))
    km.ok(newsa(t=M.UPDSA, spi=spi, reqid=3, seq=9))
    # the larval state's timer was cancelled: what is left is its grace period (gc_task)
    assert kernel.next_deadline() == kernel.clock.now() + sadb.STATE_GC_GRACE
    assert kernel.advance(60) == 1                 # that ran, and nothing else
    assert _expires(km) == []


def test_timers_run_in_deadline_order(kernel):
    """Larval states made at 0 s and 1 s and an SA with a 30.5 s hard add lifetime made at
    0.5 s: hard EXPIREs at 30 s, 30.5 s, 31 s, in that order."""
    km = Nl(kernel, groups=(G.EXPIRE,))
    _spi(km, allocspi(reqid=1))
    kernel.advance(0.5)
    lft = (INF, INF, INF, INF, 0, 30, 0, 0)
    km.ok(newsa(spi=0x5000, reqid=2, seq=5, lft=lft, dst="203.0.113.9"))
    kernel.advance(0.5)
    _spi(km, allocspi(reqid=3, dst="203.0.113.7"))
    got = []
    for _ in range(4):
        kernel.advance(10)
        got += [(kernel.clock.now(), e) for e in _expires(km)]
    assert [e for _, e in got] == [(1, 1), (2, 1), (3, 1)]
