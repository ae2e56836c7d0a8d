"""Attribute policies and their validation, as lib/nlattr.c applies them.

A family declares a policy table ``{attr type: NlaPolicy}``; :func:`parse_attrs` walks the
attributes the liberal ("deprecated") way the XFRM and classic rtnetlink parsers do, validates
each against the table and returns the last occurrence of each type, or the first error with
the kernel's errno, extack text, offset and policy description.
"""
from __future__ import annotations

import errno as E
import struct
from dataclasses import dataclass
from typing import Any, Callable

from netlink_codec import netlink as N
from netlink_codec.netlink import RawAttr, kernel_attrs_py, nla_u32, nla_u64

from .core import Reply

NLA_UNSPEC, NLA_U8, NLA_U16, NLA_U32, NLA_U64, NLA_STRING, NLA_FLAG = "unspec", "u8", "u16", "u32", "u64", "string", "flag"
NLA_NESTED, NLA_BINARY, NLA_S32, NLA_NUL_STRING = "nested", "binary", "s32", "nul_string"

_FIXED_LEN = {NLA_U8: 1, NLA_U16: 2, NLA_U32: 4, NLA_U64: 8, NLA_S32: 4, NLA_FLAG: 0}
_MAX = {NLA_U8: 0xFF, NLA_U16: 0xFFFF, NLA_U32: 0xFFFFFFFF, NLA_U64: 0xFFFFFFFFFFFFFFFF}
_NL_ATTR_TYPE = {NLA_U8: N.NL_ATTR_TYPE_U8, NLA_U16: N.NL_ATTR_TYPE_U16,
                 NLA_U32: N.NL_ATTR_TYPE_U32, NLA_U64: N.NL_ATTR_TYPE_U64,
                 NLA_FLAG: N.NL_ATTR_TYPE_FLAG, NLA_S32: N.NL_ATTR_TYPE_S32}


@dataclass(frozen=True)
class NlaPolicy:
    """``struct nla_policy``: a type, a minimum length for NLA_UNSPEC/NLA_BINARY, a range."""
    type: str = NLA_UNSPEC
    len: int = 0
    min: int | None = None
    max: int | None = None


def policy_tlv(pt: NlaPolicy) -> bytes | None:
    """What ``netlink_policy_dump_write_attr`` puts in NLMSGERR_ATTR_POLICY (None if nothing)."""
    if pt.type in (NLA_U8, NLA_U16, NLA_U32, NLA_U64):
        lo = pt.min if pt.min is not None else 0
        hi = pt.max if pt.max is not None else _MAX[pt.type]
        # u64 values; no padding attribute on x86_64 (efficient unaligned access)
        return (nla_u64(N.NL_POLICY_TYPE_ATTR_MIN_VALUE_U, lo) +
                nla_u64(N.NL_POLICY_TYPE_ATTR_MAX_VALUE_U, hi) +
                nla_u32(N.NL_POLICY_TYPE_ATTR_TYPE, _NL_ATTR_TYPE[pt.type]))
    if pt.type == NLA_FLAG:
        return nla_u32(N.NL_POLICY_TYPE_ATTR_TYPE, N.NL_ATTR_TYPE_FLAG)
    return None


def _fail(error: int, text: str, hdr_offset: int, ra: RawAttr, pt: NlaPolicy | None) -> Reply:
    return Reply(error, text, offset=ra.offset - hdr_offset,
                 policy=policy_tlv(pt) if pt is not None else None)


def validate_nla(buf, ra: RawAttr, pt: NlaPolicy, strict: bool, hdr_offset: int) -> Reply | None:
    """``validate_nla`` for one attribute; None when it passes."""
    attrlen = ra.end - ra.start
    fixed = _FIXED_LEN.get(pt.type)
    if fixed is not None and attrlen != fixed:
        if strict:
            return _fail(-E.EINVAL, "invalid attribute length", hdr_offset, ra, pt)
    if pt.type == NLA_FLAG:
        if attrlen > 0 and strict:
            return _fail(-E.EINVAL, "invalid attribute length", hdr_offset, ra, pt)
        return None
    if pt.type == NLA_STRING:
        # NLA_STRING: at least one byte; .len is the longest string, a trailing NUL not counted
        n = attrlen - 1 if attrlen and buf[ra.start + attrlen - 1] == 0 else attrlen
        if attrlen < 1 or (pt.len and n > pt.len):
            return _fail(-E.ERANGE, "Attribute failed policy validation", hdr_offset, ra, pt)
        return None
    minlen = pt.len if pt.len else (fixed or 0)
    if attrlen < minlen:
        # out_err: "Attribute failed policy validation", policy only where one can be dumped
        return _fail(-E.ERANGE, "Attribute failed policy validation", hdr_offset, ra,
                     pt if pt.type != NLA_UNSPEC else None)
    if pt.min is not None or pt.max is not None:
        fmt = {NLA_U8: "=B", NLA_U16: "=H", NLA_U32: "=I", NLA_U64: "=Q"}[pt.type]
        (v,) = struct.unpack_from(fmt, buf, ra.start)
        if (pt.min is not None and v < pt.min) or (pt.max is not None and v > pt.max):
            return _fail(-E.ERANGE, "integer out of range", hdr_offset, ra, pt)
    return None


