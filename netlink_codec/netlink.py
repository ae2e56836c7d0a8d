"""Netlink framing: nlmsghdr, nlattr, NLMSG_ERROR and extended-ACK TLVs (linux/netlink.h)."""
from __future__ import annotations

import os
import struct
from collections.abc import Callable, Iterable, Iterator
from typing import Any, NamedTuple

from . import cext
from .cstruct import Buffer, CStruct, flat_struct, s32, u16, u32
from .errors import DecodeError

# The C versions of this module's per-request functions (kernel_messages, kernel_attrs,
# encode_ack; xfrmd/netlink/nlattr.py uses its parse_attrs): None on the pure-Python path.
# The Python versions (``*_py``) are the reference; the public names are whichever runs.
_C = cext.load("netlink_codec._nlfast", os.path.join(os.path.dirname(__file__), "_nlfast.c"))

# protocols (socket(AF_NETLINK, …, proto))
NETLINK_ROUTE = 0
NETLINK_XFRM = 6
NETLINK_GENERIC = 16
MAX_LINKS = 32

# control message types
NLMSG_NOOP = 1
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLMSG_OVERRUN = 4
NLMSG_MIN_TYPE = 0x10

# nlmsg_flags
NLM_F_REQUEST = 0x01
NLM_F_MULTI = 0x02
NLM_F_ACK = 0x04
NLM_F_ECHO = 0x08
NLM_F_DUMP_INTR = 0x10
NLM_F_DUMP_FILTERED = 0x20
NLM_F_ROOT = 0x100
NLM_F_MATCH = 0x200
NLM_F_ATOMIC = 0x400
NLM_F_DUMP = NLM_F_ROOT | NLM_F_MATCH
NLM_F_REPLACE = 0x100
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400
NLM_F_APPEND = 0x800
NLM_F_NONREC = 0x100
NLM_F_BULK = 0x200
NLM_F_CAPPED = 0x100
NLM_F_ACK_TLVS = 0x200

# attribute header flags
NLA_F_NESTED = 1 << 15
NLA_F_NET_BYTEORDER = 1 << 14
NLA_TYPE_MASK = ~(NLA_F_NESTED | NLA_F_NET_BYTEORDER) & 0xFFFF

# enum nlmsgerr_attrs
NLMSGERR_ATTR_UNUSED = 0
NLMSGERR_ATTR_MSG = 1
NLMSGERR_ATTR_OFFS = 2
NLMSGERR_ATTR_COOKIE = 3
NLMSGERR_ATTR_POLICY = 4
NLMSGERR_ATTR_MISS_TYPE = 5
NLMSGERR_ATTR_MISS_NEST = 6

# enum netlink_policy_type_attr (NLMSGERR_ATTR_POLICY contents)
NL_POLICY_TYPE_ATTR_TYPE = 1
NL_POLICY_TYPE_ATTR_MIN_VALUE_S = 2
NL_POLICY_TYPE_ATTR_MAX_VALUE_S = 3
NL_POLICY_TYPE_ATTR_MIN_VALUE_U = 4
NL_POLICY_TYPE_ATTR_MAX_VALUE_U = 5
NL_POLICY_TYPE_ATTR_MIN_LENGTH = 6
NL_POLICY_TYPE_ATTR_MAX_LENGTH = 7
NL_POLICY_TYPE_ATTR_POLICY_IDX = 8
NL_POLICY_TYPE_ATTR_POLICY_MAXTYPE = 9
NL_POLICY_TYPE_ATTR_BITFIELD32_MASK = 10
NL_POLICY_TYPE_ATTR_PAD = 11
NL_POLICY_TYPE_ATTR_MASK = 12

# enum netlink_attribute_type
NL_ATTR_TYPE_INVALID = 0
NL_ATTR_TYPE_FLAG = 1
NL_ATTR_TYPE_U8 = 2
NL_ATTR_TYPE_U16 = 3
NL_ATTR_TYPE_U32 = 4
NL_ATTR_TYPE_U64 = 5
NL_ATTR_TYPE_S8 = 6
NL_ATTR_TYPE_S16 = 7
NL_ATTR_TYPE_S32 = 8
NL_ATTR_TYPE_S64 = 9
NL_ATTR_TYPE_BINARY = 10
NL_ATTR_TYPE_STRING = 11
NL_ATTR_TYPE_NUL_STRING = 12
NL_ATTR_TYPE_NESTED = 13
NL_ATTR_TYPE_NESTED_ARRAY = 14
NL_ATTR_TYPE_BITFIELD32 = 15

