"""Just enough IPv4/IPv6 + UDP/TCP/ICMP to put real packets through the emulated ESP path:
what an application's ``sendmsg`` hands to ``ip_output`` (headers with valid checksums, so
scapy and Wireshark read them), and the outer headers ESP adds."""
from __future__ import annotations

import ipaddress
import struct
import sys
from array import array
from functools import lru_cache

IPPROTO_ICMP, IPPROTO_IPIP, IPPROTO_TCP, IPPROTO_UDP = 1, 4, 6, 17
IPPROTO_IPV6, IPPROTO_ESP, IPPROTO_ICMPV6 = 41, 50, 58
PROTOS = {"udp": IPPROTO_UDP, "tcp": IPPROTO_TCP, "icmp": IPPROTO_ICMP}


_SWAP = sys.byteorder == "little"


def ip_compute_csum(data: bytes) -> int:
    """The Internet checksum (RFC 1071) of ``data`` (``ip_compute_csum``)."""
    if len(data) % 2:
        data += b"\0"
    words = array("H", data)
    if _SWAP:
        words.byteswap()
    s = sum(words)
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


@lru_cache(maxsize=16)
def _payload(size: int) -> bytes:
    return bytes(i & 0xFF for i in range(size))


def _pseudo(src: bytes, dst: bytes, proto: int, length: int) -> bytes:
    if len(src) == 4:
        return src + dst + struct.pack("!BBH", 0, proto, length)
    return src + dst + struct.pack("!IxxxB", length, proto)


def l4_segment(proto: int, src: bytes, dst: bytes, sport: int, dport: int, size: int,
               seq: int = 0, payload: bytes | None = None) -> bytes:
    """The transport header and ``size`` bytes of payload (``payload`` when given: what a
    socket sent), checksummed."""
    if payload is None:
        payload = _payload(size)
    else:
        size = len(payload)
    if proto == IPPROTO_UDP:
        hdr = struct.pack("!HHHH", sport, dport, 8 + size, 0)
        c = ip_compute_csum(_pseudo(src, dst, proto, 8 + size) + hdr + payload) or 0xFFFF
        return hdr[:6] + struct.pack("!H", c) + payload
    if proto == IPPROTO_TCP:
        hdr = struct.pack("!HHIIBBHHH", sport, dport, seq, 0, 5 << 4, 0x18, 65535, 0, 0)
        c = ip_compute_csum(_pseudo(src, dst, proto, 20 + size) + hdr + payload)
        return hdr[:16] + struct.pack("!H", c) + hdr[18:] + payload
    if proto in (IPPROTO_ICMP, IPPROTO_ICMPV6):
        v6 = proto == IPPROTO_ICMPV6
        hdr = struct.pack("!BBHHH", 128 if v6 else 8, 0, 0, sport or 1, seq & 0xFFFF)
        body = hdr + payload
        c = ip_compute_csum((_pseudo(src, dst, proto, len(body)) if v6 else b"") + body)
        return body[:2] + struct.pack("!H", c) + body[4:]
    return payload


_ip_id = [0]
_IP4 = struct.Struct("!BBHHHBBH4s4s")


@lru_cache(maxsize=256)
def _ip4_words(src: bytes, dst: bytes, proto: int, total_len: int, ttl: int) -> int:
    """The sum of an IPv4 header's 16-bit words but the ID (the checksum field is 0), not
    folded: the ID is added per packet and the sum folded then (RFC 1624's incremental
    update; one fold of the whole sum gives the same checksum as summing every word)."""
    s, d = int.from_bytes(src, "big"), int.from_bytes(dst, "big")
    return (0x4500 + total_len + 0x4000 + (ttl << 8 | proto)
            + (s >> 16) + (s & 0xFFFF) + (d >> 16) + (d & 0xFFFF))


def ip_header(src: bytes, dst: bytes, proto: int, payload_len: int, ttl: int = 64,
              ident: int | None = None) -> bytes:
    """IPv4 (20 bytes, DF, as ip_build_and_send_pkt / __ip_make_skb set it) or IPv6 (40).
    The IPv4 ID is the next of one counter unless ``ident`` gives it (see take_ip_ids)."""
    if len(src) == 4:
        if ident is None:
            ident = _ip_id[0] = (_ip_id[0] + 1) & 0xFFFF
        s = _ip4_words(src, dst, proto, 20 + payload_len, ttl) + ident
        while s >> 16:
            s = (s & 0xFFFF) + (s >> 16)
        return _IP4.pack(0x45, 0, 20 + payload_len, ident, 0x4000, ttl, proto, ~s & 0xFFFF,
                         src, dst)
    return struct.pack("!IHBB16s16s", 6 << 28, payload_len, proto, ttl, src, dst)


def ip_headers(src: bytes, dst: bytes, proto: int, payload_len: int, idents: list[int],
               ttl: int = 64) -> list[bytes]:
    """``ip_header`` for each of ``idents`` (IPv4 IDs; IPv6 has none: the same header
    each time), the sum of the other words taken once."""
    if len(src) != 4:
        return [ip_header(src, dst, proto, payload_len, ttl)] * len(idents)
    base, pack, total = _ip4_words(src, dst, proto, 20 + payload_len, ttl), _IP4.pack, 20 + payload_len
    out = []
    for ident in idents:
        s = base + ident
        s = (s & 0xFFFF) + (s >> 16)
        s = (s & 0xFFFF) + (s >> 16)          # base < 2^20: two folds leave 16 bits
        out.append(pack(0x45, 0, total, ident, 0x4000, ttl, proto, ~s & 0xFFFF, src, dst))
    return out


def take_ip_ids(n: int) -> int:
    """Reserve the next ``n`` IPv4 IDs of the counter for a caller that builds the headers in
    another order: returns the first; the i-th is ``(first + i) & 0xFFFF``."""
    first = _ip_id[0] + 1
    _ip_id[0] = (_ip_id[0] + n) & 0xFFFF
    return first


def ip_packet(src: str, dst: str, proto: int, sport: int, dport: int, size: int,
              seq: int = 0) -> bytes:
    s, d = ipaddress.ip_address(src).packed, ipaddress.ip_address(dst).packed
    if proto == IPPROTO_ICMP and len(s) == 16:
        proto = IPPROTO_ICMPV6
    seg = l4_segment(proto, s, d, sport, dport, size, seq)
    return ip_header(s, d, proto, len(seg)) + seg


def split_ip(pkt: bytes) -> tuple[bytes, bytes, int, bytes]:
    """(src, dst, protocol, payload) of an IPv4 or IPv6 packet without options/extensions."""
    if pkt[0] >> 4 == 4:
        ihl = (pkt[0] & 15) * 4
        return pkt[12:16], pkt[16:20], pkt[9], pkt[ihl:]
    return pkt[8:24], pkt[24:40], pkt[6], pkt[40:]


def l4_ports(proto: int, seg: bytes) -> tuple[int, int]:
    if proto in (IPPROTO_UDP, IPPROTO_TCP) and len(seg) >= 4:
        return struct.unpack_from("!HH", seg)
    return 0, 0
