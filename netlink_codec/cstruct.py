"""C structures of the UAPI, declared once with ctypes.

ctypes gives us the C compiler's layout rules (alignment, padding, sizeof) for free, which
the layout test checks against gcc and the system headers. Decoding copies the bytes
(``from_buffer_copy``), so padding bytes survive a decode/encode round trip unchanged.
Big-endian (``__be16``/``__be32``) fields are declared with :data:`be16`/:data:`be32`.

These declarations are the single source of the layouts: where a hot path wants a flat
``struct`` format instead of a ctypes object, :func:`struct_format` (or :func:`flat_struct`,
its ``struct.Struct``) derives it from them.
"""
from __future__ import annotations

import ctypes
import struct
from collections.abc import Iterable
from typing import Any, Self, TypeAlias

from .errors import DecodeError

# what the decoders read from: a datagram as received, or a view into one
Buffer: TypeAlias = bytes | bytearray | memoryview

u8 = ctypes.c_uint8
u16 = ctypes.c_uint16
u32 = ctypes.c_uint32
u64 = ctypes.c_uint64
s32 = ctypes.c_int32
be16: type[ctypes.c_uint16] = getattr(ctypes.c_uint16, "__ctype_be__")
be32: type[ctypes.c_uint32] = getattr(ctypes.c_uint32, "__ctype_be__")


def chars(n: int) -> type[ctypes.Array[ctypes.c_uint8]]:
    """A fixed ``char[n]`` field, read and written as raw bytes."""
    return ctypes.c_uint8 * n


class CStruct(ctypes.LittleEndianStructure):
    """Base of every UAPI struct: sized, bounded decode and byte-exact encode."""

    @classmethod
    def size(cls) -> int:
        return ctypes.sizeof(cls)

    @classmethod
    def decode(cls, buf: Buffer, offset: int = 0, end: int | None = None) -> Self:
        """Decode from ``buf[offset:]``; raises DecodeError if fewer bytes than sizeof."""
        n = ctypes.sizeof(cls)
        limit = len(buf) if end is None else end
        if offset < 0 or offset + n > limit:
            raise DecodeError(f"{cls.__name__} needs {n} bytes, {max(0, limit - offset)} left", offset)
        return cls.from_buffer_copy(buf, offset) if offset or limit != n else cls.from_buffer_copy(buf)

    @classmethod
    def decode_padded(cls, buf: Buffer, offset: int = 0, end: int | None = None) -> Self:
        """Decode a possibly short struct, zero-filling what is missing (kernel's memcpy of min len)."""
        n = ctypes.sizeof(cls)
        limit = len(buf) if end is None else end
        chunk = bytes(buf[offset:min(limit, offset + n)])
        if len(chunk) < n:
            chunk += bytes(n - len(chunk))
        return cls.from_buffer_copy(chunk)

    def encode(self) -> bytes:
        return bytes(self)

    def copy(self) -> Self:
        return type(self).from_buffer_copy(bytes(self))

    def as_dict(self) -> dict[str, Any]:
        """Fields as plain Python values (nested structs as dicts, arrays as bytes)."""
        out: dict[str, Any] = {}
        for name, *_ in self._fields_:
            if name.startswith("_"):
                continue
            value = getattr(self, name)
            if isinstance(value, CStruct):
                value = value.as_dict()
            elif isinstance(value, (ctypes.Array, ctypes.Union)):
                value = bytes(value)
            out[name] = value
        return out

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CStruct) and type(other) is type(self) and bytes(self) == bytes(other)

    def __hash__(self) -> int:
        return hash(bytes(self))

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in self.as_dict().items())
        return f"{type(self).__name__}({fields})"


def field_layout(cls: type[ctypes.Structure]) -> dict[str, tuple[int, int]]:
    """``{field: (offset, size)}`` — what the layout test compares with gcc."""
    return {name: (getattr(cls, name).offset, getattr(cls, name).size)
            for name, *_ in cls._fields_ if not name.startswith("_")}


