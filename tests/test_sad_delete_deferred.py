"""A deleted SA leaves state_all, and its memory goes, at the end of a grace period, as the
kernel's xfrm_state_gc_task frees deleted states (xfrmd/xfrm/sadb.py ``StateDb.gc_task``;
docs/performance.md, "The SAD's 1M curve (session 12)"): until then it is gone for every
reader -- GETSA, DELSA, the dump, GETSADINFO's count, FLUSHSA -- and its SPI can be taken
again at once."""
import errno as E
import struct
import weakref

import pytest

from netlink_codec import netlink as N
from netlink_codec import xfrm as X
from xfrmd.xfrm import sadb

from .sad_helpers import M, Nl, attrs_of, messages, msg, newsa, usersa_id, usersa_info

G = X.XfrmNlGrp


@pytest.fixture
def nl(kernel):
    return Nl(kernel)


def _db(kernel):
    return kernel.netns("default").xfrm.sad


def dump_spis(nl):
    return [struct.unpack_from(">I", raw, 16 + 72)[0]
            for d in nl.send(msg(M.GETSA, b"", N.NLM_F_REQUEST | N.NLM_F_DUMP))
            for t, _f, _s, _p, raw in messages(d) if t == M.NEWSA]


def sad_count(nl):
    (_, _, _, _, raw), = [m for d in nl.send(msg(M.GETSADINFO, struct.pack("=I", 0xffffffff),
                                                   N.NLM_F_REQUEST)) for m in messages(d)]
    return struct.unpack("=I", attrs_of(raw, 4)[X.XfrmaSad.CNT])[0]


def _state(kernel, spi):
    return _db(kernel).lookup(0, usersa_id(spi=spi)[:16], spi, X.IPPROTO_ESP, X.AF_INET)


def test_deleted_is_gone_at_once_and_freed_at_the_grace_periods_end(kernel, nl):
    for spi in (1, 2, 3):
        nl.ok(newsa(spi=spi, reqid=spi))
    gone = weakref.ref(_state(kernel, 2))
    nl.ok(msg(M.DELSA, usersa_id(spi=2)))
    assert nl.errno_of(msg(M.GETSA, usersa_id(spi=2)))[0] == -E.ESRCH
    assert nl.errno_of(msg(M.DELSA, usersa_id(spi=2)))[0] == -E.ESRCH
    assert gone() is not None           # held until the grace period ends
    kernel.advance(sadb.STATE_GC_GRACE)
    assert gone() is None               # then freed
    assert dump_spis(nl) == [3, 1] and sad_count(nl) == 2


def test_every_reader_skips_the_deleted_before_the_grace_period_ends(kernel, nl):
    for spi in (1, 2, 3):
        nl.ok(newsa(spi=spi, reqid=spi))
    nl.ok(msg(M.DELSA, usersa_id(spi=2)))
    nl.ok(msg(M.DELSA, usersa_id(spi=3)))
    assert dump_spis(nl) == [1] and sad_count(nl) == 1
    # its SPI taken again at once: the new SA heads the dump (newest first)
    nl.ok(newsa(spi=2, reqid=9))
    nl.ok(msg(M.DELSA, usersa_id(spi=1)))
    assert dump_spis(nl) == [2] and sad_count(nl) == 1
    # FLUSHSA deletes the one live SA (one SA event, not three)
    km = Nl(kernel, groups=(G.SA,))
    nl.ok(msg(M.FLUSHSA, bytes([X.IPPROTO_ESP])))
    assert [t for d in km.recv_all() for t, *_ in messages(d)] == [M.FLUSHSA]
    assert dump_spis(nl) == [] and sad_count(nl) == 0
    kernel.advance(sadb.STATE_GC_GRACE)
    assert dump_spis(nl) == [] and sad_count(nl) == 0


def test_an_updsa_of_a_larval_state_leaves_one(kernel, nl):
    """replace_larval: the larval state goes with the grace period too."""
    payload = usersa_info(spi=0, reqid=5) + struct.pack("=II", 0x7000, 0x7000)
    nl.send(msg(M.ALLOCSPI, payload, N.NLM_F_REQUEST))
    nl.ok(newsa(t=M.UPDSA, spi=0x7000, reqid=5))
    assert dump_spis(nl) == [0x7000] and sad_count(nl) == 1
    assert len(_db(kernel).all) == 1


def test_a_clock_that_never_moves_holds_a_bounded_number(kernel, nl, monkeypatch):
    """Past STATE_GC_QHIMARK deleted states waiting, the next delete ends the grace period
    (an in-process user whose clock never moves holds at most that many)."""
    monkeypatch.setattr(sadb, "STATE_GC_QHIMARK", 4)
    for spi in range(1, 11):
        nl.ok(newsa(spi=spi, reqid=spi))
    first = weakref.ref(_state(kernel, 1))
    db = _db(kernel)
    for spi in range(1, 11):
        nl.ok(msg(M.DELSA, usersa_id(spi=spi)))
        assert len(db._gc) < 4
    assert first() is None
    assert sad_count(nl) == 0
