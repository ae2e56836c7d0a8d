"""Framing of the shim ↔ server transport (docs/protocol.md), shared by server and clients."""
from __future__ import annotations

import json
import os
import struct

from .netlink.socket import (F_ANSWER, F_AUTOBIND, F_BIND, F_BIND_AUTO, F_BIND_REPLY, F_HELLO,  # noqa: F401
                             F_QUERY, F_SYNC, F_SYNC_REPLY, F_BATCH, F_RELEASE, F_NETNS_FD,
                             F_READ, F_RECVD, F_SETSOCKOPT, F_SOCK_ERROR, FRAME, PROTOCOL_VERSION)

SERVICE_PROTOCOL = 0xFFFFFFFF
FILE_WRITE_PROTOCOL = 0xFFFFFFFE   # a virtual file opened for writing (docs/protocol.md)
INET_PROTOCOL = 0xFFFFFFFD     # a UDP socket carried by the emulated stack (docs/protocol.md)
# INET connection frames: shim → server, then server → shim
F_INET_BIND, F_INET_CONNECT, F_INET_SEND, F_INET_SETSOCKOPT = 32, 33, 34, 35
F_INET_BIND_REPLY, F_INET_DGRAM = 0xA0, 0xA1
MAX_RECORD = 131000  # below glibc's mmap threshold: recv() stays cheap


class FrameError(ValueError):
    """A malformed control frame or BATCH: the server closes the connection."""


def private_dir() -> str:
    """The per-user directory of the last-resort default path (``serve`` makes it 0700)."""
    return f"/tmp/xfrmd-{os.geteuid()}"


def default_socket_path() -> str:
    """``$XFRMD_SOCKET``, else ``$XDG_RUNTIME_DIR/xfrmd.sock``, else ``xfrmd.sock`` in a
    per-user 0700 directory under /tmp (docs/security.md)."""
    p = os.environ.get("XFRMD_SOCKET")
    if p:
        return p
    rt = os.environ.get("XDG_RUNTIME_DIR")
    if rt:
        return os.path.join(rt, "xfrmd.sock")
    return os.path.join(private_dir(), "xfrmd.sock")


def frame(kind: int, payload: bytes = b"") -> bytes:
    return FRAME.pack(0, PROTOCOL_VERSION, kind) + payload


def is_frame(record: bytes) -> bool:
    return len(record) >= 8 and record[:4] == b"\0\0\0\0"


def parse_frame(record: bytes) -> tuple[int, int, bytes]:
    """(version, kind, payload) of a control frame."""
    _, version, kind = FRAME.unpack_from(record)
    return version, kind, record[FRAME.size:]


def batch(records: list[bytes]) -> bytes:
    """One BATCH frame carrying ``records`` (frames or datagrams), handled in order."""
    return frame(F_BATCH, b"".join(struct.pack("=I", len(r)) + r for r in records))


def split_batch(payload: bytes) -> list[bytes]:
    """The records of a BATCH payload; ValueError when a length runs past the end."""
    out, o, n = [], 0, len(payload)
    while o < n:
        if o + 4 > n:
            raise FrameError("truncated batch")
        (length,) = struct.unpack_from("=I", payload, o)
        o += 4
        if o + length > n:
            raise FrameError("truncated batch")
        out.append(payload[o:o + length])
        o += length
    return out


def hello(protocol: int, sock_type: int = 3, netns: str = "") -> bytes:
    return frame(F_HELLO, struct.pack("=II", protocol, sock_type) + netns.encode() + b"\0")


def parse_hello(payload: bytes) -> tuple[int, int, str]:
    protocol, sock_type = struct.unpack_from("=II", payload)
    name = payload[8:].split(b"\0", 1)[0].decode("utf-8", "replace")
    return protocol, sock_type, name or "default"


def hello_ino(payload: bytes) -> int:
    """The u64 after the namespace's NUL in a netlink HELLO: the inode of the shim's end of
    the connection, by which a program that inherited the fd across exec finds its socket
    again (service op ``nlsock_state``); 0 when absent."""
    end = payload.find(b"\0", 8)
    if end < 0 or len(payload) < end + 9:
        return 0
    return struct.unpack_from("=Q", payload, end + 1)[0]


def hello_inet(payload: bytes) -> tuple[int, int]:
    """(family, ip protocol) after the namespace's NUL in an INET HELLO; (0, 0) when absent."""
    end = payload.find(b"\0", 8)
    if end < 0 or len(payload) < end + 9:
        return 0, 0
    return struct.unpack_from("=II", payload, end + 1)


def hello_extra(payload: bytes) -> str:
    """The string after the namespace in HELLO (the path of a FILE_WRITE connection)."""
    parts = payload[8:].split(b"\0")
    return parts[1].decode("utf-8", "replace") if len(parts) > 1 else ""


def bind(portid: int, groups: int) -> bytes:
    return frame(F_BIND, struct.pack("=II", portid & 0xFFFFFFFF, groups & 0xFFFFFFFF))


def bind_reply(error: int, portid: int, groups: int, free: int = 0) -> bytes:
    """``free``: the protocols whose table does not hold the process's id (Server._control)."""
    return frame(F_BIND_REPLY, struct.pack("=iIII", error, portid & 0xFFFFFFFF,
                                           groups & 0xFFFFFFFF, free))


def setsockopt(level: int, optname: int, value: int) -> bytes:
    return frame(F_SETSOCKOPT, struct.pack("=IIi", level, optname, value))


def recvd(buflen: int) -> bytes:
    return frame(F_RECVD, struct.pack("=I", buflen))


def read_report(count: int) -> bytes:
    """READ: the datagrams this socket has read so far (mod 2**32), sent ahead of a request."""
    return frame(F_READ, struct.pack("=I", count & 0xFFFFFFFF))


def query(obj: dict) -> bytes:
    return frame(F_QUERY, json.dumps(obj).encode())


_ANSWER_HEAD = FRAME.pack(0, PROTOCOL_VERSION, F_ANSWER)
_json_str = json.encoder.encode_basestring_ascii


def answer(obj: dict) -> bytes:
    """ANSWER with ``obj`` as ``json.dumps`` writes it. Most answers are flat (``errno``, an
    index, a name, hex data): those are written here directly, a third of what dumps()
    costs, which builds an encoder per call."""
    parts = []
    for k, v in obj.items():
        t = type(v)
        if t is int:
            parts.append(f"{_json_str(k)}: {v}")
        elif t is str:
            parts.append(f"{_json_str(k)}: {_json_str(v)}")
        else:
            return _ANSWER_HEAD + json.dumps(obj).encode()
    return _ANSWER_HEAD + ("{" + ", ".join(parts) + "}").encode()
