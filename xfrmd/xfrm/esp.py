"""The sizes of the ESP type (esp4.c / esp6.c): ``x->props.header_len`` as
``esp_init_state`` sets it, and ``esp4_get_mtu`` / ``esp6_get_mtu`` (``xfrm_state_mtu``), from
the IV, ICV and block sizes of the state's transform."""
from __future__ import annotations

from typing import TYPE_CHECKING

from netlink_codec import xfrm as X

if TYPE_CHECKING:
    from .state import SecurityAssociation


def _ivsize(x: SecurityAssociation) -> int:
    if x.aead is not None:
        return 8
    if x.enc is not None and x.enc.name not in ("ecb(cipher_null)",):
        return 16 if "cbc" in x.enc.name else 8
    return 0


def _authsize(x: SecurityAssociation) -> int:
    if x.aead is not None:
        return x.aead.icv_len // 8
    if x.auth is not None:
        return x.auth.trunc_len // 8
    return 0


def _blksize(x: SecurityAssociation) -> int:
    if x.enc is not None and "cbc" in x.enc.name:
        return 16
    return 4                                      # ALIGN(blocksize 1, 4)


def header_len(x: SecurityAssociation) -> int:
    """``x->props.header_len`` of an ESP state (esp_init_state): ESP header + IV, the outer
    IP header in tunnel mode, the UDP header with NAT-T."""
    n = 8 + _ivsize(x)
    if x.mode == X.XFRM_MODE_TUNNEL:
        n += 20 if x.family == X.AF_INET else 40
    if x.encap is not None:
        n += 8
    return n


def xfrm_state_mtu(x: SecurityAssociation, mtu: int) -> int:
    """``esp4_get_mtu`` / ``esp6_get_mtu``."""
    net_adj = 0
    if x.mode != X.XFRM_MODE_TUNNEL:
        net_adj = 20 if x.family == X.AF_INET else 40
    return ((mtu - header_len(x) - _authsize(x) - net_adj) & ~(_blksize(x) - 1)) + net_adj - 2