# ---------------------------------------------------------------------------------------
# flat struct formats derived from the declarations

_BIG_ENDIAN = (be16, be32)
_INT_CODES = {1: "b", 2: "h", 4: "i", 8: "q"}


def _leaves(cls: type[ctypes.Structure], prefix: str, whole: frozenset[str],
            keep_padding: frozenset[str]) -> list[tuple[str, str, int]]:
    """(format code, dotted field name, size) of ``cls``'s fields in order, padding
    included: the compiler's and the fields named ``_…`` (name ``""`` for padding that is
    skipped, ``<prefix>_pad<offset>`` for padding kept as bytes)."""
    out: list[tuple[str, str, int]] = []
    pos = 0
    path = prefix.rstrip(".")
    for name, ftype, *_ in cls._fields_:
        field = getattr(cls, name)
        if field.offset > pos:
            out.append(_gap(prefix, path, pos, field.offset - pos, keep_padding))
        full = prefix + name
        size = ctypes.sizeof(ftype)
        if name.startswith("_"):                 # a padding field the header names
            out.append(_gap(prefix, path, field.offset, size, keep_padding))
        elif issubclass(ftype, ctypes.Structure) and full not in whole:
            out += _leaves(ftype, full + ".", whole, keep_padding)
        elif (issubclass(ftype, (ctypes.Structure, ctypes.Union, ctypes.Array))
              or ftype in _BIG_ENDIAN):
            # structs kept whole, unions, byte arrays and network-order integers: bytes
            # (one struct format has one byte order; these fields are read as they lie)
            out.append((f"{size}s", full, size))
        else:
            code = _INT_CODES[size]
            signed = getattr(ftype, "_type_", "B").islower()
            out.append((code if signed else code.upper(), full, size))
        pos = field.offset + size
    end = ctypes.sizeof(cls)
    if end > pos:
        out.append(_gap(prefix, path, pos, end - pos, keep_padding))
    return out


def _gap(prefix: str, path: str, at: int, n: int,
         keep_padding: frozenset[str]) -> tuple[str, str, int]:
    if path in keep_padding:
        return f"{n}s", f"{prefix}_pad{at}", n
    return "x", "", n


def struct_format(cls: type[ctypes.Structure], *, whole: Iterable[str] = (),
                  keep_padding: Iterable[str] = ()) -> tuple[str, tuple[str, ...]]:
    """The native-order ``struct`` format of a declared struct and the names of the values
    it unpacks to (dotted paths into nested structs): ``("=I2H2I", ("nlmsg_len", …))``.

    Nested structs are flattened unless named in ``whole`` (then ``Ns`` bytes); unions, byte
    arrays and big-endian fields are ``Ns`` bytes; padding (the compiler's, and fields whose
    name starts with ``_``) is ``x``, or ``Ns`` bytes named
    ``<struct>._pad<offset>`` for the structs named in ``keep_padding`` (``""`` for the
    outermost struct). ``struct.calcsize`` of the result is ``sizeof``.
    """
    parts: list[tuple[str, int]] = []    # (code, repeat); repeat 0: "Ns", never merged
    names: list[str] = []
    for code, name, size in _leaves(cls, "", frozenset(whole), frozenset(keep_padding)):
        if name:
            names.append(name)
        count = size if code == "x" else 1 if len(code) == 1 else 0
        if count and parts and parts[-1][0] == code:
            parts[-1] = (code, parts[-1][1] + count)
        else:
            parts.append((code, count))
    return "=" + "".join(f"{n}{c}" if n > 1 else c for c, n in parts), tuple(names)


def flat_struct(cls: type[ctypes.Structure], *, whole: Iterable[str] = (),
                keep_padding: Iterable[str] = ()) -> struct.Struct:
    """``struct.Struct`` of :func:`struct_format`: what a hot path unpacks a declared struct
    with (``HDR = flat_struct(NlMsgHdr)``)."""
    return struct.Struct(struct_format(cls, whole=whole, keep_padding=keep_padding)[0])
