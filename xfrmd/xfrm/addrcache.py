"""One bytes object per distinct address (or SA selector) among those seen lately.

The kernel keeps an ``xfrm_address_t`` (16 bytes) inline in every state, template and hash
key; here each is a bytes object of 49 bytes (37 for an IPv4 key), so a million SAs between
a few gateways would hold millions of copies of a few addresses. What the SAD and the SPD
keep goes through :func:`shared` first. The cache is bounded: full, it starts again empty
(an address seen again after that gets a new object, as before)."""
from __future__ import annotations

SEEN: dict[bytes, bytes] = {}
_MAX = 4096


def shared(addr: bytes) -> bytes:
    """``addr``, or the equal bytes object returned before."""
    got = SEEN.get(addr)
    if got is None:
        if len(SEEN) >= _MAX:
            SEEN.clear()
        SEEN[addr] = got = addr
    return got
