"""A device's packet counters (``struct rtnl_link_stats64``), as drivers keep them with
``dev_sw_netstats_tx_add`` / ``dev_lstats_add`` and ``dev_get_stats`` reports them:
IFLA_STATS64, IFLA_STATS (the same counters cut to 32 bits, ``copy_rtnl_link_stats``) and
/proc/net/dev all read ``dev.stats64``.

What a driver counts as a packet's bytes differs: ``veth_xmit``, netdevsim's
``nsim_start_xmit`` and ``dummy_xmit`` count the frame with its Ethernet header
(``skb->len`` at ``ndo_start_xmit``); ``loopback_xmit`` counts after ``eth_type_trans``
pulled it (the IP packet's length). A bond counts nothing itself: ``bond_get_stats`` folds
its slaves' counters, which :func:`netstats_add` mirrors by counting on the bond too."""
from __future__ import annotations

import struct
from typing import Any

NFIELDS = 25                 # rtnl_link_stats64 of 6.x (rx_otherhost_dropped last)
RX_PACKETS, TX_PACKETS, RX_BYTES, TX_BYTES, TX_DROPPED = 0, 1, 2, 3, 7
ETH_HLEN = 14


def frame_len(dev: Any, ip_len: int) -> int:
    """The bytes a driver counts for an IP packet of ``ip_len`` (see the module's text)."""
    if getattr(dev, "kind", None) == "loopback" or len(getattr(dev, "address", b"") or b"") != 6:
        return ip_len
    return ip_len + ETH_HLEN


def netstats_add(dev: Any, rx: bool = False, nbytes: int = 0, dropped: bool = False) -> None:
    """One packet (of ``nbytes`` as the driver counts them) received or sent on ``dev``, or
    dropped by its transmit (``tx_dropped``); a slave's traffic counts on its bond as well
    (``bond_get_stats`` folds the slaves' counters)."""
    while dev is not None:
        s = list(dev.stats64 or ())
        s += [0] * (NFIELDS - len(s))
        if dropped:
            s[TX_DROPPED] += 1
        else:
            s[RX_PACKETS if rx else TX_PACKETS] += 1
            s[RX_BYTES if rx else TX_BYTES] += nbytes
        dev.stats64 = tuple(s)
        master = getattr(dev, "master", None)
        dev = master if getattr(master, "kind", None) == "bond" else None


def stats64_bytes(dev: Any) -> bytes:
    """IFLA_STATS64's payload."""
    s = list(getattr(dev, "stats64", None) or ())[:NFIELDS]
    return struct.pack(f"={NFIELDS}Q", *(s + [0] * (NFIELDS - len(s))))


def stats32_bytes(dev: Any) -> bytes:
    """IFLA_STATS's payload: ``struct rtnl_link_stats``, 24 counters of 32 bits."""
    s = list(getattr(dev, "stats64", None) or ())[:24]
    return struct.pack("=24I", *[v & 0xFFFFFFFF for v in s + [0] * (24 - len(s))])
