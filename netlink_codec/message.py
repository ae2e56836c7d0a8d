"""Generic, declarative decoding and encoding of whole netlink messages.

A family is declared as data (:class:`Family`): for each message type its fixed header struct,
and an attribute space mapping attribute numbers to payload kinds. Decoding is strict and
bounded — every problem raises :class:`DecodeError` with the byte offset — and a decoded
message encodes back to the same bytes (for messages with zeroed attribute padding).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeAlias, Union

from . import pretty
from .cstruct import Buffer, CStruct
from .errors import DecodeError
from .netlink import (NLMSG_DONE, NLMSG_ERROR, NLMSG_HDRLEN, NLMSG_MIN_TYPE,
                      NLMSG_NOOP, NLMSG_OVERRUN, SCALARS, Header, NlMsgErr, RawAttr, align,
                      encode_msg, iter_attrs, nla, split_messages)

# An attribute's payload kind: a scalar or other kind name ("u32", "flag", "string",
# "binary", "addr", "nested"), a struct (a fixed head, maybe followed by more bytes), or
# ("array", struct) for a run of structs.
Kind: TypeAlias = Union[str, type[CStruct], tuple[str, type[CStruct]]]
Decoder: TypeAlias = Callable[[Buffer, RawAttr], "Attr"]


@dataclass(slots=True)
class Attr:
    """One attribute. ``value`` depends on the declared kind:

    scalar kinds → int; "flag" → True; "string" → str (NUL stripped; ``raw`` keeps the bytes);
    "binary"/"addr"/unknown → bytes; a CStruct kind → the struct, with any bytes after it in
    ``tail``; ("array", S) → list of S; ("nested", space) → list[Attr].
    """
    type: int
    value: Any
    flags: int = 0          # NLA_F_NESTED / NLA_F_NET_BYTEORDER as seen on the wire
    tail: bytes = b""
    raw: bytes | None = None  # for strings: the exact payload

    def payload(self, space: "AttrSpace | None" = None) -> bytes:
        v = self.value
        if isinstance(v, CStruct):
            return bytes(v) + self.tail if self.tail else bytes(v)
        if self.raw is not None:
            return self.raw
        if isinstance(v, bool):
            return b""
        if isinstance(v, bytes):
            return v
        if isinstance(v, list):
            if v and isinstance(v[0], Attr):
                sub = space.nested(self.type) if space else None
                return b"".join(a.encode(sub) for a in v)
            return b"".join(bytes(x) for x in v) + self.tail
        kind = space.kind(self.type) if space else None
        if isinstance(kind, str) and kind in SCALARS:
            return SCALARS[kind].pack(v)
        raise TypeError(f"cannot encode attribute {self.type} value {v!r}")

    def encode(self, space: "AttrSpace | None" = None) -> bytes:
        return nla(self.type | self.flags, self.payload(space))


class AttrSpace:
    """Attribute numbers → payload kinds, with optional nested spaces and names."""

    def __init__(self, name: str, kinds: Mapping[int, Kind],
                 names: Callable[[int], str] | None = None,
                 nested: Mapping[int, AttrSpace] | None = None):
        self.name = name
        self.kinds = kinds
        self._names = names
        self.nested_spaces: Mapping[int, AttrSpace] = nested or {}
        self._fast_cache: dict[int, Decoder] | None = None

    def kind(self, t: int) -> Kind | None:
        return self.kinds.get(t)

    def nested(self, t: int) -> "AttrSpace | None":
        return self.nested_spaces.get(t)

    def attr_name(self, t: int) -> str:
        if self._names:
            try:
                return self._names(t)
            except ValueError:
                pass
        return f"{self.name}#{t}"

    def decode(self, buf: Buffer, start: int, end: int) -> list[Attr]:
        fast = self._fast
        out = []
        for ra in iter_attrs(buf, start, end):
            f = fast.get(ra.type)
            out.append(f(buf, ra) if f is not None else self._decode_one(buf, ra))
        return out

    @property
    def _fast(self) -> dict[int, Decoder]:
        """Per-type decoders for the struct kinds (the hot ones), built on first use."""
        if self._fast_cache is not None:
            return self._fast_cache
        fast: dict[int, Decoder] = {}
        for t, kind in self.kinds.items():
            if t in self.nested_spaces:
                continue
            if isinstance(kind, type) and issubclass(kind, CStruct):
                fast[t] = self._struct_decoder(t, kind)
            elif isinstance(kind, str) and kind in SCALARS:
                fast[t] = self._scalar_decoder(kind)
        self._fast_cache = fast
        return fast

    def _struct_decoder(self, t: int, kind: type[CStruct]) -> Decoder:
        size = kind.size()
        copy = kind.from_buffer_copy

        def dec(buf: Buffer, ra: RawAttr) -> Attr:
            n = ra.end - ra.start
            if n < size:
                raise DecodeError(f"attribute {self.attr_name(ra.type)}: {n} bytes, "
                                  f"{kind.__name__} needs {size}", ra.offset)
            payload = bytes(buf[ra.start:ra.end])
            return Attr(ra.type, copy(payload), ra.flags, payload[size:] if n > size else b"")
        return dec

    def _scalar_decoder(self, kind: str) -> Decoder:
        sc = SCALARS[kind]
        size, unpack = sc.size, sc.unpack_from

        def dec(buf: Buffer, ra: RawAttr) -> Attr:
            if ra.end - ra.start != size:
                raise DecodeError(f"attribute {self.attr_name(ra.type)}: {ra.end - ra.start} "
                                  f"bytes, expected {size}", ra.offset)
            return Attr(ra.type, unpack(buf, ra.start)[0], ra.flags)
        return dec

    def _decode_one(self, buf: Buffer, ra: RawAttr) -> Attr:
        kind = self.kinds.get(ra.type)
        payload = bytes(buf[ra.start:ra.end])
        n = len(payload)
        sub = self.nested_spaces.get(ra.type)
        if sub is not None or kind == "nested":
            space = sub or AttrSpace(f"{self.name}.{ra.type}", {})
            return Attr(ra.type, space.decode(buf, ra.start, ra.end), ra.flags)
        if kind is None or kind in ("binary", "addr"):
            return Attr(ra.type, payload, ra.flags)
        if kind == "flag":
            if n:
                raise DecodeError(f"flag attribute {self.attr_name(ra.type)} has a payload", ra.offset)
            return Attr(ra.type, True, ra.flags)
        if kind == "string":
            return Attr(ra.type, payload.split(b"\0", 1)[0].decode("utf-8", "replace"),
                        ra.flags, raw=payload)
        if isinstance(kind, str):
            sc = SCALARS[kind]
            if n != sc.size:
                raise DecodeError(f"attribute {self.attr_name(ra.type)}: {n} bytes, expected {sc.size}",
                                  ra.offset)
            return Attr(ra.type, sc.unpack(payload)[0], ra.flags)
        if isinstance(kind, tuple) and kind[0] == "array":
            cls = kind[1]
            size = cls.size()
            count, rest = divmod(n, size)
            items = [cls.from_buffer_copy(payload, i * size) for i in range(count)]
            return Attr(ra.type, items, ra.flags, tail=payload[count * size:])
        if isinstance(kind, type) and issubclass(kind, CStruct):
            size = kind.size()
            if n < size:
                raise DecodeError(f"attribute {self.attr_name(ra.type)}: {n} bytes, "
                                  f"{kind.__name__} needs {size}", ra.offset)
            return Attr(ra.type, kind.from_buffer_copy(payload), ra.flags, tail=payload[size:])
        raise AssertionError(f"bad kind {kind!r}")

    def encode(self, attrs: list[Attr]) -> bytes:
        return b"".join(a.encode(self) for a in attrs)


@dataclass
class Message:
    """One decoded netlink message."""
    type: int
    flags: int = 0
    seq: int = 0
    pid: int = 0
    fixed: Any = None          # CStruct, or raw bytes when the family declares none
    attrs: list[Attr] = field(default_factory=list)
    gap: bytes = b""           # bytes between the fixed part and the attributes (alignment)
    family: Any = field(default=None, repr=False, compare=False)  # the decoding Family, for names

    def __repr__(self) -> str:
        return pretty.message(self)

    def attr(self, t: int, default: Any = None) -> Any:
        """Value of the last attribute of type ``t`` (the kernel's rule for duplicates)."""
        for a in reversed(self.attrs):
            if a.type == t:
                return a.value
        return default


# (fixed struct, where the attributes start after the nlmsghdr, attribute space) of a type
Plan: TypeAlias = tuple[type[CStruct] | None, int, AttrSpace | None]


class Family:
    """A netlink protocol (or genetlink family) declared as data.

    ``fixed(type, flags)`` names the fixed header class (or None); ``space(type, flags)`` the
    attribute space; ``attrs_at(type, flags)`` where attributes begin after the nlmsghdr.
    """

    def __init__(self, name: str, fixed: Callable[[int, int], type[CStruct] | None],
                 space: Callable[[int, int], AttrSpace | None],
                 attrs_at: Callable[[int, int], int] | None = None,
                 type_name: Callable[[int], str] | None = None):
        self.name = name
        self._fixed = fixed
        self._space = space
        self._attrs_at = attrs_at
        self._type_name = type_name
        self._plans: dict[tuple[int, int], Plan] = {}

    def type_name(self, t: int) -> str:
        control = {NLMSG_NOOP: "NLMSG_NOOP", NLMSG_ERROR: "NLMSG_ERROR",
                   NLMSG_DONE: "NLMSG_DONE", NLMSG_OVERRUN: "NLMSG_OVERRUN"}
        if t in control:
            return control[t]
        if self._type_name:
            try:
                return self._type_name(t)
            except ValueError:
                pass
        return f"{self.name}#{t}"

    def _plan(self, t: int, flags: int) -> Plan:
        """(fixed class, attribute offset, attribute space) of a message type, cached."""
        key = (t, flags)
        plan = self._plans.get(key)
        if plan is None:
            cls = self._fixed(t, flags)
            rel = (self._attrs_at(t, flags) if self._attrs_at else
                   (align(cls.size()) if cls else 0))
            plan = self._plans[key] = (cls, rel, self._space(t, flags))
        return plan

    def decode(self, buf: Buffer, hdr: Header | None = None) -> Message:
        """Decode one message (``hdr`` from :func:`split_messages`, else the whole ``buf``)."""
        if hdr is None:
            hdrs = split_messages(buf)
            if len(hdrs) != 1:
                raise DecodeError(f"expected one message, found {len(hdrs)}", 0)
            hdr = hdrs[0]
        base = hdr.offset
        end = base + hdr.len
        body = base + NLMSG_HDRLEN
        msg = Message(hdr.type, hdr.flags, hdr.seq, hdr.pid, family=self)
        if hdr.type < NLMSG_MIN_TYPE:
            if hdr.type == NLMSG_ERROR:
                err = NlMsgErr.decode(buf, body, end)
                msg.fixed = err
                # after the error: the echoed request (unless capped), then TLVs
                echoed = err.msg.nlmsg_len if not (hdr.flags & 0x100) else NLMSG_HDRLEN
                at = body + 4 + align(max(echoed, NLMSG_HDRLEN))
                if at > end:
                    raise DecodeError("NLMSG_ERROR shorter than its echoed request", body)
                msg.gap = bytes(buf[body + NlMsgErr.size():at])
                msg.attrs = ERR_SPACE.decode(buf, at, end)
            elif hdr.type == NLMSG_DONE and end - body >= 4:
                msg.fixed = bytes(buf[body:body + 4])
                msg.attrs = ERR_SPACE.decode(buf, body + 4, end)
            else:
                msg.fixed = bytes(buf[body:end])
            return msg
        cls, rel, space = self._plan(hdr.type, hdr.flags)
        at = body + rel
        if cls is not None:
            size = cls.size()
            if end - body < size:
                raise DecodeError(f"{self.type_name(hdr.type)}: payload of {end - body} bytes, "
                                  f"fixed part needs {size}", body)
            msg.fixed = cls.decode(buf, body, end)
            at = min(at, end)      # an unaligned fixed part with nothing after it (FLUSHSA: 17)
            msg.gap = bytes(buf[body + size:at]) if at > body + size else b""
        elif at > end:
            raise DecodeError(f"{self.type_name(hdr.type)}: payload of {end - body} bytes, "
                              f"fixed part needs {at - body}", body)
        msg.attrs = space.decode(buf, at, end) if space else []
        if space is None and at < end:
            msg.gap += bytes(buf[at:end])
        return msg

    def encode(self, msg: Message) -> bytes:
        if msg.type < NLMSG_MIN_TYPE:
            if msg.type in (NLMSG_ERROR, NLMSG_DONE) and msg.fixed is not None:
                head = bytes(msg.fixed) + msg.gap
                return encode_msg(msg.type, msg.flags, msg.seq, msg.pid,
                                  head + ERR_SPACE.encode(msg.attrs))
            return encode_msg(msg.type, msg.flags, msg.seq, msg.pid, bytes(msg.fixed or b""))
        space = self._plan(msg.type, msg.flags)[2]
        head = (bytes(msg.fixed) if msg.fixed is not None else b"") + msg.gap
        body = head + (space.encode(msg.attrs) if space else b"")
        return encode_msg(msg.type, msg.flags, msg.seq, msg.pid, body)

    def decode_datagram(self, buf: Buffer) -> list[Message]:
        return [self.decode(buf, h) for h in split_messages(buf)]


# extended-ack TLVs after NLMSG_ERROR / NLMSG_DONE
ERR_SPACE = AttrSpace("NLMSGERR_ATTR", {1: "string", 2: "u32", 3: "binary", 4: "nested",
                                         5: "u32", 6: "u32"})
