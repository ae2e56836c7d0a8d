"""Packets from real sockets: UDP datagram sockets of programs under the shim, carried by the
emulated stack (routing, the SPD/SAD and ESP of :mod:`xfrmd.datapath`, veth pairs between
emulated namespaces). The wire format between shim and server is in docs/protocol.md,
"INET connection"; the per-namespace socket table and the send/receive glue in
:mod:`xfrmd.inet.udp`."""
from __future__ import annotations

from typing import TYPE_CHECKING

from . import sendmsg, sysctl

if TYPE_CHECKING:
    from ..kernel import Kernel


def init(kernel: Kernel) -> None:
    """inet_init's sysctls the sockets obey (``/proc/sys/net/ipv4/ping_group_range``) and
    the service op the shim asks before a send (``inet_send_check``)."""
    kernel.services.update(sendmsg.SERVICES)
    for path, read, write in sysctl.VFS_FILES:
        kernel.vfs.register(path, read, write)
