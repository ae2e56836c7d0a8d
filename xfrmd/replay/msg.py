"""Building requests the way libnetlink's ``addattr_l`` does, and ``parse_rtattr``."""
from __future__ import annotations

import struct


class Request:
    """``struct { nlmsghdr n; <fixed>; char buf[]; }``: nlmsg_len covers the fixed part
    exactly (it may be unaligned, e.g. 17 for FLUSHSA); each attribute starts at
    NLMSG_ALIGN(nlmsg_len) and adds RTA_ALIGN(rta_len)."""

    def __init__(self, msg_type: int, flags: int, *, seq: int = 0, fixed: bytes = b"",
                 fixed_len: int | None = None):
        self.type = msg_type
        self.flags = flags
        self.seq = seq
        self.fixed = fixed
        self.attrs: list[tuple[int, bytes]] = []
        self.pending: list[tuple[int, bytes]] = []

    def addattr(self, t: int, payload: bytes) -> None:
        self.attrs.append((t, payload))

    def bytes(self) -> bytearray:
        body = bytearray(self.fixed)
        for t, p in self.attrs:
            body += bytes(-(16 + len(body)) % 4)
            rta_len = 4 + len(p)
            body += struct.pack("<HH", rta_len, t) + p + bytes(-rta_len % 4)
        return bytearray(struct.pack("<IHHII", 16 + len(body), self.type, self.flags,
                                     self.seq, 0)) + body


def parse_tb(msg: bytes, start: int, end: int, raw: bool = False) -> dict:
    """parse_rtattr: the FIRST attribute of each type wins; payloads (or offsets)."""
    tb: dict[int, object] = {}
    off = start
    while off + 4 <= end:
        alen, atype = struct.unpack_from("<HH", msg, off)
        if alen < 4 or off + alen > end:
            break
        atype &= ~0xC000 & 0xFFFF
        if atype not in tb:
            tb[atype] = off if raw else bytes(msg[off + 4:off + alen])
        off += (alen + 3) & ~3
    return tb