def parse_attrs_py(buf, start: int, end: int, policy: dict[int, NlaPolicy], maxtype: int, *,
                   hdr_offset: int, strict_start_type: int = 0
                   ) -> tuple[dict[int, RawAttr], Reply | None, Reply | None]:
    """``nlmsg_parse_deprecated``: returns (attrs by type, error, warning).

    Types 0 and above ``maxtype`` are ignored; the last occurrence of a type wins; a malformed
    trailing attribute ends the walk with the warning "bytes leftover after parsing attributes".
    """
    raws, leftover = kernel_attrs_py(buf, start, end)
    tb: dict[int, RawAttr] = {}
    for ra in raws:
        t = ra.type
        if t == 0 or t > maxtype:
            continue
        pt = policy.get(t)
        if pt is not None:
            err = validate_nla(buf, ra, pt, bool(strict_start_type) and t >= strict_start_type,
                               hdr_offset)
            if err is not None:
                return tb, err, None
        tb[t] = ra
    warning = Reply(0, LEFTOVER) if leftover else None
    return tb, None, warning


LEFTOVER = "bytes leftover after parsing attributes"

# ---------------------------------------------------------------------------------------
# The C version (netlink_codec/_nlfast.c): the walk and validate_nla's verdicts in C
# against a table compiled once per policy; the Reply of a failure is still made above.

_C = N._C
# the kinds of check _nlfast.c knows (enum kind there)
_K_OTHER, _K_U8, _K_U16, _K_U32, _K_U64, _K_S32, _K_FLAG, _K_STRING = range(1, 9)
_KIND = {NLA_U8: _K_U8, NLA_U16: _K_U16, NLA_U32: _K_U32, NLA_U64: _K_U64, NLA_S32: _K_S32,
         NLA_FLAG: _K_FLAG, NLA_STRING: _K_STRING}
_U64_MAX = 0xFFFFFFFFFFFFFFFF


def compile_policy(policy: dict[int, NlaPolicy]) -> bytes | None:
    """The table _nlfast.c's parse_attrs reads, or None when the policy asks for a check it
    does not make (a range on anything but u8–u64, or one reading past a shorter minimum
    length, a bound outside u64): such a table is validated by the Python code."""
    if _C is None:
        return None
    entries = []
    for t, pt in policy.items():
        if not 0 < t <= N.NLA_TYPE_MASK:
            continue            # never looked up: type 0 and masked types are skipped
        kind = _KIND.get(pt.type, _K_OTHER)
        if not 0 <= pt.len <= 0xFFFFFFFF:
            return None
        if pt.min is not None or pt.max is not None:
            fixed = _FIXED_LEN.get(pt.type)
            if kind not in (_K_U8, _K_U16, _K_U32, _K_U64) or fixed is None or \
                    (pt.len and pt.len < fixed) or \
                    any(b is not None and not 0 <= b <= _U64_MAX for b in (pt.min, pt.max)):
                return None
        entries.append((int(t), kind, pt.len, pt.min, pt.max))
    return _C.compile_policy(entries)


# id(policy) -> (the policy, kept so that its id stays its own; its compiled table or None).
# Policy tables are declared once and never changed.
_compiled: dict[int, tuple[dict, bytes | None]] = {}


def compiled_policy(policy: dict[int, NlaPolicy]) -> bytes | None:
    c = _compiled.get(id(policy))
    if c is None:
        c = _compiled[id(policy)] = (policy, compile_policy(policy))
    return c[1]


def parse_attrs_c(buf, start: int, end: int, policy: dict[int, NlaPolicy], maxtype: int, *,
                  hdr_offset: int, strict_start_type: int = 0
                  ) -> tuple[dict[int, RawAttr], Reply | None, Reply | None]:
    """:func:`parse_attrs_py` with the walk and the checks in C (same results)."""
    table = compiled_policy(policy)
    if table is None:
        return parse_attrs_py(buf, start, end, policy, maxtype, hdr_offset=hdr_offset,
                              strict_start_type=strict_start_type)
    tb, bad, leftover = _C.parse_attrs(buf, start, end, table, maxtype, strict_start_type)
    if bad is not None:
        t = bad.type
        err = validate_nla(buf, bad, policy[t], bool(strict_start_type) and t >= strict_start_type,
                           hdr_offset)
        if err is None:     # a bug (tests/test_nlfast.py): the request gets EINVAL, logged
            raise RuntimeError(f"_nlfast.parse_attrs and validate_nla disagree on {bad}")
        return tb, err, None
    return tb, None, Reply(0, LEFTOVER) if leftover else None


parse_attrs = parse_attrs_c if _C is not None else parse_attrs_py

Parser = Callable[[Any, int, int, int], "tuple[dict[int, RawAttr], Reply | None, Reply | None]"]


def attr_parser(policy: dict[int, NlaPolicy], maxtype: int, strict_start_type: int = 0) -> Parser:
    """``parse(buf, start, end, hdr_offset)``: :func:`parse_attrs` with this policy bound,
    its table compiled now (a family's per-request parse: one call, no keywords)."""
    table = compiled_policy(policy)
    if table is None:
        def parse_py(buf, start: int, end: int, hdr_offset: int):
            return parse_attrs_py(buf, start, end, policy, maxtype, hdr_offset=hdr_offset,
                                  strict_start_type=strict_start_type)
        return parse_py

    def slow(buf, start: int, end: int, hdr_offset: int):
        """The Parser's call when an attribute fails or bytes are left over: the Reply."""
        return parse_attrs_c(buf, start, end, policy, maxtype, hdr_offset=hdr_offset,
                             strict_start_type=strict_start_type)
    parser: Parser = _C.Parser(table, maxtype, strict_start_type, slow)
    return parser