# SOL_NETLINK socket options
SOL_NETLINK = 270
NETLINK_ADD_MEMBERSHIP = 1
NETLINK_DROP_MEMBERSHIP = 2
NETLINK_PKTINFO = 3
NETLINK_BROADCAST_ERROR = 4
NETLINK_NO_ENOBUFS = 5
NETLINK_LISTEN_ALL_NSID = 8
NETLINK_LIST_MEMBERSHIPS = 9
NETLINK_CAP_ACK = 10
NETLINK_EXT_ACK = 11
NETLINK_GET_STRICT_CHK = 12

NLMSG_HDRLEN = 16
NLA_HDRLEN = 4


def align(n: int) -> int:
    """NLMSG_ALIGN / NLA_ALIGN: round up to 4."""
    return (n + 3) & ~3


class NlMsgHdr(CStruct):
    _fields_ = [("nlmsg_len", u32), ("nlmsg_type", u16), ("nlmsg_flags", u16),
                ("nlmsg_seq", u32), ("nlmsg_pid", u32)]


class NlMsgErr(CStruct):
    _fields_ = [("error", s32), ("msg", NlMsgHdr)]


class SockaddrNl(CStruct):
    _fields_ = [("nl_family", u16), ("nl_pad", u16), ("nl_pid", u32), ("nl_groups", u32)]


class NlAttr(CStruct):
    _fields_ = [("nla_len", u16), ("nla_type", u16)]


# The C names of the structs above, for the layout test.
C_NAMES: dict[str, type[CStruct]] = {"struct nlmsghdr": NlMsgHdr, "struct nlmsgerr": NlMsgErr,
                                     "struct sockaddr_nl": SockaddrNl, "struct nlattr": NlAttr}

# the hot path's flat formats of the two headers: =IHHII and =HH
HDR = flat_struct(NlMsgHdr)
NLA_HDR = flat_struct(NlAttr)


# A named tuple made from a tuple in one C call: its generated ``__new__`` is a Python
# function, which doubles the cost of the two made for every request (Header, RawAttr).
_new = tuple.__new__


class Header(NamedTuple):
    """A decoded nlmsghdr plus where its message sits in the datagram."""
    len: int
    type: int
    flags: int
    seq: int
    pid: int
    offset: int  # of the nlmsghdr within the datagram


def pack_header(length: int, type_: int, flags: int, seq: int, pid: int) -> bytes:
    return HDR.pack(length, type_, flags, seq, pid)


def encode_msg(type_: int, flags: int, seq: int, pid: int, payload: bytes = b"") -> bytes:
    """One netlink message: header + payload, padded to 4 bytes."""
    n = NLMSG_HDRLEN + len(payload)
    msg = HDR.pack(n, type_, flags, seq, pid) + payload
    return msg + _PADS[-n & 3] if n & 3 else msg    # align(n) - n bytes of padding


def kernel_messages_py(buf: Buffer) -> Iterator[Header]:
    """The messages the kernel would process in one sendmsg buffer (``netlink_rcv_skb``).

    Processing stops silently at the first header that is shorter than 16 bytes or claims
    more bytes than remain; the next message starts at NLMSG_ALIGN(nlmsg_len).
    """
    off = 0
    total = len(buf)
    while total - off >= NLMSG_HDRLEN:
        length, type_, flags, seq, pid = HDR.unpack_from(buf, off)
        if length < NLMSG_HDRLEN or length > total - off:
            return
        yield _new(Header, (length, type_, flags, seq, pid, off))
        off += (length + 3) & ~3        # NLMSG_ALIGN


def split_messages(buf: Buffer) -> list[Header]:
    """Strict split of a datagram into messages; raises DecodeError on any framing problem."""
    out = []
    off = 0
    total = len(buf)
    while off < total:
        if total - off < NLMSG_HDRLEN:
            raise DecodeError("truncated nlmsghdr", off)
        length, type_, flags, seq, pid = HDR.unpack_from(buf, off)
        if length < NLMSG_HDRLEN:
            raise DecodeError(f"nlmsg_len {length} smaller than the header", off)
        if length > total - off:
            raise DecodeError(f"nlmsg_len {length} larger than the {total - off} bytes left", off)
        out.append(Header(length, type_, flags, seq, pid, off))
        off += align(length)
        if off > total:  # the last message may omit its trailing padding
            off = total
    return out


