"""xfrmd/xfrm/state_list.py, the SAD's state_all: insertion order through deletes, re-adds and
the rebuild that drops its holes; what the readers see (len, iteration, values) is the live
states only; the dump's order (newest first) follows it."""
from __future__ import annotations

import struct

from netlink_codec import cext
from netlink_codec import netlink as N
from xfrmd.xfrm import sa_verify
from xfrmd.xfrm.state_list import StateList

from .sad_helpers import M, Nl, messages, msg, newsa, usersa_id


class _S:
    __slots__ = ("all_pos", "name")

    def __init__(self, name):
        self.name, self.all_pos = name, -1


def test_order_holes_and_rebuild():
    sl = StateList()
    xs = [_S(i) for i in range(300)]
    for x in xs:
        sl.append(x)
    sl.remove_all(xs[:100:2])            # 50 holes: no rebuild yet
    assert sl.holes == 50 and len(sl) == 250
    assert [x.name for x in sl] == [i for i in range(300) if i >= 100 or i % 2]
    sl.remove_all(xs[100:250])           # holes outnumber states: rebuilt
    assert sl.holes == 0 and len(sl.slots) == len(sl) == 100
    assert [x.name for x in sl.values()] == [i for i in range(1, 100, 2)] + list(range(250, 300))
    assert all(sl.slots[x.all_pos] is x for x in sl)
    assert xs[299] in sl and xs[0] not in sl and _S("new") not in sl
    sl.remove_all([xs[0]])               # not in it: nothing happens
    assert len(sl) == 100 and sl.holes == 0


def _dump_spis(nl):
    return [struct.unpack_from(">I", raw, 16 + 72)[0]
            for d in nl.send(msg(M.GETSA, b"", N.NLM_F_REQUEST | N.NLM_F_DUMP))
            for t, _f, _s, _p, raw in messages(d) if t == M.NEWSA]


def test_the_dump_keeps_the_kernels_order_through_many_deletes(kernel):
    """Newest first, as xfrm_state_walk reads state_all, after enough deletes and grace
    periods to rebuild the list; re-added SPIs go to the head."""
    nl = Nl(kernel)
    live = []
    for spi in range(1, 401):
        nl.ok(newsa(spi=spi, reqid=spi))
        live.append(spi)
    for rnd in range(3):
        for spi in [s for s in live if s % 3 == rnd][:90]:
            nl.ok(msg(M.DELSA, usersa_id(spi=spi)))
            live.remove(spi)
        kernel.advance(0.1)              # the grace period's end
        for spi in range(1000 + rnd * 10, 1005 + rnd * 10):
            nl.ok(newsa(spi=spi, reqid=spi))
            live.append(spi)
    assert _dump_spis(nl) == live[::-1]
    sa_all = kernel.netns("default").xfrm.state_all
    assert len(sa_all) == len(live) and sa_all.holes == 0      # rebuilt once


def test_the_c_constructor_still_follows_the_state():
    """_sacons.setup refuses a SecurityAssociation whose __init__ leaves a slot unset (then
    NEWSA silently runs the Python path): all_pos is set there."""
    if not cext.pure_python() and cext.find("xfrmd.xfrm._sacons", sa_verify.source(
            "xfrmd.xfrm._sacons")) is not None:
        assert sa_verify._sacons is not None
