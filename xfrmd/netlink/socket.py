"""One emulated netlink socket (``struct netlink_sock``), sans-IO.

Replies and events are appended to ``rx`` as whole datagrams (or transport frames for
socket errors); whoever owns the I/O takes them out with :meth:`NetlinkSocket.pop`.

Receive-buffer accounting is the kernel's: every queued datagram is charged the
``truesize`` of the skb Linux would queue for it (:func:`skb_truesize`), and what is charged
may not pass ``rcvbuf`` (``sk_rcvbuf``). What has left ``rx`` but was not read yet is still
charged: the I/O side keeps ``outq`` up to date (docs/protocol.md, "Flow control").
"""
from __future__ import annotations

import struct
from collections import deque
from dataclasses import dataclass
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
F_READ = 11           # u32: datagrams the program has read from this socket so far
F_QUERY = 16
F_BIND_REPLY, F_SOCK_ERROR, F_ANSWER = 0x81, 0x82, 0x90

# net.core.rmem_default; SO_RCVBUF doubles the request and caps it at 2 * rmem_max
RMEM_DEFAULT = 212992
RMEM_MAX = 212992
SOCK_MIN_RCVBUF = 2304        # 2048 + SKB_DATA_ALIGN(sizeof(struct sk_buff)) on x86_64

# x86_64 skb sizes: SKB_DATA_ALIGN(sizeof(struct sk_buff)), SKB_DATA_ALIGN(sizeof(struct
# skb_shared_info)), and the small-head cache that alloc_skb uses for short data
# (SKB_SMALL_HEAD_CACHE_SIZE)
_SKB_STRUCT, _SKB_SHINFO, _SKB_SMALL_HEAD = 256, 320, 576


def skb_truesize(size: int) -> int:
    """``skb->truesize`` of an skb whose data area holds ``size`` bytes: the kmalloc'ed head
    (data + shared info, rounded up to its slab size) plus the sk_buff itself.

    For a unicast reply ``size`` is its length (``netlink_trim`` gives back an oversized
    head); for a dump step it is what ``netlink_dump`` allocated. The real kernel (6.18)
    queues 92 RTM_GETLINK replies of 1468 bytes (2304 each) in the default 212992 bytes,
    and charges an ACK 832."""
    need = ((size + 63) & ~63) + _SKB_SHINFO
    if need <= _SKB_SMALL_HEAD:
        return _SKB_SMALL_HEAD + _SKB_STRUCT
    return (1 << (need - 1).bit_length()) + _SKB_STRUCT


_SMALL_TRUESIZE = _SKB_SMALL_HEAD + _SKB_STRUCT     # skb_truesize(0) … skb_truesize(256)


def rcvbuf_for(value: int, force: bool, rmem_max: int = RMEM_MAX) -> int:
    """``sk_rcvbuf`` after ``setsockopt(SO_RCVBUF / SO_RCVBUFFORCE, value)``
    (``sock_setsockopt``, ``__sock_set_rcvbuf``): SO_RCVBUF compares ``value`` as an
    unsigned int with rmem_max (a negative value gets rmem_max); SO_RCVBUFFORCE takes a
    negative value as 0; the result is doubled, capped at INT_MAX and at least
    SOCK_MIN_RCVBUF."""
    # conditionals, not min/max: ip sets SO_RCVBUF on every socket it opens
    if force:
        v = value if value > 0 else 0
    else:
        v = value & 0xFFFFFFFF
        if v > rmem_max:
            v = rmem_max
    if v > 0x7FFFFFFF // 2:
        v = 0x7FFFFFFF // 2
    v *= 2
    return v if v > SOCK_MIN_RCVBUF else SOCK_MIN_RCVBUF


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
    intr: bool = False            # NLM_F_DUMP_INTR on the next message put (xfrmd.fault)


