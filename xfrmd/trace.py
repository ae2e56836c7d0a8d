"""Recording and decoding the netlink conversation (``serve --trace``, ``xfrmd trace``).

A trace is JSON lines: ``{"t": seconds, "dir": "tx"|"rx"|"event", "netns": …, "proto": …,
"sock": id, "portid": …, "data": hex}``."""
from __future__ import annotations

import json
import sys
from typing import TextIO

from netlink_codec.errors import DecodeError
from netlink_codec.netlink import NETLINK_XFRM


class TraceWriter:
    def __init__(self, out: TextIO, kernel):
        self.out = out
        self.kernel = kernel

    @classmethod
    def open(cls, target: str, kernel) -> "TraceWriter":
        out = sys.stderr if target == "-" else open(target, "a", buffering=1)
        return cls(out, kernel)

    def __call__(self, direction: str, sock, datagram: bytes) -> None:
        self.out.write(json.dumps({"t": round(self.kernel.clock.now(), 6), "dir": direction,
                                   "netns": sock.netns.name, "proto": sock.protocol,
                                   "sock": sock.id, "portid": sock.portid,
                                   "data": datagram.hex()}) + "\n")


def describe(proto: int, datagram: bytes) -> list[str]:
    """One line per message: type name, flags, seq, pid and the attributes by name."""
    from .client import _family_for
    fam = _family_for(proto)
    if fam is None or datagram[:4] == b"\0\0\0\0":
        return [f"<{len(datagram)} bytes>"]
    try:
        msgs = fam.decode_datagram(datagram)
    except DecodeError as e:
        return [f"<undecodable: {e}>"]
    lines = []
    for m in msgs:
        space = None
        names = []
        for a in m.attrs:
            try:
                space = fam._space(m.type, m.flags)
                names.append(space.attr_name(a.type) if space else str(a.type))
            except Exception:  # noqa: BLE001
                names.append(str(a.type))
        lines.append(f"{fam.type_name(m.type)} flags=0x{m.flags:x} seq={m.seq} pid={m.pid}"
                     + (f" [{', '.join(names)}]" if names else ""))
    return lines


def print_trace(path: str, out: TextIO) -> int:
    with (sys.stdin if path == "-" else open(path)) as f:
        for line in f:
            if not line.strip():
                continue
            rec = json.loads(line)
            data = bytes.fromhex(rec["data"])
            arrow = {"tx": "→", "rx": "←", "event": "⇐"}.get(rec["dir"], "?")
            for desc in describe(rec["proto"], data):
                out.write(f"{rec['t']:.6f} {rec['netns']} sock{rec['sock']} {arrow} {desc}\n")
    return 0


__all__ = ["TraceWriter", "print_trace", "describe", "NETLINK_XFRM"]
