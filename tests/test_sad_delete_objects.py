"""What one SA costs to keep and to delete (docs/performance.md, "The SAD's delete at a million
SAs"): the memory blocks a DELSA frees, the selector and the replay timer's expiry shared
between states, and that sharing them changes nothing a key manager reads back."""
import gc
import sys

from netlink_codec import xfrm as X
from xfrmd.xfrm.state import HZ

from .sad_helpers import M, Nl, messages, msg, newsa, selector, usersa_id


def _states(kernel):
    return kernel.netns("default").xfrm.sad


def _load(nl, n, **kw):
    for i in range(n):
        nl.ok(newsa(spi=0x1000 + i, reqid=i + 1, **kw))


def test_a_delete_frees_at_most_nine_blocks(kernel):
    """The state and what only it holds: itself, its id and SPI, reqid, algorithm and key,
    current lifetime, the bydst key, its place in state_all (``all_pos``, since session 12:
    state_all is a list, no dict entry). The selector and the replay timer's expiry are
    shared; before, each SA had its own (9.5 blocks a delete, 10.5 with the place). The
    blocks go at the end of the grace period (sadb.StateDb.gc_task), not in the DELSA."""
    nl = Nl(kernel, ext_ack=False)
    _load(nl, 600, sel=selector("192.0.2.1", "198.51.100.1", 32, 32, X.AF_INET))
    dels = [msg(M.DELSA, usersa_id(spi=0x1000 + i)) for i in range(100, 500)]
    for d in dels[:50]:          # the first answers allocate the socket's buffers
        nl.ok(d)
    db = _states(kernel)
    db.gc_task()                 # their grace period's end
    gc.disable()
    try:
        before = sys.getallocatedblocks()
        for d in dels[50:]:
            nl.ok(d)
        db.gc_task()             # the deleted states are freed at the grace period's end
        freed = (before - sys.getallocatedblocks()) / len(dels[50:])
    finally:
        gc.enable()
    assert len(_states(kernel).all) == 600 - 400
    assert 7 <= freed <= 9, freed


def test_equal_selectors_are_one_object_and_read_back_each(kernel):
    nl = Nl(kernel)
    sel = selector("192.0.2.1", "198.51.100.1", 32, 32, X.AF_INET)
    _load(nl, 3, sel=sel)
    nl.ok(newsa(spi=0x2000, reqid=9, sel=selector("192.0.2.7", "198.51.100.7", 32, 32,
                                                      X.AF_INET)))
    xs = list(_states(kernel).all)
    assert xs[0].sel is xs[1].sel is xs[2].sel
    assert xs[3].sel is not xs[0].sel and xs[3].sel[:4] == bytes([198, 51, 100, 7])
    # GETSA gives each its own selector back (xfrm_usersa_info begins with it)
    for spi, want in ((0x1001, sel), (0x2000, xs[3].sel)):
        got = [m for d in nl.send(msg(M.GETSA, usersa_id(spi=spi))) for m in messages(d)]
        assert got[0][0] == M.NEWSA and got[0][4][16:16 + 56] == want


def test_states_of_one_jiffy_share_the_replay_timer_expiry(kernel):
    """mod_timer(&x->rtimer, jiffies + replay_maxage) at insert: the expiry is a jiffy; the
    states inserted in the same one hold the same float, a later one its own."""
    nl = Nl(kernel)
    _load(nl, 2)
    kernel.clock.advance(0.25)
    nl.ok(newsa(spi=0x3000, reqid=7))
    a, b, c = _states(kernel).all
    assert a.replay_maxage == b.replay_maxage == c.replay_maxage == 1000
    assert a.rtimer_when is b.rtimer_when
    assert a.rtimer_when == kernel.clock.now() - 0.25 + a.replay_maxage / HZ
    assert c.rtimer_when == kernel.clock.now() + c.replay_maxage / HZ
