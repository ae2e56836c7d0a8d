"""pyroute2 against an xfrmd server, without the preload shim.

    from xfrmd.pyroute2 import IPRoute

    with IPRoute() as ipr:              # the server named by $XFRMD_SOCKET
        ipr.get_links()

The classes here are pyroute2's own (``IPRoute``, ``AsyncIPRoute``, ``IPRSocket``,
``NetlinkSocket``, ``GenericNetlinkSocket``, ``NlEthtool`` …) given a socket that speaks
docs/protocol.md instead of a kernel ``AF_NETLINK`` socket. pyroute2 (0.9) accepts a ready
socket through its ``use_socket`` argument and drives it exactly like a netlink socket: asyncio
registers it as a datagram endpoint (``recvfrom``), requests go out with ``send``/``sendto``,
``bind()`` passes ``(pid, groups)``. :class:`XfrmdSocket` is a real ``socket.socket`` (so
``fileno``, ``select``, ``poll`` and asyncio work natively) whose netlink-facing methods do
what the shim does in C: bind/autobind frames, socket options, the 12-byte netlink sender
address, dump-progress (``RECVD``) frames, ``SOCK_ERROR`` frames raised as ``OSError``.

Extra keyword arguments of every class: ``path`` (the server socket; default
``$XFRMD_SOCKET``, as in docs/protocol.md) and ``netns`` — pyroute2's own namespace argument,
here the *emulated* namespace (default ``$XFRMD_NETNS``, else ``default``).

pyroute2 has no XFRM message classes; ``XfrmSocket()`` is its generic ``NetlinkSocket`` on
``NETLINK_XFRM``: send raw requests with ``send()`` and read datagrams with ``recv()``, or
register message classes with ``register_policy``.
"""
from __future__ import annotations

import errno as E
import inspect
import os
import select
import socket
import struct

from pyroute2.iproute.linux import AsyncIPRoute as _AsyncIPRoute
from pyroute2.iproute.linux import IPRoute as _IPRoute
from pyroute2.netlink.generic import AsyncGenericNetlinkSocket as _AsyncGenericNetlinkSocket
from pyroute2.netlink.generic import GenericNetlinkSocket as _GenericNetlinkSocket
from pyroute2.netlink.generic.ethtool import AsyncNlEthtool as _AsyncNlEthtool
from pyroute2.netlink.generic.ethtool import NlEthtool as _NlEthtool
from pyroute2.netlink.nlsocket import AsyncNetlinkSocket as _AsyncNetlinkSocket
from pyroute2.netlink.nlsocket import NetlinkSocket as _NetlinkSocket
from pyroute2.netlink.rtnl.iprsocket import AsyncIPRSocket as _AsyncIPRSocket
from pyroute2.netlink.rtnl.iprsocket import IPRSocket as _IPRSocket

from . import transport as T
from .client import check_server, refused_option
from .netlink.socket import rcvbuf_for

AF_NETLINK = 16
NETLINK_ROUTE, NETLINK_XFRM, NETLINK_GENERIC = 0, 6, 16
SOL_NETLINK = 270
NETLINK_ADD_MEMBERSHIP, NETLINK_DROP_MEMBERSHIP = 1, 2
NETLINK_LISTEN_ALL_NSID, NETLINK_LIST_MEMBERSHIPS = 8, 9
NETLINK_EXT_ACK, NETLINK_GET_STRICT_CHK = 11, 12
SO_SNDBUF, SO_RCVBUF, SO_RCVBUFFORCE, SO_SNDBUFFORCE = 7, 8, 33, 32
SO_TYPE, SO_PROTOCOL, SO_DOMAIN = 3, 38, 39
NLM_F_MULTI, NLMSG_DONE = 2, 3
#: netlink_recvmsg remembers the largest read, capped at 32 KiB (as the shim reports it)
MAX_RECVMSG_LEN = 32768
BIND_TIMEOUT = 30.0
_FENCE_PID = 0x78667264                    # "xfrd"; the sequence number counts fences


def _fence(seq: int) -> bytes:
    """NLMSG_NOOP | NLM_F_ACK: acknowledged by netlink_rcv_skb, no other effect."""
    return struct.pack("=IHHII", 16, 1, 4, seq, _FENCE_PID)


