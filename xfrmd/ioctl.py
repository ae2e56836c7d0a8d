"""Interface ioctls answered for the shim (service op ``ioctl``, docs/protocol.md).

A handler is registered per ioctl request number and called as
``fn(kernel, ns, ifname, data: bytes) -> (errno, out: bytes)`` in ``kernel.ioctls`` (filled
by the subsystems' init calls) where ``data`` is the caller's
``struct ifreq`` (or, for SIOCETHTOOL, the ethtool command buffer that ``ifr_data`` points
at, which the shim copies in and out) and ``out`` replaces it on success."""
from __future__ import annotations

import errno as E
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from .kernel import Kernel, NetNamespace

SIOCGIFNAME = 0x8910
SIOCGIFCONF = 0x8912
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
SIOCGIFADDR = 0x8915
SIOCGIFMTU = 0x8921
SIOCGIFDSTADDR = 0x8917
SIOCGIFBRDADDR = 0x8919
SIOCGIFNETMASK = 0x891B
SIOCGIFMETRIC = 0x891D
SIOCGIFHWADDR = 0x8927
SIOCGIFMAP = 0x8970
SIOCGIFTXQLEN = 0x8942
SIOCGIFINDEX = 0x8933
SIOCETHTOOL = 0x8946

IoctlHandler = Callable[["Kernel", "NetNamespace", str, bytes], tuple[int, bytes]]

def handle(kernel: "Kernel", ns: "NetNamespace", request: int, ifname: str,
           data: bytes) -> tuple[int, bytes]:
    """``sock_ioctl`` → ``dev_ioctl``: the handler of ``request`` in ``kernel.ioctls``."""
    fn = kernel.ioctls.get(request)
    if fn is None:
        return E.ENOTTY, b""  # what the kernel's sock_ioctl answers for unknown requests
    return fn(kernel, ns, ifname, data)
