"""xfrmd/xfrm/_spitab.c, the SAD's byspi table with its entries inline: every operation the
SAD uses answers as the dict it replaces (the reference, XFRMD_PURE_PYTHON=1), under random
sequences of stores, deletes and lookups that collide, wrap around the array and grow it."""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netlink_codec import cext
from xfrmd.clock import ManualClock
from xfrmd.kernel import Kernel
from xfrmd.xfrm import sadb

from .conftest import require

if cext.pure_python():
    pytest.skip("the pure-Python run: nothing to compare", allow_module_level=True)


@pytest.fixture
def table():
    require(sadb._spitab is not None, "needs the C extensions (python3 -m xfrmd.cext build)")
    return sadb._spitab.SpiTable


# SPIs: a few small ones (collisions and wrap-around in an 8-slot array) and the u32 edges
SPI = st.one_of(st.integers(0, 40), st.sampled_from([0xFFFFFFFF, 0xFFFFFFFE, 1 << 31, 0x1000]))
NOT_SPI = st.sampled_from([-1, 1 << 32, 1 << 64, "1", b"\x01", None, (1,), True])
OP = st.one_of(
    st.tuples(st.sampled_from(["set", "setdefault"]), SPI, st.integers(0, 5)),
    st.tuples(st.sampled_from(["get", "get2", "in", "del", "pop", "pop2", "getitem"]),
              st.one_of(SPI, NOT_SPI), st.just(0)),
    st.tuples(st.just("clear"), st.just(0), st.just(0)),
)


def _apply(t, op, k, v):
    """The operation's answer, or the exception's type."""
    try:
        if op == "set":
            t[k] = f"v{v}"
            return None
        if op == "setdefault":
            return t.setdefault(k, f"v{v}")
        if op == "get":
            return t.get(k)
        if op == "get2":
            return t.get(k, "dflt")
        if op == "in":
            return k in t
        if op == "del":
            del t[k]
            return None
        if op == "pop":
            return t.pop(k)
        if op == "pop2":
            return t.pop(k, "dflt")
        if op == "getitem":
            return t[k]
        t.clear()
        return None
    except (KeyError, TypeError, OverflowError) as e:
        return type(e) if not isinstance(e, (TypeError, OverflowError)) else "bad key"


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(OP, max_size=120))
def test_answers_as_the_dict(table, ops):
    t, ref = table(), {}
    for op, k, v in ops:
        if op in ("set", "setdefault") and not (isinstance(k, int) and 0 <= k < 1 << 32):
            continue            # the dict would store any key; the SAD stores only SPIs
        got, want = _apply(t, op, k, v), _apply(ref, op, k, v)
        assert got == want, (op, k)
        assert len(t) == len(ref)
    assert sorted(t.items()) == sorted(ref.items())
    assert sorted(t.keys()) == sorted(ref) == sorted(t)
    assert sorted(t.values()) == sorted(ref.values())


def test_stores_refuse_what_is_not_a_spi(table):
    t = table()
    for bad, err in ((-1, OverflowError), (1 << 32, OverflowError), ("1", TypeError)):
        with pytest.raises(err):
            t[bad] = 1
        with pytest.raises(err):
            t.setdefault(bad, 1)
        assert bad not in t and t.get(bad, "no") == "no"
    assert len(t) == 0


def test_grows_and_deletes_keep_every_entry(table):
    """A hundred thousand SPIs in, every other one out: each of the rest still found (the
    backward shift of a delete moves the right entries), the removed ones gone."""
    t = table()
    spis = [(i * 2654435761) & 0xFFFFFFFF for i in range(100_000)]
    for s in spis:
        t[s] = s
    for s in spis[::2]:
        del t[s]
    assert len(t) == 50_000
    assert all(t.get(s) == s for s in spis[1::2])
    assert not any(s in t for s in spis[::2])


def test_the_sad_uses_it(table):
    """StateDb.byspi is the C table when it is built (a dict under XFRMD_PURE_PYTHON=1)."""
    db = Kernel(ManualClock(), seed=1).netns("default").xfrm.sad
    assert type(db.byspi) is table
