"""Where a policy keeps what a DELPOLICY reads, and how the by-index table is keyed
(docs/performance.md, "The SPD's 1M curve (session 12)"): at a million policies each cold
cache line a request reads is a miss of its own."""
import ctypes

from hypothesis import given
from hypothesis import strategies as st

from xfrmd.xfrm.policy import Policy, _PolicyHead
from xfrmd.xfrm.spdb import idx_key


def _offset(pol: Policy, name: str) -> int:
    """The byte offset in the object of the slot ``name`` (found by what it holds)."""
    mark = object()
    old = getattr(pol, name)
    setattr(pol, name, mark)
    try:
        found = [o for o in range(0, type(pol).__basicsize__, 8)
                 if ctypes.c_void_p.from_address(id(pol) + o).value == id(mark)]
    finally:
        setattr(pol, name, old)
    (off,) = found
    return off


def test_what_a_delete_reads_is_in_the_objects_first_line():
    """dead, dir, index, key, timer, xdo (PolicyDb.delete, _kill, the grace period's end) sit
    right after the refcount and the type: one line of 64 bytes with them."""
    pol = Policy(b"k" * 70, (0,) * 8, 0, 9, 0, 0, 0, (), (0, 0), 0, 1, 2)
    offsets = {n: _offset(pol, n) for n in _PolicyHead.__slots__}
    assert set(_PolicyHead.__slots__) == {"dead", "dir", "index", "key", "timer", "xdo"}
    assert max(offsets.values()) + 8 <= 64, offsets


@given(st.integers(0, 0xFFFFFFFF))
def test_the_index_key_is_a_rotation(index):
    k = idx_key(index)
    assert 0 <= k <= 0xFFFFFFFF
    assert ((k << 3) | (k >> 29)) & 0xFFFFFFFF == index      # rotated back


def test_consecutive_generator_indices_have_consecutive_keys():
    """xfrm_gen_index steps by 8: the keys of one direction's indices step by 1 (an int's
    hash is its value: consecutive slots of the dict, no probing through older entries)."""
    for d in range(3):
        keys = [idx_key(g | d) for g in range(8, 8 * 1000, 8)]
        assert all(b - a == 1 for a, b in zip(keys, keys[1:]))
