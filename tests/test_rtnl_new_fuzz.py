"""Malformed requests to the rtnetlink handlers added for issue 20 (neighbours and the FDB,
PF_BRIDGE link set/dump, xfrm link data, strict route get, addresses with peers and
lifetimes, alias/flags): whatever the bytes, the kernel answers with an error or an ACK and
keeps working — never an exception out of a handler."""
from __future__ import annotations

import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netlink_codec import netlink as N
from xfrmd.testing import make_kernel

# (message type, family byte, NLM_F_DUMP or not)
TARGETS = [(28, 2, False), (28, 10, False), (28, 7, False), (29, 2, False), (30, 2, False),
           (30, 0, True), (30, 7, True), (19, 7, False), (18, 7, True), (16, 0, False),
           (20, 2, False), (20, 10, False), (21, 2, False), (26, 2, False), (26, 10, False),
           (19, 0, False)]

_KERNEL = make_kernel("bare")
_SOCK = _KERNEL.socket(N.NETLINK_ROUTE)
_KERNEL.bind(_SOCK)
_KERNEL.setsockopt(_SOCK, N.SOL_NETLINK, N.NETLINK_GET_STRICT_CHK, 1)


def _drain(k, s) -> list:
    out = []
    while (d := k.recv(s)) is not None:
        out.append(d)
    return out


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(target=st.sampled_from(TARGETS), body=st.binary(max_size=96),
       create=st.booleans())
def test_malformed_requests_get_an_answer(target, body, create):
    t, family, dump = target
    flags = N.NLM_F_REQUEST | N.NLM_F_ACK | (N.NLM_F_DUMP if dump else 0)
    if create and t in (16, 20, 28):               # NLM_F_CREATE | NLM_F_EXCL on NEW only (the
        flags |= 0x400 | 0x200                     # EXCL bit is NLM_F_MATCH on a GET)
    payload = bytes([family]) + body
    _KERNEL.deliver(_SOCK, N.encode_msg(t, flags, 7, 0, payload))
    answers = _drain(_KERNEL, _SOCK)
    assert answers, "no answer"
    kinds = {h.type for d in answers for h in N.split_messages(d)}
    assert kinds & {N.NLMSG_ERROR, N.NLMSG_DONE} or t in (28, 29), kinds
    # the kernel still answers a plain request afterwards
    _KERNEL.deliver(_SOCK, N.encode_msg(18, N.NLM_F_REQUEST, 8, 0,
                                        struct.pack("=BxHiII", 0, 0, 1, 0, 0)))
    assert _drain(_KERNEL, _SOCK)
