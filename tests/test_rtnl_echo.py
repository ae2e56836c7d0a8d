"""NLM_F_ECHO on the sans-IO kernel (``nlmsg_notify`` with report set): the notification a
request causes is unicast to the sender before its ACK, and the sender, even when it is a
member of the group, gets no second copy; other members get theirs as usual. The
differential is tests/differential/test_echo_diff.py."""
from __future__ import annotations

import struct

from netlink_codec import netlink as N
from netlink_codec.netlink import encode_msg, nla_u32
from xfrmd.testing import make_kernel

RTM_NEWRULE, RTNLGRP_IPV4_RULE = 32, 8


def _types(k, s) -> list[tuple[int, int]]:
    out = []
    while (d := k.recv(s)) is not None:
        out += [(h.type, h.seq) for h in N.split_messages(d)]
    return out


def test_echo_goes_to_the_sender_once_and_the_group_still_hears_it():
    k = make_kernel("bare")
    s = k.socket(N.NETLINK_ROUTE)
    k.bind(s, groups=1 << (RTNLGRP_IPV4_RULE - 1))
    other = k.socket(N.NETLINK_ROUTE)
    k.bind(other, groups=1 << (RTNLGRP_IPV4_RULE - 1))
    body = struct.pack("=BBBBBBBBI", 2, 0, 0, 0, 5, 0, 0, 1, 0) + nla_u32(6, 5)
    flags = N.NLM_F_REQUEST | N.NLM_F_ACK | 0x400 | 0x200
    k.deliver(s, encode_msg(RTM_NEWRULE, flags | N.NLM_F_ECHO, 7, 0, body))
    assert _types(k, s) == [(RTM_NEWRULE, 7), (N.NLMSG_ERROR, 7)]
    assert _types(k, other) == [(RTM_NEWRULE, 7)]
    body = struct.pack("=BBBBBBBBI", 2, 0, 0, 0, 6, 0, 0, 1, 0) + nla_u32(6, 6)
    k.deliver(s, encode_msg(RTM_NEWRULE, flags, 8, 0, body))       # no echo: the group's copy
    assert _types(k, s) == [(RTM_NEWRULE, 8), (N.NLMSG_ERROR, 8)]
    assert _types(k, other) == [(RTM_NEWRULE, 8)]
    s2 = k.socket(N.NETLINK_ROUTE)                                 # not a member: echo only
    k.bind(s2)
    body = struct.pack("=BBBBBBBBI", 2, 0, 0, 0, 7, 0, 0, 1, 0) + nla_u32(6, 7)
    k.deliver(s2, encode_msg(RTM_NEWRULE, flags | N.NLM_F_ECHO, 9, 0, body))
    assert _types(k, s2) == [(RTM_NEWRULE, 9), (N.NLMSG_ERROR, 9)]
    assert k.report is None
