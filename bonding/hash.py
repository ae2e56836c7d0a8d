"""``bond_xmit_hash`` (drivers/net/bonding/bond_main.c) for layer2, layer2+3 and layer3+4,
bit for bit. A packet is described by a :class:`Flow`; for ESP the flow dissector reads the
four bytes after the IP header (the SPI) where ports would be, so layer3+4 hashes an ESP
SA's packets by its SPI. Also ``bond_ipsec_xfrm_hash``, the newest LAG series' hash of an
xfrm state (P39 of docs/bonding.md)."""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from netlink_codec import xfrm as X

LAYER2, LAYER34, LAYER23 = "layer2", "layer3+4", "layer2+3"
ETH_P_IP, ETH_P_IPV6 = 0x0800, 0x86DD
IPPROTO_ESP = 50


@dataclass
class Flow:
    src_mac: bytes
    dst_mac: bytes
    src: str
    dst: str
    proto: int = 17
    sport: int = 0
    dport: int = 0
    spi: int | None = None           # ESP: the dissector's "ports" are the SPI

    @property
    def ethertype(self) -> int:
        return ETH_P_IPV6 if ":" in self.src else ETH_P_IP


def bond_eth_hash(f: Flow) -> int:
    """h_dest[5] ^ h_source[5] ^ be16_to_cpu(h_proto)."""
    return f.dst_mac[5] ^ f.src_mac[5] ^ f.ethertype


def _le_words(raw: bytes) -> int:
    """The XOR of the 32-bit words of ``raw`` (network order, each read as the little-endian
    CPU holds it)."""
    h = 0
    for i in range(0, len(raw), 4):
        h ^= int.from_bytes(raw[i:i + 4], "little")
    return h


def _fold(h: int) -> int:
    """``__bond_xmit_hash`` / ``bond_ipsec_xfrm_hash``'s last steps: >>16, >>8 folded in."""
    h &= 0xFFFFFFFF
    h ^= h >> 16
    h ^= h >> 8
    return h


def _u32_of_addr(addr: str) -> int:
    """flow_get_u32_src/dst: an IPv4 address as the kernel holds it (network order read on a
    little-endian CPU); IPv6: ipv6_addr_hash, the XOR of its four words read the same way."""
    return _le_words(ipaddress.ip_address(addr).packed)


def _ports_u32(f: Flow) -> int:
    """memcpy(&hash, &flow.ports.ports, 4): source then destination port, each big endian,
    read as a little-endian u32; for ESP the SPI's four bytes."""
    if f.proto == IPPROTO_ESP and f.spi is not None:
        raw = f.spi.to_bytes(4, "big")
    else:
        raw = f.sport.to_bytes(2, "big") + f.dport.to_bytes(2, "big")
    return int.from_bytes(raw, "little")


def bond_ip_hash(h: int, f: Flow, policy: str) -> int:
    h = _fold(h ^ _u32_of_addr(f.dst) ^ _u32_of_addr(f.src))
    if policy == LAYER34:
        return h >> 1          # the lowest bit follows the common even-port pattern
    return h


def bond_xmit_hash(f: Flow, policy: str) -> int:
    if policy == LAYER2:
        return bond_eth_hash(f)
    if policy == LAYER23:
        return bond_ip_hash(bond_eth_hash(f), f, policy)
    if policy == LAYER34:
        return bond_ip_hash(_ports_u32(f), f, policy)
    raise ValueError(f"xmit_hash_policy {policy!r} is not modelled")


def xmit_slave(f: Flow, policy: str, slaves: list[Any]) -> Any:
    """``bond_xmit_3ad_xor_slave_get``: slaves[hash % count]."""
    if not slaves:
        return None
    return slaves[bond_xmit_hash(f, policy) % len(slaves)]


def _swab16(port: int) -> int:
    """``(__force u16)`` of a __be16: the port's network bytes read little-endian."""
    return int.from_bytes(port.to_bytes(2, "big"), "little")


def bond_ipsec_xfrm_hash(x: Any) -> int:
    """``bond_ipsec_xfrm_hash``: SPI ^ proto ^ family ^ the addresses (each __be32 read as
    the little-endian CPU holds it), the encap ports, folded >>16, >>8."""
    h = _le_words(x.id.spi.to_bytes(4, "big")) ^ x.id.proto ^ x.family
    if x.family == X.AF_INET:
        h ^= _le_words(bytes(x.id.daddr[:4])) ^ _le_words(bytes(x.saddr[:4]))
    elif x.family == X.AF_INET6:
        h ^= _le_words(bytes(x.id.daddr[:16])) ^ _le_words(bytes(x.saddr[:16]))
    enc = getattr(x, "encap", None)
    if enc is not None:
        h ^= (_swab16(enc.encap_sport) << 16) ^ _swab16(enc.encap_dport)
    return _fold(h)
