"""UPDSA of a larval state (``xfrm_state_update``: ``__xfrm_state_insert`` of the new state,
then ``__xfrm_state_delete`` of the larval one): ``StateDb.replace_larval`` puts the new
state into the slots the larval state had alone and must leave every table, every chain's
order and every answer as the insert-then-delete reference does."""
from __future__ import annotations

import struct

import pytest
from netlink_codec import netlink as N
from netlink_codec import xfrm as X

from xfrmd.clock import ManualClock
from xfrmd.kernel import Kernel
from xfrmd.xfrm.sadb import StateDb, oldest_first

from .sad_helpers import M, Nl, messages, msg, newsa, usersa_info


def _reference(self, x, x1):
    self.insert(x)
    self.delete(x1)


def _desc(x):
    return (x.id.daddr, x.id.spi, x.reqid, x.km_state, x.km_seq, x.saddr)


def _tables(kernel):
    db = kernel.netns("default").xfrm.sad
    out = {"all": [_desc(x) for x in db.all]}
    for name in ("byspi", "bydst", "byseq", "bysrc"):
        t = getattr(db, name)
        out[name] = sorted((repr(k), [_desc(x) for x in oldest_first(v)]) for k, v in t.items())
    out["hmask"] = db.xnet.state_hmask
    return out


def _allocspi(nl, spi, seq=0, **kw):
    payload = usersa_info(spi=0, seq=seq, **kw) + struct.pack("=II", spi, spi)
    return [m for d in nl.send(msg(M.ALLOCSPI, payload, N.NLM_F_REQUEST)) for m in messages(d)]


def _scenario(nl, case):
    """Requests ending with UPDSAs of larval states; the answers, for comparison."""
    out = []
    if case == "charon":            # ALLOCSPI without reqid, UPDSA with one
        out += _allocspi(nl, 0x200, reqid=0)
        out += nl.send(newsa(t=M.UPDSA, spi=0x200, reqid=5))
    elif case == "same_reqid":      # the larval state alone in the new state's bydst slot
        out += _allocspi(nl, 0x200, reqid=5)
        out += nl.send(newsa(t=M.UPDSA, spi=0x200, reqid=5))
    elif case == "shared_bydst":    # two larval states in one bydst chain
        out += _allocspi(nl, 0x200, reqid=5)
        out += _allocspi(nl, 0x300, reqid=5, src="192.0.2.1")
        out += nl.send(newsa(t=M.UPDSA, spi=0x200, reqid=5))
        out += nl.send(newsa(t=M.UPDSA, spi=0x300, reqid=5))
    elif case == "shared_spi":      # an SA of another daddr with the same SPI first
        out += nl.send(newsa(spi=0x200, dst="203.0.113.9", reqid=5))
        out += _allocspi(nl, 0x200, reqid=5)
        out += nl.send(newsa(t=M.UPDSA, spi=0x200, reqid=5))
    elif case == "seq":             # ALLOCSPI and UPDSA carrying a sequence number
        out += _allocspi(nl, 0x200, seq=77, reqid=0)
        out += nl.send(newsa(t=M.UPDSA, spi=0x200, reqid=5, seq=77))
    elif case == "many":            # past hash growth, with a mark
        for i in range(20):
            out += _allocspi(nl, 0x400 + i, reqid=i % 3)
        for i in range(20):
            out += nl.send(newsa(t=M.UPDSA, spi=0x400 + i, reqid=1 + i % 2))
    out += nl.send(msg(M.GETSA, b"", N.NLM_F_REQUEST | N.NLM_F_DUMP))
    return out


def _run(case, monkeypatch=None):
    k = Kernel(ManualClock(), seed=3)
    nl = Nl(k, groups=(X.XFRMNLGRP_SA,) if hasattr(X, "XFRMNLGRP_SA") else ())
    answers = _scenario(nl, case)
    k.advance(40)                   # the larval states' acquire timers (now cancelled)
    return answers, _tables(k)


@pytest.mark.parametrize("case", ["charon", "same_reqid", "shared_bydst", "shared_spi", "seq",
                                  "many"])
def test_replace_larval_leaves_the_tables_as_insert_then_delete(case, monkeypatch):
    fast = _run(case)
    with monkeypatch.context() as m:
        m.setattr(StateDb, "replace_larval", _reference)
        ref = _run(case)
    assert fast == ref
    db_states = fast[1]["all"]
    assert db_states and all(d[1] for d in db_states)          # every state has its SPI
