"""One emulated netlink socket (``struct netlink_sock``), sans-IO.

Replies and events are appended to ``rx`` as whole datagrams (or transport frames for
socket errors); whoever owns the I/O takes them out with :meth:`NetlinkSocket.pop`.
"""
from __future__ import annotations

import struct
from collections import deque
from dataclasses import dataclass, field
from typing import Any

ENOBUFS = 105

# Transport frame telling the shim that the next recv fails (docs/protocol.md, SOCK_ERROR).
FRAME = struct.Struct("=IHH")
PROTOCOL_VERSION = 1
F_HELLO, F_BIND, F_AUTOBIND, F_SETSOCKOPT, F_RECVD = 1, 2, 3, 4, 5
F_BIND_AUTO = 6       # autobind to the port id the shim predicted; BIND_REPLY only if not
F_SYNC, F_SYNC_REPLY = 7, 0x83   # a mark after everything earlier requests produced
F_BATCH = 8           # several records in one: u32 length + record, repeated
F_RELEASE = 9         # close() of the emulated socket; the connection awaits a new HELLO
F_NETNS_FD = 10       # u32 fd + name: the sender's fd NUMBER is emulated namespace NAME
F_QUERY = 16
F_BIND_REPLY, F_SOCK_ERROR, F_ANSWER = 0x81, 0x82, 0x90

# net.core.rmem_default; SO_RCVBUF doubles the request and caps it at 2 * rmem_max
RMEM_DEFAULT = 212992
RMEM_MAX = 212992


def sock_error_frame(errno: int) -> bytes:
    return FRAME.pack(0, PROTOCOL_VERSION, F_SOCK_ERROR) + struct.pack("=i", -errno)


@dataclass
class DumpState:
    """A running dump (``struct netlink_callback``): the object iterator and what is pending."""
    seq: int
    iterator: Any                 # yields encoded messages (bytes)
    pending: bytes | None = None  # the message that did not fit in the previous datagram
    finished: bool = False        # iterator exhausted; NLMSG_DONE still to send
    done_error: int = 0           # errno for NLMSG_DONE (dump callback failure)
    done_tlvs: bytes = b""


@dataclass(eq=False, slots=True)
class NetlinkSocket:
    protocol: int
    netns: Any                    # the NetNamespace
    pid: int = 0                  # creator's process id (SO_PEERCRED)
    uid: int = 0
    sock_type: int = 3            # SOCK_RAW
    portid: int = 0
    bound: bool = False
    groups: int = 0               # bit (g-1) set = member of group g
    ext_ack: bool = False
    cap_ack: bool = False
    strict_chk: bool = False
    no_enobufs: bool = False
    cap_net_admin: bool = True
    rcvbuf: int = RMEM_DEFAULT
    max_recvmsg_len: int = 0
    rx: deque = field(default_factory=deque)
    rx_bytes: int = 0
    congested: bool = False
    dump: DumpState | None = None
    closed: bool = False
    id: int = 0                   # unique per kernel, for logs and traces
    client_ino: int = 0           # inode of the shim's end of the connection (found again after exec)
    netns_fds: dict | None = None # fd → emulated namespace name, for IFLA_NET_NS_FD (F_NETNS_FD)

    def queue(self, datagram: bytes) -> None:
        """Unicast delivery: always queued (the kernel blocks or drops; we never lose answers)."""
        self.rx.append(datagram)
        self.rx_bytes += len(datagram)

    def queue_multicast(self, datagram: bytes) -> bool:
        """Multicast delivery with receive-buffer accounting (``netlink_broadcast_deliver``)."""
        if self.rx_bytes + len(datagram) > self.rcvbuf:
            if not self.congested:
                self.congested = True
                if not self.no_enobufs:  # netlink_overrun sets sk_err, which the next
                    # read reports before any queued datagram (__skb_try_recv_datagram
                    # checks sock_error first): the frame goes to the front
                    frame = sock_error_frame(ENOBUFS)
                    self.rx.appendleft(frame)
                    self.rx_bytes += len(frame)
            return False
        self.queue(datagram)
        return True

    def pop(self) -> bytes | None:
        if not self.rx:
            return None
        d = self.rx.popleft()
        self.rx_bytes -= len(d)
        if self.rx_bytes < self.rcvbuf // 2:
            self.congested = False
        return d

    def member(self, group: int) -> bool:
        return group > 0 and bool(self.groups >> (group - 1) & 1)
