"""Raw ICMP and ICMPv6 sockets of real programs (net/ipv4/raw.c, net/ipv6/raw.c): what root's
iputils ``ping`` opens when the namespace's ``net.ipv4.ping_group_range`` refuses it a ping
socket.

A raw socket is an INET connection like a UDP one (:mod:`xfrmd.inet.udp` keeps the table
and sends); this module holds what differs:

* receive (``raw_local_deliver`` → ``raw_v4_input`` / ``ipv6_raw_deliver``): every raw
  socket of the packet's protocol whose bound address, connected peer and bound device
  match gets a copy — IPv4 with its IP header, ICMPv6 without the IPv6 header — before the
  protocol itself (``icmp_rcv``) sees the packet; ``ICMP_FILTER`` / ``ICMP6_FILTER`` drop
  the types whose bit is set (``icmp_filter``, ``icmpv6_filter``);
* send (``raw_sendmsg`` without IP_HDRINCL, ``rawv6_sendmsg``): the program's bytes are the
  ICMP message; IPv4 sends them as they are (ping computes the checksum), an ICMPv6 raw
  socket always has the checksum filled in at offset 2 (``rawv6_push_pending_frames``).

Not modelled: IP_HDRINCL (an IPv4 raw socket that builds its own header), raw sockets of
other protocols, IPV6_CHECKSUM on other offsets."""
from __future__ import annotations

import ipaddress
import struct
from typing import TYPE_CHECKING, Any

from ..datapath.packet import ip_compute_csum

if TYPE_CHECKING:
    from ..kernel import NetNamespace

SOCK_DGRAM, SOCK_RAW = 2, 3
SOL_RAW, ICMP_FILTER = 255, 1           # ICMP_FILTER on an IPv4 ICMP raw socket
SOL_ICMPV6, ICMPV6_FILTER = 58, 1       # ICMP6_FILTER on an ICMPv6 raw socket
IPPROTO_ICMPV6 = 58
RAW_MAX = 0xFFFF                        # raw_sendmsg: len > 0xFFFF is EMSGSIZE


def table(ns: NetNamespace) -> list[Any]:
    """The namespace's ``raw_v4_hashinfo`` / ``raw_v6_hashinfo`` (one list: the socket's
    family tells them apart)."""
    t = getattr(ns, "raw_table", None)
    if t is None:
        t = []
        setattr(ns, "raw_table", t)
    return t


def set_filter(sk: Any, level: int, optname: int, value: bytes) -> bool:
    """``raw_seticmpfilter`` / ``rawv6_seticmpfilter``: the option is kept (a longer value
    cut to the filter's size). False when it is not a filter option of this socket."""
    v6 = sk.proto == IPPROTO_ICMPV6
    if (level, optname) == ((SOL_ICMPV6, ICMPV6_FILTER) if v6 else (SOL_RAW, ICMP_FILTER)):
        n = 32 if v6 else 4
        sk.icmp_filter = (value[:n] + bytes(n))[:n]
        return True
    return False


def filtered(sk: Any, icmp_type: int) -> bool:
    """``icmp_filter`` (types 0..31, one u32) / ``icmpv6_filter`` (eight u32): a set bit
    drops the type."""
    f = sk.icmp_filter
    if not f:
        return False
    if sk.proto != IPPROTO_ICMPV6:
        return icmp_type < 32 and bool(struct.unpack("=I", f)[0] >> icmp_type & 1)
    return bool(struct.unpack_from("=I", f, (icmp_type >> 5) * 4)[0] >> (icmp_type & 31) & 1)


def out_segment(sk: Any, src: str, daddr: str, data: bytes) -> bytes:
    """The ICMP message as it leaves: IPv4 untouched; ICMPv6 with its checksum computed over
    the pseudo header (``rawv6_push_pending_frames``, offset 2)."""
    if sk.proto != IPPROTO_ICMPV6 or len(data) < 4:
        return data
    s, d = ipaddress.ip_address(src).packed, ipaddress.ip_address(daddr).packed
    body = data[:2] + b"\0\0" + data[4:]
    pseudo = s + d + struct.pack("!IxxxB", len(body), IPPROTO_ICMPV6)
    return body[:2] + struct.pack("!H", ip_compute_csum(pseudo + body)) + body[4:]


def matches(sk: Any, family: int, proto: int, saddr: str, daddr: str, ifindex: int) -> bool:
    """``raw_v4_match`` / ``raw_v6_match``: protocol, bound address (the packet's
    destination), connected peer (its source), bound device."""
    return (sk.family == family and sk.proto == proto and not sk.closed
            and (sk.laddr is None or sk.laddr == daddr)
            and (sk.raddr is None or sk.raddr == saddr)
            and (not sk.ifindex or sk.ifindex == ifindex))