def _fence_ack_seq(rec: bytes) -> int | None:
    """The fence number if ``rec`` is the ACK of one of our fences."""
    if len(rec) < 36 or rec[4:6] != b"\x02\x00":
        return None
    err, ln, typ, flags, seq, pid = struct.unpack_from("=iIHHII", rec, 16)
    return seq if (err, ln, typ, flags, pid) == (0, 16, 1, 4, _FENCE_PID) else None

__all__ = ["XfrmdSocket", "IPRoute", "AsyncIPRoute", "IPRSocket", "AsyncIPRSocket",
           "NetlinkSocket", "AsyncNetlinkSocket", "XfrmSocket", "AsyncXfrmSocket",
           "GenericNetlinkSocket", "AsyncGenericNetlinkSocket", "NlEthtool", "AsyncNlEthtool"]


class XfrmdSocket(socket.socket):
    """One emulated netlink socket of ``protocol``: a SEQPACKET connection to the server that
    presents itself as ``AF_NETLINK``/``SOCK_DGRAM`` (what pyroute2 and asyncio check)."""

    def __init__(self, protocol: int, netns: str | None = None, path: str | None = None,
                 sock_type: int = socket.SOCK_DGRAM):
        super().__init__(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        self.nl_protocol = protocol
        self.nl_type = sock_type
        self.nl_bound = False
        self.nl_portid = 0
        self.nl_groups = 0
        self.nl_rcvbuf = self.nl_sndbuf = 212992
        self.nl_opts: dict[int, int] = {}
        self._unfenced = False          # a datagram went out since the last fence
        self._fence_pending = False     # a fence is out and nothing has arrived since
        self._fence_seq = 0
        self.nl_path = path or T.default_socket_path()
        netns = netns or os.environ.get("XFRMD_NETNS", "")
        self.nl_netns = netns
        try:
            super().connect(self.nl_path)
        except (FileNotFoundError, ConnectionRefusedError) as e:
            super().close()
            raise ConnectionRefusedError(
                E.ECONNREFUSED, f"xfrmd: cannot reach the xfrmd server at {self.nl_path}: "
                f"{e.strerror}") from None
        check_server(self, self.nl_path)
        super().send(T.hello(protocol, sock_type, netns))

    # -- what pyroute2 and asyncio look at ------------------------------------------------

    @property
    def family(self):
        return socket.AddressFamily(AF_NETLINK)

    @property
    def type(self):
        return socket.SocketKind(self.nl_type)

    @property
    def proto(self):
        return self.nl_protocol

    def __repr__(self):
        return (f"<xfrmd.pyroute2.XfrmdSocket fd={self.fileno()} protocol={self.nl_protocol} "
                f"portid={self.nl_portid} server={self.nl_path!r}>")

    def dup(self):
        raise OSError(E.EOPNOTSUPP, "xfrmd: dup() of an emulated netlink socket object")

    # -- binding (docs/protocol.md: BIND / AUTOBIND wait for BIND_REPLY) ------------------

    def _next_record(self, timeout: float) -> bytes:
        """The next record, waiting at most ``timeout`` whatever the socket's blocking mode."""
        self._next_record_ready(timeout)
        rec = super().recv(T.MAX_RECORD, socket.MSG_DONTWAIT)
        if not rec:
            raise self._gone()
        return rec

    def _gone(self) -> OSError:
        return ConnectionRefusedError(E.ECONNREFUSED, "xfrmd: the server closed the connection")

    def _bind_exchange(self, frame: bytes) -> None:
        super().send(frame)
        while True:
            rec = self._next_record(BIND_TIMEOUT)
            if not T.is_frame(rec):
                continue            # cannot happen before the first binding; be lenient
            _, kind, payload = T.parse_frame(rec)
            if kind != T.F_BIND_REPLY:
                continue
            err, portid, groups = struct.unpack_from("=iII", payload)
            if err:
                raise OSError(-err, os.strerror(-err))
            self.nl_bound, self.nl_portid, self.nl_groups = True, portid, groups
            return

    def _ensure_bound(self) -> None:
        if not self.nl_bound:
            self._bind_exchange(T.frame(T.F_AUTOBIND))

    def bind(self, address) -> None:
        """``address`` is ``(pid, groups)`` as for a Python AF_NETLINK socket; netlink_bind:
        the first binding chooses the port id, later ones may only change the groups."""
        pid, groups = (address[0], address[1]) if len(address) > 1 else (address[0], 0)
        pid &= 0xFFFFFFFF
        groups &= 0xFFFFFFFF
        if not self.nl_bound:
            self._bind_exchange(T.bind(pid, groups))
            return
        self._check_option(0, 0, groups)
        if pid and pid != self.nl_portid:
            raise OSError(E.EINVAL, os.strerror(E.EINVAL))
        self.nl_groups = groups
        super().send(T.bind(self.nl_portid, groups))

    def connect(self, address) -> None:
        self._ensure_bound()        # netlink_connect autobinds; the peer is always the kernel

    def getsockname(self):
        return (self.nl_portid, self.nl_groups)

    def getpeername(self):
        return (0, 0)

    # -- options --------------------------------------------------------------------------

    def _check_option(self, level: int, optname: int, groups: int = 0) -> None:
        """EPERM where the kernel refuses the caller (docs/security.md); no reply comes."""
        err = refused_option(self.nl_path, self.nl_netns, self.nl_protocol, level, optname, groups)
        if err:
            raise OSError(err, os.strerror(err))

    def setsockopt(self, level, optname, value, optlen=None) -> None:
        if isinstance(value, (bytes, bytearray)):
            v = struct.unpack_from("=i", bytes(value).ljust(4, b"\0"))[0]
        elif value is None:
            v = 0
        else:
            v = int(value)
        self._check_option(level, optname)
        if level == socket.SOL_SOCKET:
            if optname in (SO_RCVBUF, SO_RCVBUFFORCE):
                # what the server will use
                self.nl_rcvbuf = rcvbuf_for(v, optname == SO_RCVBUFFORCE)
            elif optname in (SO_SNDBUF, SO_SNDBUFFORCE):
                self.nl_sndbuf = v * 2
                return
            else:
                return
        elif level == SOL_NETLINK:
            if optname in (NETLINK_ADD_MEMBERSHIP, NETLINK_DROP_MEMBERSHIP):
                self._ensure_bound()
                if 0 < v <= 32:
                    bit = 1 << (v - 1)
                    self.nl_groups = (self.nl_groups | bit if optname == NETLINK_ADD_MEMBERSHIP
                                      else self.nl_groups & ~bit)
            else:
                self.nl_opts[optname] = 1 if v else 0
        else:
            raise OSError(E.ENOPROTOOPT, os.strerror(E.ENOPROTOOPT))
        super().send(T.setsockopt(level, optname, v))

    def getsockopt(self, level, optname, buflen=None):
        if level == socket.SOL_SOCKET:
            v = {SO_RCVBUF: self.nl_rcvbuf, SO_SNDBUF: self.nl_sndbuf, SO_TYPE: self.nl_type,
                 SO_PROTOCOL: self.nl_protocol, SO_DOMAIN: AF_NETLINK}.get(optname)
            if v is None:
                return super().getsockopt(level, optname, *([buflen] if buflen else []))
        elif level == SOL_NETLINK:
            v = self.nl_groups if optname == NETLINK_LIST_MEMBERSHIPS else self.nl_opts.get(optname, 0)
        else:
            raise OSError(E.ENOPROTOOPT, os.strerror(E.ENOPROTOOPT))
        return struct.pack("=I", v & 0xFFFFFFFF) if buflen else v

    # -- data -----------------------------------------------------------------------------

    def send(self, data, flags: int = 0) -> int:
        """One datagram to the kernel. As the shim does, a datagram the kernel would ignore
        (shorter than a header, or starting with four zero bytes) is not forwarded but still
        binds the socket; the caller is told it was sent."""
        data = bytes(data)
        self._ensure_bound()
        if len(data) < 16 or data[:4] == b"\0\0\0\0":
            return len(data)
        try:
            super().send(data, (flags & socket.MSG_DONTWAIT) | socket.MSG_NOSIGNAL)
        except (BrokenPipeError, ConnectionResetError):
            raise self._gone() from None
        self._unfenced = True
        return len(data)

    def sendto(self, data, flags_or_addr, addr=None) -> int:
        flags = 0 if addr is None else flags_or_addr
        return self.send(data, flags)     # the destination is always the kernel (pid 0)

    def sendall(self, data, flags: int = 0) -> None:
        self.send(data, flags)

    def _recv_record(self, bufsize: int, flags: int) -> bytes:
        """One netlink datagram (whole); control frames are consumed on the way.

        The kernel answers a request inside sendmsg(), so a non-blocking read right after a
        send finds the answer queued; through the server it may still be on its way. So when
        a non-blocking read finds nothing after a send, a fence goes out (NLMSG_NOOP with
        NLM_F_ACK, which netlink_rcv_skb acknowledges and nothing else notices) and the read
        waits for the first record: an answer to the earlier sends (they are queued before the
        fence's ACK), or the fence's ACK itself, meaning there was none. Fence ACKs are never
        shown to the program. Nothing is read ahead, so poll/select on fileno() stay true."""
        peek = flags & socket.MSG_PEEK
        dontwait = flags & socket.MSG_DONTWAIT
        nonblocking = dontwait or self.gettimeout() == 0.0
        while True:
            try:
                if self._fence_pending and nonblocking:
                    self._next_record_ready(BIND_TIMEOUT)
                rec = super().recv(T.MAX_RECORD, socket.MSG_PEEK | dontwait)
            except BlockingIOError:
                if self._unfenced:
                    self._unfenced = False
                    self._fence_pending = True
                    self._fence_seq = (self._fence_seq + 1) & 0xFFFFFFFF
                    super().send(_fence(self._fence_seq))
                    continue
                raise
            if not rec:
                raise self._gone()
            if T.is_frame(rec):
                super().recv(T.MAX_RECORD, dontwait)          # consume it
                _, kind, payload = T.parse_frame(rec)
                if kind == T.F_SOCK_ERROR:
                    (err,) = struct.unpack_from("=i", payload)
                    raise OSError(-err, os.strerror(-err))      # sk_err, e.g. ENOBUFS
                continue
            fence = _fence_ack_seq(rec)
            if fence is not None:
                super().recv(T.MAX_RECORD, dontwait)
                if fence == self._fence_seq:
                    self._fence_pending = False                  # nothing else was due
                continue
            self._fence_pending = False                          # an answer arrived
            if peek:
                return rec
            rec = super().recv(T.MAX_RECORD, dontwait)
            if len(rec) >= 16:
                mtype, mflags = struct.unpack_from("=HH", rec, 4)
                if mflags & NLM_F_MULTI and mtype != NLMSG_DONE:
                    # netlink_recvmsg: a read of a dump part runs the next dump step and
                    # remembers the reader's buffer size
                    super().send(T.recvd(min(bufsize, MAX_RECVMSG_LEN)))
            return rec

    def _next_record_ready(self, timeout: float) -> None:
        poller = select.poll()
        poller.register(self.fileno(), select.POLLIN)
        if not poller.poll(int(timeout * 1000)):
            raise TimeoutError(E.ETIMEDOUT, "xfrmd: no answer from the server")

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        rec = self._recv_record(bufsize, flags)
        return rec if flags & socket.MSG_TRUNC and len(rec) > bufsize else rec[:bufsize]

    def recvfrom(self, bufsize: int, flags: int = 0):
        return self.recv(bufsize, flags), (0, 0)      # the sender is the kernel: pid 0

    def recv_into(self, buffer, nbytes: int = 0, flags: int = 0) -> int:
        view = memoryview(buffer).cast("B")
        n = nbytes or len(view)
        rec = self._recv_record(n, flags)
        c = min(n, len(rec))
        view[:c] = rec[:c]
        return len(rec) if flags & socket.MSG_TRUNC else c

    def recvfrom_into(self, buffer, nbytes: int = 0, flags: int = 0):
        return self.recv_into(buffer, nbytes, flags), (0, 0)


# -- pyroute2's classes on an XfrmdSocket ----------------------------------------------------

def _socket_for(cls, protocol: int, path: str | None, netns: str | None, kw: dict) -> XfrmdSocket:
    """The socket, with the options pyroute2's own ``setup_socket`` would set (it is not
    called when a socket is given): SO_SNDBUF, SO_RCVBUF, EXT_ACK, LISTEN_ALL_NSID,
    GET_STRICT_CHK, taking pyroute2's defaults for what the caller did not pass."""
    defaults = {k: p.default for k, p in inspect.signature(cls.__init__).parameters.items()
                if p.default is not inspect.Parameter.empty}
    opt = {k: kw.get(k, defaults.get(k)) for k in
           ("sndbuf", "rcvbuf", "ext_ack", "all_ns", "strict_check")}
    sock = XfrmdSocket(protocol, netns, path)
    sock.setsockopt(socket.SOL_SOCKET, SO_SNDBUF, opt["sndbuf"] or 1048576)
    sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUF, opt["rcvbuf"] or 1048576)
    if opt["ext_ack"]:
        sock.setsockopt(SOL_NETLINK, NETLINK_EXT_ACK, 1)
    if opt["all_ns"]:
        sock.setsockopt(SOL_NETLINK, NETLINK_LISTEN_ALL_NSID, 1)
    if opt["strict_check"]:
        sock.setsockopt(SOL_NETLINK, NETLINK_GET_STRICT_CHK, 1)
    return sock


