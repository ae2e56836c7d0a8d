"""The attribute policies of the rtnetlink handlers and the parse each handler does.

Every doit in Linux parses its request with a policy before it looks at anything else:
``nlmsg_parse_deprecated`` (liberal: a malformed trailing attribute ends the walk with the
extack warning "bytes leftover after parsing attributes", unknown types are skipped) or, for
GET requests on a socket with NETLINK_GET_STRICT_CHK, ``nlmsg_parse_deprecated_strict``
(leftover bytes and unknown types are EINVAL). An attribute shorter than its policy allows is
ERANGE "Attribute failed policy validation" with the attribute's offset — before any check
of the request's meaning. The parser's warning stays in the extack unless a later step sets
its own message (``RtnlRequest.warning``, applied in :meth:`Rtnetlink.rcv_msg`).

Tables as in Linux 6.x (include/uapi and the files named); checked against the host kernel by
tests/differential/test_rtnl_parse_diff.py.
"""
from __future__ import annotations

import errno as E
from typing import Iterator, NoReturn

from netlink_codec.netlink import ExtAck, kernel_attrs

from ..errors import KernelError
from ..netlink.core import Reply, Request
from ..netlink.nlattr import NlaPolicy, parse_attrs

U8, U16, U32, S32, U64 = NlaPolicy("u8"), NlaPolicy("u16"), NlaPolicy("u32"), NlaPolicy("s32"), NlaPolicy("u64")
NESTED = NlaPolicy("nested")
IFNAMSIZ = 16


def _len(n: int) -> NlaPolicy:
    """``{ .len = n }``: an NLA_UNSPEC attribute of at least ``n`` bytes."""
    return NlaPolicy("unspec", n)


# net/ipv4/devinet.c ifa_ipv4_policy
IFA_MAX = 11
IFA_IPV4_POLICY = {2: U32, 1: U32, 4: U32, 3: NlaPolicy("string", IFNAMSIZ - 1), 6: _len(16),
                   8: U32, 9: U32, 10: S32, 11: U8}
# net/ipv6/addrconf.c ifa_ipv6_policy
IFA_IPV6_POLICY = {1: _len(16), 2: _len(16), 6: _len(16), 8: U32, 9: U32, 10: S32, 11: U8}

# net/ipv4/fib_frontend.c rtm_ipv4_policy (RTA_MULTIPATH: a struct rtnexthop)
RTA_MAX = 31
RTM_IPV4_POLICY = {1: U32, 2: U32, 3: U32, 4: U32, 5: U32, 6: U32, 7: U32, 8: NESTED,
                   9: _len(8), 11: U32, 21: U16, 22: NESTED, 25: U32, 16: U32, 15: U32,
                   27: U8, 28: U16, 29: U16, 30: U32}
# net/ipv6/route.c rtm_ipv6_policy (RTA_DST / RTA_SRC are checked against the prefix length)
RTM_IPV6_POLICY = {7: _len(16), 4: U32, 3: U32, 6: U32, 8: NESTED, 9: _len(8), 20: U8,
                   21: U16, 22: NESTED, 23: U32, 25: U32, 16: U32, 15: U32, 27: U8, 28: U16,
                   29: U16, 30: U32, 5: _len(16)}

# net/core/fib_rules.c fib_rule_policy (FRA_GENERIC_POLICY, with IPv4's FRA_FLOW); FRA_SRC and
# FRA_DST are checked by fib_nl2rule against the family's address size
FRA_MAX = 26
FIB_RULE_POLICY = {3: NlaPolicy("string", IFNAMSIZ - 1), 17: NlaPolicy("string", IFNAMSIZ - 1),
                   6: U32, 10: U32, 12: U64, 16: U32, 15: U32, 14: U32, 13: U32, 8: U32,
                   19: U8, 20: _len(8), 21: U8, 22: U8, 23: _len(4), 24: _len(4), 11: U32}

# net/ipv4/devinet.c devconf_ipv4_policy, net/ipv6/addrconf.c devconf_ipv6_policy
NETCONFA_MAX = 8
DEVCONF_IPV4_POLICY = {1: _len(4), 2: _len(4), 3: _len(4), 5: _len(4), 6: _len(4)}
DEVCONF_IPV6_POLICY = {1: _len(4), 2: _len(4), 5: _len(4), 6: _len(4)}
# net/ipv6/addrlabel.c ifal_policy: IFAL_ADDRESS, IFAL_LABEL
IFAL_POLICY = {1: _len(16), 2: _len(4)}


def _raise(err: Reply) -> NoReturn:
    """The attribute validation's answer (xfrmd/netlink/nlattr.py) as the handler's error."""
    ext = err.ext or ExtAck()
    raise KernelError(err.error, ext.msg, offset=ext.offset, policy=ext.policy,
                      miss_type=ext.miss_type, miss_nest=ext.miss_nest, cookie=ext.cookie)


def rtnl_parse(req: Request, hdrlen: int, policy: dict[int, NlaPolicy], maxtype: int, *,
               strict: bool = False) -> dict[int, bytes]:
    """``nlmsg_parse_deprecated`` (or ``…_strict``) of ``req`` after a fixed header of
    ``hdrlen`` bytes: attribute payloads by type, the last occurrence winning; an invalid
    request raises :class:`KernelError`."""
    off = req.payload_offset
    if req.end - off < hdrlen:
        raise KernelError(E.EINVAL, "Invalid header length")       # __nlmsg_parse
    start = off + ((hdrlen + 3) & ~3)
    if strict:
        raws, leftover = kernel_attrs(req.buf, start, req.end)
        for ra in raws:
            if ra.type == 0 or ra.type > maxtype:
                raise KernelError(E.EINVAL, "Unknown attribute type",
                                  offset=ra.offset - req.hdr.offset)
        if leftover:
            raise KernelError(E.EINVAL, "bytes leftover after parsing attributes")
    tb, err, warning = parse_attrs(req.buf, start, req.end, policy, maxtype,
                                   hdr_offset=req.hdr.offset)
    if err is not None:
        _raise(err)
    if warning is not None and hasattr(req, "warning"):
        req.warning = warning.ext.msg if warning.ext else None
    return {t: bytes(req.buf[ra.start:ra.end]) for t, ra in tb.items()}


def dump_error(err: KernelError) -> Iterator[bytes]:
    """The messages of a dump whose first ``dumpit`` call fails: none, and NLMSG_DONE
    carries the error (``netlink_dump``)."""
    raise err
    yield b""       # noqa: unreachable - makes this a generator
