"""Replay-state async events (net/xfrm/xfrm_replay.c ``xfrm_replay_notify*`` and
``xfrm_replay_timer_handler``): NEWAE on XFRMNLGRP_AEVENTS with XFRM_AE_CR when the
sequence numbers moved by ``replay_maxdiff``, XFRM_AE_CE when ``replay_maxage`` passed with
changes. The datapath calls :func:`replay_advanced` after it changed ``x.replay`` /
``x.replay_esn`` (input replay advance, output sequence number).

The replay timer armed at insert is kept lazily (``x.rtimer_when``): until the datapath first
touches the state its replay and preplay are equal, so that first expiry can only have set
XFRM_TIME_DEFER; a real timer is queued from the first event on. This keeps 100k idle SAs
from holding 100k timers.
"""
from __future__ import annotations

from netlink_codec import xfrm as X

from .sadb import StateDb, sad
from .state import HZ, XFRM_STATE_VALID, SecurityAssociation

XFRM_TIME_DEFER = 1
XFRM_REPLAY_UPDATE = X.XFRM_AE_CR
XFRM_REPLAY_TIMEOUT = X.XFRM_AE_CE
U32 = 0xFFFFFFFF


def _aevent_is_on(db: StateDb) -> bool:
    return db.listening(X.XfrmNlGrp.AEVENTS)


def _catch_up(db: StateDb, x: SecurityAssociation) -> None:
    """The lazily kept first replay-timer expiry: replay == preplay then, so it only defers."""
    when = x.rtimer_when
    if x.rtimer is None and when is not None and db.kernel.clock.now() >= when:
        x.rtimer_when = None
        x.xflags |= XFRM_TIME_DEFER


def _mod_timer(db: StateDb, x: SecurityAssociation) -> bool:
    """``mod_timer(&x->rtimer, jiffies + replay_maxage)``: True if it was still pending."""
    now = db.kernel.clock.now()
    pending = (x.rtimer is not None) or (x.rtimer_when is not None and now < x.rtimer_when)
    if x.rtimer is not None:
        x.rtimer.cancel()
    x.rtimer_when = None
    x.rtimer = db.kernel.add_timer(x.replay_maxage / HZ, lambda: _timer(db, x))
    return pending


def _timer(db: StateDb, x: SecurityAssociation) -> None:
    """``xfrm_replay_timer_handler``."""
    x.rtimer = None
    if x.km_state == XFRM_STATE_VALID:
        if _aevent_is_on(db):
            notify(db, x, XFRM_REPLAY_TIMEOUT)
        else:
            x.xflags |= XFRM_TIME_DEFER


def _moved(x: SecurityAssociation) -> bool:
    """Did seq or oseq move by at least replay_maxdiff since the last event?"""
    d = x.replay_maxdiff
    if x.replay_esn is None:                       # legacy
        lr, lp = x.replay, x.preplay
        return bool(d) and ((lr[1] - lp[1]) & U32 >= d or (lr[0] - lp[0]) & U32 >= d)
    r, p = x.replay_esn, x.preplay_esn
    assert p is not None                           # set with replay_esn
    if not x.flags & X.XFRM_STATE_ESN:       # bitmap mode
        return bool(d) and ((r.seq - p.seq) & U32 >= d or (r.oseq - p.oseq) & U32 >= d)
    if not d:                                      # ESN mode
        return False
    seq_diff = (r.seq - p.seq) & U32 if r.seq_hi == p.seq_hi else (~p.seq + r.seq + 1) & U32
    oseq_diff = (r.oseq - p.oseq) & U32 if r.oseq_hi == p.oseq_hi else (~p.oseq + r.oseq + 1) & U32
    return seq_diff >= d or oseq_diff >= d


def _unchanged(x: SecurityAssociation) -> bool:
    if x.replay_esn is None:
        return tuple(x.replay) == x.preplay
    return x.preplay_esn is not None and x.replay_esn.encode() == x.preplay_esn.encode()


def notify(db: StateDb, x: SecurityAssociation, event: int) -> None:
    """``xfrm_replay_notify`` / ``_bmp`` / ``_esn``."""
    if event == XFRM_REPLAY_UPDATE:
        if not _moved(x):
            if not x.xflags & XFRM_TIME_DEFER:
                return
            event = XFRM_REPLAY_TIMEOUT
    elif _unchanged(x):
        x.xflags |= XFRM_TIME_DEFER
        return
    if x.replay_esn is None:
        x.preplay = tuple(x.replay)
    else:
        x.preplay_esn = x.replay_esn.copy()
    db.km_aevent(x, event, 0, 0)
    if x.replay_maxage and not _mod_timer(db, x):
        x.xflags &= ~XFRM_TIME_DEFER


def replay_advanced(x: SecurityAssociation) -> None:
    """The datapath moved the replay state: ``if (xfrm_aevent_is_on(net))
    x->repl->notify(x, XFRM_REPLAY_UPDATE)``."""
    db = x.net if x.net is not None else None
    if db is None or x.km_state != XFRM_STATE_VALID:
        return
    _catch_up(db, x)
    if _aevent_is_on(db):
        notify(db, x, XFRM_REPLAY_UPDATE)


__all__ = ["replay_advanced", "notify", "sad"]
