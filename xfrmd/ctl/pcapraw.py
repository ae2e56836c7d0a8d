"""A pcap of IP packets (LINKTYPE_RAW, 101): what ``xfrmd ctl xmit --pcap`` writes."""
from __future__ import annotations

import struct

LINKTYPE_RAW = 101


def write_raw_pcap(path: str, packets: list[bytes], t0: int = 0) -> None:
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, LINKTYPE_RAW))
        for i, p in enumerate(packets):
            f.write(struct.pack("<IIII", t0, i, len(p), len(p)) + p)
