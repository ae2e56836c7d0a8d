"""The Python heap on transparent huge pages (``_hugeheap.c``; docs/performance.md, "Scale").

A table of a million SAs or policies is a GiB of small objects spread over pymalloc's 1 MiB
arenas; a lookup or a delete reads five or so of them at random, and with 4 KiB pages each
read is a TLB miss as well as a cache miss. :func:`install` makes pymalloc's arenas out of
2 MiB-aligned regions asked to be huge pages (``madvise(MADV_HUGEPAGE)``: the host's THP mode
is usually ``madvise``, which backs nothing CPython allocates by itself).

For a process whose job is the server (``tune_gc`` calls it). Off with ``XFRMD_PURE_PYTHON=1``
or when the extension is not built: then CPython's own arenas, as before.
"""
from __future__ import annotations

from netlink_codec import cext

from .cext import source

_hugeheap = cext.load("xfrmd._hugeheap", source("xfrmd._hugeheap"))


def install() -> bool:
    """From now on pymalloc's new arenas are carved out of huge-page regions, and blocks of
    4 MiB or more (a big dict's tables) are huge pages of their own; True when that is so
    (also if an earlier call installed it)."""
    return _hugeheap is not None and bool(_hugeheap.install())


def stats() -> dict[str, int | bool]:
    """The allocator's counters (``_hugeheap.stats``); empty when it is not loaded."""
    return {} if _hugeheap is None else dict(_hugeheap.stats())
