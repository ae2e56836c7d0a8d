"""The service connection of ``xfrmd ctl`` and of the clients in :mod:`xfrmd.client`
(docs/protocol.md, "Service queries"): one SOCK_SEQPACKET connection, a hello, then one JSON
query and one JSON answer at a time. Only the transport framing is imported here, not trio,
the netlink codec or the kernel model: a ``xfrmd ctl`` call is a short-lived process and its
start-up is its cost (tests/test_ctl_startup.py)."""
from __future__ import annotations

import errno as E
import json
import os
import socket
import struct
from typing import Any, Self

from . import transport as T

SO_PEERCRED = 17


class ServerRefused(ConnectionRefusedError):
    """The socket's server runs as another user (neither ours nor root): not our kernel,
    and what we would send it (keys) is not for it (docs/security.md)."""


def check_server(sock: socket.socket, path: str) -> None:
    """After connect: the server's SO_PEERCRED uid must be ours or root's."""
    uid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, SO_PEERCRED, 12))[1]
    if uid not in (0, os.geteuid()):
        sock.close()
        raise ServerRefused(E.ECONNREFUSED, f"xfrmd: refusing server at {path} owned by uid {uid}")


class _Closing:
    """A connection to the server that ``with`` closes."""
    sock: Any

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Service(_Closing):
    """Service queries and ``xfrmd ctl`` verbs over one service connection."""

    def __init__(self, netns: str = "", path: str | None = None, timeout: float | None = 30.0):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.sock.settimeout(timeout)
        path = path or T.default_socket_path()
        self.sock.connect(path)
        check_server(self.sock, path)
        self.sock.send(T.hello(T.SERVICE_PROTOCOL, 0, netns or os.environ.get("XFRMD_NETNS", "")))

    def query(self, op: str, **fields) -> dict:
        self.sock.send(T.query({"op": op, **fields}))
        rec = self.sock.recv(T.MAX_RECORD)
        if not rec:
            raise ConnectionResetError("xfrmd: server closed the connection")
        _, kind, payload = T.parse_frame(rec)
        return json.loads(payload)

