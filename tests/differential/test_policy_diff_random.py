"""Differential with hypothesis: random sequences of policy requests (add, update, get and
delete by selector or by index, dump, flush per type) sent to one real-kernel netns and one
xfrmd kernel; every reply, and the POLICY/EXPIRE events of each example, must be byte-equal. The two live across examples (each example
starts with a flush of both types), so index generation must stay in step as well."""
from __future__ import annotations

import socket

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netlink_codec import netlink as N
from tests.conftest import require
from netlink_codec import xfrm as X
from tests.differential.test_policy_diff import (DUMP, GROUPS, IFID, MARK, TMPL1, V6, _norm, add, info, m,
                                                 pid, ptype, sel, tmpl)
from tests.differential.test_sa_validation import FakeXfrm, RealXfrm, _can_netns
from tests.sad_helpers import A, M, Nl

pytestmark = pytest.mark.netns

SELS = [sel(), sel("10.9.0.0"), sel(ps=32, pd=16), V6]
EXTRA = [b"", MARK, IFID, ptype(1)]


@pytest.fixture(scope="module")
def pair():
    require(_can_netns(), "needs root and iproute2 for a real-kernel netns")
    real = RealXfrm()
    real.listener = real.open(GROUPS)
    fake = FakeXfrm()
    fake.listener = Nl(fake.nl.k, groups=(X.XfrmNlGrp.POLICY, X.XfrmNlGrp.EXPIRE), pid=777)
    yield real, fake
    real.listener.close()
    real.close()


def _pending(sock) -> list[bytes]:
    """What the listener holds now: the kernel queued each event before its ACK."""
    out = []
    while True:
        try:
            out.append(sock.recv(65536, socket.MSG_DONTWAIT))
        except BlockingIOError:
            return out


TMPLS = [b"", TMPL1, N.nla(A.TMPL, tmpl(optional=1)), N.nla(A.TMPL, tmpl(mode=0) * 2),
         N.nla(A.TMPL, tmpl("2001:db8::1", "2001:db8::2", family=X.AF_INET6))]

op = st.one_of(
    st.builds(lambda s, d, p, x, t, tm, i: add(EXTRA[x], TMPLS[tm], s=SELS[s], dir=d,
                                               priority=p, t=t, index=i),
              st.integers(0, 3), st.integers(0, 2), st.sampled_from([0, 5, 0x7FFFFFFF]),
              st.integers(0, 3), st.sampled_from([M.NEWPOLICY, M.UPDPOLICY]),
              st.integers(0, len(TMPLS) - 1), st.sampled_from([0, 0, 0, 8, 9, 10, 0x101])),
    st.builds(lambda i, h: m(M.POLEXPIRE, info(index=i) + bytes([h]) + bytes(7)),
              st.integers(0, 20), st.integers(0, 1)),
    st.builds(lambda t, s, d, x: m(t, pid(s=SELS[s], dir=d) + EXTRA[x]),
              st.sampled_from([M.GETPOLICY, M.DELPOLICY]), st.integers(0, 3), st.integers(0, 2),
              st.integers(0, 3)),
    st.builds(lambda t, i, d, x: m(t, pid(s=bytes(56), index=i, dir=d) + EXTRA[x]),
              st.sampled_from([M.GETPOLICY, M.DELPOLICY]), st.integers(0, 40), st.integers(0, 2),
              st.integers(0, 3)),
    st.just(DUMP),
    st.builds(lambda t: m(M.FLUSHPOLICY, ptype(t)), st.integers(0, 1)),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(op, min_size=1, max_size=12))
def test_random_policy_sequences(pair, ops):
    real, fake = pair
    for t in (0, 1):
        flush = m(M.FLUSHPOLICY, ptype(t), N.NLM_F_REQUEST | N.NLM_F_ACK)
        assert _norm(fake.send(flush)) == _norm(real.send(flush))
    for req in ops:
        got_real = _norm(real.send(req))
        assert _norm(fake.send(req)) == got_real, req.hex()
    assert _norm(fake.listener.recv_all()) == _norm(_pending(real.listener))
