"""A netlink pcap of the emulated kernel's traffic (``xfrmd serve --pcap FILE``).

The file is what ``tcpdump -i nlmon0 -w FILE`` writes on Linux: LINKTYPE_NETLINK (253), each
packet a 16-byte cooked header (packet type, ARPHRD_NETLINK, no address, the netlink protocol,
all big-endian) followed by the datagram. Wireshark/tshark decode it as Linux netlink.
"""
from __future__ import annotations

import struct
from typing import BinaryIO

LINKTYPE_NETLINK = 253
ARPHRD_NETLINK = 824
PACKET_HOST = 0       # kernel → socket (replies, events)
PACKET_OUTGOING = 4   # socket → kernel (requests)
_GLOBAL = struct.Struct("<IHHiIII")
_RECORD = struct.Struct("<IIII")
_COOKED = struct.Struct(">HHH8sH")


class PcapWriter:
    """A kernel tracer (``kernel.tracers``) that appends every datagram to a pcap file."""

    def __init__(self, out: BinaryIO, kernel, snaplen: int = 262144):
        self.out = out
        self.kernel = kernel
        out.write(_GLOBAL.pack(0xA1B2C3D4, 2, 4, 0, 0, snaplen, LINKTYPE_NETLINK))
        out.flush()

    @classmethod
    def open(cls, path: str, kernel) -> "PcapWriter":
        return cls(open(path, "wb"), kernel)

    def __call__(self, direction: str, sock, datagram: bytes) -> None:
        if datagram[:4] == b"\0\0\0\0":
            return  # a transport frame, not netlink
        ptype = PACKET_OUTGOING if direction == "tx" else PACKET_HOST
        pkt = _COOKED.pack(ptype, ARPHRD_NETLINK, 0, b"", sock.protocol) + datagram
        t = self.kernel.clock.wall_precise() if hasattr(self.kernel.clock, "wall_precise") else float(self.kernel.clock.wall())
        sec = int(t)
        usec = int((t - sec) * 1e6)
        self.out.write(_RECORD.pack(sec, usec, len(pkt), len(pkt)) + pkt)
        self.out.flush()
