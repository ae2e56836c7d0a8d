"""C structures of the UAPI, declared once with ctypes.

ctypes gives us the C compiler's layout rules (alignment, padding, sizeof) for free, which
the layout test checks against gcc and the system headers. Decoding copies the bytes
(``from_buffer_copy``), so padding bytes survive a decode/encode round trip unchanged.
Big-endian (``__be16``/``__be32``) fields are declared with :data:`be16`/:data:`be32`.
"""
from __future__ import annotations

import ctypes

from .errors import DecodeError

u8 = ctypes.c_uint8
u16 = ctypes.c_uint16
u32 = ctypes.c_uint32
u64 = ctypes.c_uint64
s32 = ctypes.c_int32
be16 = ctypes.c_uint16.__ctype_be__
be32 = ctypes.c_uint32.__ctype_be__


def chars(n: int):
    """A fixed ``char[n]`` field, read and written as raw bytes."""
    return ctypes.c_uint8 * n


class CStruct(ctypes.LittleEndianStructure):
    """Base of every UAPI struct: sized, bounded decode and byte-exact encode."""


    @classmethod
    def size(cls) -> int:
        return ctypes.sizeof(cls)

    @classmethod
    def decode(cls, buf, offset: int = 0, end: int | None = None):
        """Decode from ``buf[offset:]``; raises DecodeError if fewer bytes than sizeof."""
        n = ctypes.sizeof(cls)
        limit = len(buf) if end is None else end
        if offset < 0 or offset + n > limit:
            raise DecodeError(f"{cls.__name__} needs {n} bytes, {max(0, limit - offset)} left", offset)
        return cls.from_buffer_copy(buf, offset) if offset or limit != n else cls.from_buffer_copy(buf)

    @classmethod
    def decode_padded(cls, buf, offset: int = 0, end: int | None = None):
        """Decode a possibly short struct, zero-filling what is missing (kernel's memcpy of min len)."""
        n = ctypes.sizeof(cls)
        limit = len(buf) if end is None else end
        chunk = bytes(buf[offset:min(limit, offset + n)])
        if len(chunk) < n:
            chunk += bytes(n - len(chunk))
        return cls.from_buffer_copy(chunk)

    def encode(self) -> bytes:
        return bytes(self)

    def copy(self):
        return type(self).from_buffer_copy(bytes(self))

    def as_dict(self) -> dict:
        """Fields as plain Python values (nested structs as dicts, arrays as bytes)."""
        out = {}
        for name, ftype, *_ in self._fields_:
            if name.startswith("_"):
                continue
            value = getattr(self, name)
            if isinstance(value, CStruct):
                value = value.as_dict()
            elif isinstance(value, (ctypes.Array, ctypes.Union)):
                value = bytes(value)
            out[name] = value
        return out

    def __eq__(self, other):
        return type(other) is type(self) and bytes(self) == bytes(other)

    def __hash__(self):
        return hash(bytes(self))

    def __repr__(self):
        fields = ", ".join(f"{k}={v!r}" for k, v in self.as_dict().items())
        return f"{type(self).__name__}({fields})"


def field_layout(cls) -> dict[str, tuple[int, int]]:
    """``{field: (offset, size)}`` — what the layout test compares with gcc."""
    return {name: (getattr(cls, name).offset, getattr(cls, name).size)
            for name, *_ in cls._fields_ if not name.startswith("_")}