# ---------------------------------------------------------------------------------------
# attributes


class RawAttr(NamedTuple):
    type: int      # without NLA_F_NESTED / NLA_F_NET_BYTEORDER
    flags: int     # the two flag bits as they were on the wire
    offset: int    # of the nlattr header within the buffer
    start: int     # payload start
    end: int       # payload end (start + nla_len - 4)


def iter_attrs(buf: Buffer, start: int, end: int) -> Iterator[RawAttr]:
    """Walk the attributes in ``buf[start:end]``, strictly: a malformed one raises DecodeError."""
    off = start
    while off < end:
        if end - off < NLA_HDRLEN:
            raise DecodeError("truncated nlattr header", off)
        nla_len, nla_type = NLA_HDR.unpack_from(buf, off)
        if nla_len < NLA_HDRLEN or nla_len > end - off:
            raise DecodeError(f"nla_len {nla_len} does not fit in {end - off} bytes", off)
        yield RawAttr(nla_type & NLA_TYPE_MASK, nla_type & 0xC000, off, off + NLA_HDRLEN, off + nla_len)
        off += (nla_len + 3) & ~3       # NLA_ALIGN, inlined: this loop is the codec's hot path


def kernel_attrs_py(buf: Buffer, start: int, end: int) -> tuple[list[RawAttr], int]:
    """Liberal walk as ``nla_for_each_attr`` does: stop at the first malformed attribute.

    Returns the well-formed attributes and the number of bytes left over (``nla_ok`` false),
    which the kernel reports as "bytes leftover after parsing attributes".
    """
    out = []
    off = start
    while end - off >= NLA_HDRLEN:
        nla_len, nla_type = NLA_HDR.unpack_from(buf, off)
        if nla_len < NLA_HDRLEN or nla_len > end - off:
            break
        out.append(_new(RawAttr, (nla_type & NLA_TYPE_MASK, nla_type & ~NLA_TYPE_MASK & 0xFFFF,
                                  off, off + NLA_HDRLEN, off + nla_len)))
        off += (nla_len + 3) & ~3       # NLA_ALIGN
    return out, max(0, end - off)


_PADS = (b"", b"\0", b"\0\0", b"\0\0\0")


def nla(type_: int, payload: bytes = b"") -> bytes:
    """One attribute: header + payload + zero padding."""
    n = NLA_HDRLEN + len(payload)
    pad = -n & 3
    return NLA_HDR.pack(n, type_) + payload + _PADS[pad] if pad else NLA_HDR.pack(n, type_) + payload


def nla_nested(type_: int, *children: bytes) -> bytes:
    return nla(type_ | NLA_F_NESTED, b"".join(children))


# scalar payloads by attribute kind: native byte order, except the network-order be16/be32
SCALARS = {"u8": struct.Struct("=B"), "u16": struct.Struct("=H"), "u32": struct.Struct("=I"),
           "u64": struct.Struct("=Q"), "s8": struct.Struct("=b"), "s16": struct.Struct("=h"),
           "s32": struct.Struct("=i"), "s64": struct.Struct("=q"),
           "be16": struct.Struct(">H"), "be32": struct.Struct(">I")}


def _nla_scalar(kind: str) -> Callable[[int, int], bytes]:
    """``nla_put_<kind>``: one attribute holding one integer."""
    pack = SCALARS[kind].pack

    def put(type_: int, v: int) -> bytes:
        return nla(type_, pack(v))
    put.__name__ = put.__qualname__ = f"nla_{kind}"
    return put


nla_u8 = _nla_scalar("u8")
nla_u16 = _nla_scalar("u16")
nla_u32 = _nla_scalar("u32")
nla_s32 = _nla_scalar("s32")
nla_u64 = _nla_scalar("u64")
nla_be16 = _nla_scalar("be16")
nla_be32 = _nla_scalar("be32")


def nla_string(type_: int, s: str | bytes) -> bytes:
    """NUL-terminated string attribute (NLA_NUL_STRING / NLA_STRING as the kernel emits it)."""
    if isinstance(s, str):
        s = s.encode()
    return nla(type_, s + b"\0")


def nla_flag(type_: int) -> bytes:
    return nla(type_)


# ---------------------------------------------------------------------------------------
# NLMSG_ERROR / NLMSG_DONE


