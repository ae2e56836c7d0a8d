"""Differential: POLEXPIRE events from the policy timer (xfrm_policy_timer ->
km_policy_expired -> xfrm_exp_policy_notify) of the real kernel against xfrmd on its manual
clock. The real side waits for the kernel's own timer (bounded, about 3 s); xfrmd just
advances its clock. Event bodies must be byte-equal once add times are zeroed."""
from __future__ import annotations

import select
import struct
import time

from netlink_codec import xfrm as X
from tests.conftest import require
from tests.differential.test_policy_diff import GROUPS, IFID, INF, MARK, TMPL1, _drain, _norm, add, sel
from tests.differential.test_sa_validation import FakeXfrm, RealXfrm, _can_netns
from tests.sad_helpers import M, Nl

REQUESTS = [
    # soft warning at 1 s, hard expiry at 3 s (the 30 s re-warning never comes)
    add(TMPL1, MARK, lft=(INF, INF, INF, INF, 1, 3, 0, 0), priority=7),
    # never used: the use limit counts from the add time, hard at 2 s
    add(IFID, s=sel("10.7.0.0"), dir=X.XFRM_POLICY_IN, lft=(INF, INF, INF, INF, 0, 0, 0, 2)),
    # a long limit that must not fire within the window
    add(s=sel("10.8.0.0"), lft=(INF, INF, INF, INF, 0, 600, 0, 0)),
]
EXPECTED_EXPIRES = 3


def _wait_expires(sock, n: int, limit: float = 10.0) -> list[bytes]:
    """The kernel's events until n POLEXPIRE have arrived (at most `limit` seconds)."""
    out: list[bytes] = []
    deadline = time.monotonic() + limit
    while sum(1 for t, _ in _norm(out) if t == M.POLEXPIRE) < n:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([sock], [], [], left)[0]:
            break
        out.append(sock.recv(65536))
    return out + _drain(sock)


def test_timer_polexpire_bodies_equal_the_kernel():
    require(_can_netns(), "needs root and iproute2 for a real-kernel netns")
    real = RealXfrm()
    try:
        listener = real.open(GROUPS)
        try:
            fake = FakeXfrm()
            mon = Nl(fake.nl.k, groups=(X.XfrmNlGrp.POLICY, X.XfrmNlGrp.EXPIRE), pid=777)
            for req in REQUESTS:
                assert _norm(fake.send(req)) == _norm(real.send(req))
            ev_real = _norm(_wait_expires(listener, EXPECTED_EXPIRES))
        finally:
            listener.close()
    finally:
        real.close()
    fake.nl.k.advance(10)
    ev_fake = _norm(mon.recv_all())
    # two policies' timers are independent: on a loaded host the kernel may deliver the
    # second policy's hard expiry (2 s) before the first one's soft warning (1 s, whose
    # timer ran late), so the expiries are compared as a set; each policy's own order
    # (soft before hard) is kept: a stable sort by the policy's selector
    def order(evs):
        adds = [e for e in evs if e[0] != M.POLEXPIRE]
        return adds + sorted((e for e in evs if e[0] == M.POLEXPIRE),
                             key=lambda e: e[1][16:16 + 56])
    ev_real, ev_fake = order(ev_real), order(ev_fake)
    kinds = [(t, r[16 + 168] if t == M.POLEXPIRE else None) for t, r in ev_real
             if t != "datagram"]
    assert sorted(kinds, key=lambda k: (int(k[0]), -1 if k[1] is None else k[1])) == \
        [(M.NEWPOLICY, None)] * 3 + [(M.POLEXPIRE, 0), (M.POLEXPIRE, 1), (M.POLEXPIRE, 1)]
    assert ev_fake == ev_real
    assert struct.unpack_from("=I", ev_fake[-1][1], 16 + 56 + 64 + 32 + 4)[0] != 0   # index