def _adapted(base, protocol: int | None):
    """``base`` whose constructor takes ``path=`` and ``netns=`` (the emulated namespace) and
    always runs on an :class:`XfrmdSocket`. ``protocol`` None: taken from ``family=``."""

    class Adapted(base):
        def __init__(self, *args, path: str | None = None, netns: str | None = None, **kw):
            if kw.get("use_socket") is not None:
                raise TypeError("xfrmd.pyroute2 classes make their own socket")
            proto = protocol
            if proto is None:
                proto = args[0] if args else kw.get("family", NETLINK_GENERIC)
            sock = _socket_for(base, proto, path, netns, kw)
            self._xfrmd_socket = sock
            try:
                super().__init__(*args, use_socket=sock, **kw)
            except BaseException:
                sock.close()
                raise

        def close(self, *args, **kw):
            try:
                return super().close(*args, **kw)
            finally:
                # pyroute2 never closes a socket it was given
                self._xfrmd_socket.close()

    Adapted.__name__ = Adapted.__qualname__ = base.__name__
    Adapted.__doc__ = (f"pyroute2's ``{base.__name__}`` on an xfrmd server "
                       f"(extra arguments ``path``, ``netns``).\n\n" + (base.__doc__ or ""))
    return Adapted


IPRoute = _adapted(_IPRoute, NETLINK_ROUTE)
AsyncIPRoute = _adapted(_AsyncIPRoute, NETLINK_ROUTE)
IPRSocket = _adapted(_IPRSocket, NETLINK_ROUTE)
AsyncIPRSocket = _adapted(_AsyncIPRSocket, NETLINK_ROUTE)
NetlinkSocket = _adapted(_NetlinkSocket, None)
AsyncNetlinkSocket = _adapted(_AsyncNetlinkSocket, None)
GenericNetlinkSocket = _adapted(_GenericNetlinkSocket, NETLINK_GENERIC)
AsyncGenericNetlinkSocket = _adapted(_AsyncGenericNetlinkSocket, NETLINK_GENERIC)
NlEthtool = _adapted(_NlEthtool, NETLINK_GENERIC)
AsyncNlEthtool = _adapted(_AsyncNlEthtool, NETLINK_GENERIC)


def XfrmSocket(**kw) -> NetlinkSocket:
    """pyroute2's generic ``NetlinkSocket`` on NETLINK_XFRM (raw requests)."""
    return NetlinkSocket(family=NETLINK_XFRM, **kw)


def AsyncXfrmSocket(**kw) -> AsyncNetlinkSocket:
    return AsyncNetlinkSocket(family=NETLINK_XFRM, **kw)