class NetlinkSocket:
    """``struct netlink_sock``. A plain class with ``__slots__`` and an ``__init__`` written
    out (every `ip` line opens one: a generated dataclass ``__init__`` matching ~30 keyword
    parameters was a tenth of an open/close). Extra keywords (``rcvbuf=…``, tests) set the
    field of that name."""

    __slots__ = ("protocol", "netns", "pid", "uid", "sock_type", "portid", "bound", "_groups",
                 "ext_ack", "cap_ack", "strict_chk", "no_enobufs", "cap_net_admin",
                 "cap_net_admin_init", "rcvbuf", "max_recvmsg_len", "rx", "rx_truesize",
                 "rx_bytes", "outq", "outq_probe", "congested", "drops", "reply_dropped",
                 "dump", "closed", "id", "client_ino", "netns_fds")

    protocol: int
    netns: Any                    # the NetNamespace
    pid: int                      # creator's process id (SO_PEERCRED)
    uid: int
    sock_type: int                # SOCK_RAW or SOCK_DGRAM
    portid: int
    bound: bool
    groups: int                   # bit (g-1) set = member of group g
    ext_ack: bool
    cap_ack: bool
    strict_chk: bool
    no_enobufs: bool
    cap_net_admin: bool           # in the namespace's user namespace (xfrmd/capability.py)
    cap_net_admin_init: bool      # in the init user namespace (SO_RCVBUFFORCE)
    rcvbuf: int                   # sk_rcvbuf
    max_recvmsg_len: int
    rx: deque
    rx_truesize: deque            # what each datagram in rx is charged
    rx_bytes: int                 # truesize charged for rx (sk_rmem_alloc, this side)
    outq: int                     # charged for what left rx but was not read (set by I/O)
    outq_probe: Any               # I/O's exact count of that, called before a drop decision
    congested: bool               # NETLINK_S_CONGESTED
    drops: int                    # sk_drops
    reply_dropped: bool           # a unicast to it was dropped while a request was handled
    dump: DumpState | None
    closed: bool
    id: int                       # unique per kernel, for logs and traces
    client_ino: int               # inode of the shim's end of the connection (found again after exec)
    netns_fds: dict | None        # fd → emulated namespace name, for IFLA_NET_NS_FD (F_NETNS_FD)

    def __init__(self, protocol: int, netns: Any, pid: int = 0, uid: int = 0,
                 sock_type: int = 3, id: int = 0, **fields: Any):
        self.protocol = protocol
        self.netns = netns
        self.pid = pid
        self.uid = uid
        self.sock_type = sock_type
        self.id = id
        self._groups = 0               # not yet in ns.sockets: no listeners to update
        self.cap_net_admin = self.cap_net_admin_init = True
        self.rx = deque()
        self.rx_truesize = deque()
        self.closed = False
        self.fresh()
        if fields:
            for name, value in fields.items():
                setattr(self, name, value)   # AttributeError for a name that is no field

    def fresh(self) -> None:
        """The defaults ``__netlink_create`` gives every new socket, of what a program can
        change on it: also what :meth:`Kernel.reopen <xfrmd.kernel.Kernel.reopen>` resets
        when it reuses this object for the next socket. Not here (set by the caller): the
        creation arguments, ``id``, the capabilities, the groups (0 on a reused socket), the
        queue (emptied there) and ``closed``."""
        self.portid = 0
        self.bound = False
        self.ext_ack = self.cap_ack = self.strict_chk = self.no_enobufs = False
        self.rcvbuf = RMEM_DEFAULT
        self.max_recvmsg_len = 0
        self.rx_bytes = self.outq = self.drops = self.client_ino = 0
        self.outq_probe = self.dump = self.netns_fds = None
        self.congested = self.reply_dropped = False

    def __repr__(self) -> str:
        return f"<NetlinkSocket {self.id} protocol {self.protocol} portid {self.portid}>"

    def rmem(self) -> int:
        """``sk_rmem_alloc``: what is queued and not read yet."""
        return self.rx_bytes + self.outq

    def _room(self, truesize: int) -> bool:
        """``netlink_attachskb`` / ``netlink_broadcast_deliver``'s test: the skb is charged
        first, and it stays if it is alone in the queue or the total is within rcvbuf, and
        the socket is not congested. Before refusing, the exact unread count is fetched (the
        reader may have read since ``outq`` was last set), and a congestion ends once the
        queue is empty (``netlink_rcv_wake`` clears it when a read empties the queue)."""
        for exact in (False, True):
            if exact:
                if self.outq_probe is None:
                    return False
                self.outq = self.outq_probe()
                if self.congested and not self.rx and self.outq == 0:
                    self.congested = False
            rmem = self.rx_bytes + self.outq + truesize
            if not self.congested and (rmem == truesize or rmem <= self.rcvbuf):
                return True
        return False

    def overrun(self) -> None:
        """``netlink_overrun``: unless NETLINK_NO_ENOBUFS, the first drop congests the socket
        and sets ``sk_err``, which the next read reports before any queued datagram
        (``__skb_try_recv_datagram`` checks ``sock_error`` first): the frame goes to the
        front. With NETLINK_NO_ENOBUFS nothing is congested: a later datagram that fits is
        queued."""
        self.drops += 1
        if not self.no_enobufs and not self.congested:
            self.congested = True
            self.set_error(ENOBUFS)

    def set_error(self, errno: int) -> None:
        """``sk->sk_err = errno``: the next read fails with it (a SOCK_ERROR frame, not
        charged to the buffer)."""
        self.rx.appendleft(sock_error_frame(errno))
        self.rx_truesize.appendleft(0)

    def queue(self, datagram: bytes, truesize: int = 0) -> bool:
        """Unicast delivery from the kernel (``netlink_unicast`` with MSG_DONTWAIT, as
        ``nlmsg_unicast`` sends every reply, ACK and error): a datagram that does not fit is
        dropped and the socket overruns. ``truesize`` is what it is charged (default: an
        skb trimmed to its length)."""
        # _attach, inline (every ACK and reply comes this way); a datagram of up to 256
        # bytes fits skb_truesize's small head
        ts = truesize or (_SMALL_TRUESIZE if len(datagram) <= 256 else skb_truesize(len(datagram)))
        rmem = self.rx_bytes + self.outq + ts
        if not self.congested and (rmem == ts or rmem <= self.rcvbuf) or self._room(ts):
            self.rx.append(datagram)
            self.rx_truesize.append(ts)
            self.rx_bytes += ts
            return True
        self.overrun()
        self.reply_dropped = True
        return False

    def queue_multicast(self, datagram: bytes) -> bool:
        """Multicast delivery (``netlink_broadcast_deliver``; a refusal is
        ``netlink_overrun``, as in ``do_one_broadcast``)."""
        return self._attach(datagram, 0)

    def _attach(self, datagram: bytes, truesize: int) -> bool:
        ts = truesize or skb_truesize(len(datagram))
        if not self._room(ts):
            self.overrun()
            return False
        self.rx.append(datagram)
        self.rx_truesize.append(ts)
        self.rx_bytes += ts
        return True

    def pop_skb(self) -> tuple[bytes, int] | None:
        """The next datagram or frame and the truesize it was charged."""
        if not self.rx:
            return None
        d = self.rx.popleft()
        ts = self.rx_truesize.popleft()
        self.rx_bytes -= ts
        return d, ts

    def pop(self) -> bytes | None:
        """A read (in-process users): the next datagram or frame; a read that empties the
        queue ends a congestion (``netlink_rcv_wake``)."""
        rx = self.rx
        d = None
        if rx:                  # pop_skb, inline
            d = rx.popleft()
            self.rx_bytes -= self.rx_truesize.popleft()
        if not rx and self.outq == 0:
            self.congested = False
        return d

    def member(self, group: int) -> bool:
        return group > 0 and bool(self._groups >> (group - 1) & 1)

    @property
    def groups(self) -> int:
        return self._groups

    @groups.setter
    def groups(self, value: int) -> None:
        # every change of membership refreshes the namespace's listeners mask, as each
        # path that changes nlk->groups ends in netlink_update_listeners
        self._groups = value
        if not self.closed:
            update_listeners(self.netns, self.protocol)


def update_listeners(ns: Any, protocol: int) -> None:
    """``netlink_update_listeners``: the OR of the groups of the open sockets of
    ``protocol`` in ``ns``, kept in ``ns.listeners`` for ``Kernel.has_listeners``
    (``netlink_has_listeners`` reads the table's listeners bitmap, never the sockets)."""
    socks = getattr(ns, "sockets", None)
    if socks is None:           # a bare socket made by a test, in no namespace
        return
    mask = 0
    for s in socks.get(protocol, ()):
        mask |= s._groups
    ns.listeners[protocol] = mask
