"""A small emulated ESP data path: enough to watch sequence numbers, anti-replay windows and
byte/packet lifetimes of (replicated) SAs move, as the LAG offload debate needs."""
from __future__ import annotations

from typing import TYPE_CHECKING

from . import mib, services

if TYPE_CHECKING:
    from ..kernel import Kernel


def init(kernel: Kernel) -> None:
    """The data path's service ops (``xmit``, ``xfrm_stat``) and MIB file
    (``/proc/net/xfrm_stat``: xfrm_proc_init)."""
    kernel.services.update(services.SERVICES)
    for path, read, write in mib.FILES:
        kernel.vfs.register(path, read, write)