class ExtAck(NamedTuple):
    """What a handler reports besides its errno (``struct netlink_ext_ack``)."""
    msg: str | None = None
    offset: int | None = None          # NLMSGERR_ATTR_OFFS, from the request's nlmsghdr
    policy: bytes | None = None        # NLMSGERR_ATTR_POLICY nest payload
    cookie: bytes | None = None
    miss_type: int | None = None
    miss_nest: int | None = None


def extack_tlvs(ext: ExtAck, error: int) -> bytes:
    """The TLVs ``netlink_ack_tlv_fill`` appends, in the kernel's order."""
    out = []
    if ext.msg:
        out.append(nla_string(NLMSGERR_ATTR_MSG, ext.msg))
    if error:
        if ext.offset is not None:
            out.append(nla_u32(NLMSGERR_ATTR_OFFS, ext.offset))
        if ext.policy is not None:
            out.append(nla(NLMSGERR_ATTR_POLICY | NLA_F_NESTED, ext.policy))
        if ext.miss_type is not None:
            out.append(nla_u32(NLMSGERR_ATTR_MISS_TYPE, ext.miss_type))
        if ext.miss_nest is not None:
            out.append(nla_u32(NLMSGERR_ATTR_MISS_NEST, ext.miss_nest))
    if ext.cookie:
        out.append(nla(NLMSGERR_ATTR_COOKIE, ext.cookie))
    return b"".join(out)


_ERRNO = struct.Struct("=i")


def encode_ack_py(request: bytes | memoryview, req: Header, error: int, portid: int, *,
               cap_ack: bool = False, ext_ack: bool = False, ext: ExtAck | None = None) -> bytes:
    """An NLMSG_ERROR answering ``req`` as ``netlink_ack`` builds it.

    ``error`` is 0 or a negative errno. The original payload is echoed only for errors on a
    socket without NETLINK_CAP_ACK; otherwise NLM_F_CAPPED is set.
    """
    flags = 0
    if error == 0 or cap_ack:
        flags |= NLM_F_CAPPED
        echoed = bytes(request[req.offset:req.offset + NLMSG_HDRLEN])
    else:
        echoed = bytes(request[req.offset:req.offset + req.len])
    tlvs = b""
    if ext_ack and ext is not None:
        tlvs = extack_tlvs(ext, error)
        if tlvs:
            flags |= NLM_F_ACK_TLVS
    payload = _ERRNO.pack(error) + echoed
    if len(payload) % 4:
        payload += _PADS[-len(payload) & 3]
    return encode_msg(NLMSG_ERROR, flags, req.seq, portid, payload + tlvs)


def dump_fill_py(it: Iterator[Any], parts: list[bytes], used: int,
                 size: int) -> tuple[int, Any]:
    """The loop of ``netlink_dump`` filling one skb: the messages (bytes) of ``it`` go to
    ``parts`` while they fit in ``size`` bytes with the ``used`` ones (the first of a step
    always does). Returns the bytes used and where it stopped: None when ``it`` ended, else
    the item it took and did not append -- a message that does not fit, or anything that is
    not bytes (a dump callback's error) -- for the caller to handle."""
    for msg in it:
        if type(msg) is not bytes or (used + len(msg) > size and parts):
            return used, msg
        parts.append(msg)
        used += len(msg)
    return used, None


# the versions that run: C when built (same results, tests/test_nlfast.py), else Python
kernel_messages: Callable[[Buffer], Iterable[Header]] = kernel_messages_py
kernel_attrs: Callable[[Buffer, int, int], tuple[list[RawAttr], int]] = kernel_attrs_py
encode_ack: Callable[..., bytes] = encode_ack_py
dump_fill: Callable[[Iterator[Any], list[bytes], int, int], tuple[int, Any]] = dump_fill_py
if _C is not None:
    _C.setup(Header, RawAttr, extack_tlvs)
    kernel_messages, kernel_attrs, encode_ack = _C.kernel_messages, _C.kernel_attrs, _C.encode_ack
    dump_fill = _C.dump_fill


def encode_done(seq: int, portid: int, error: int = 0, tlvs: bytes = b"") -> bytes:
    """NLMSG_DONE ending a dump (``netlink_dump_done``): int payload, NLM_F_MULTI."""
    flags = NLM_F_MULTI | (NLM_F_ACK_TLVS if tlvs else 0)
    return encode_msg(NLMSG_DONE, flags, seq, portid, struct.pack("=i", error) + tlvs)
