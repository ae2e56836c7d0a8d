"""Python clients of an xfrmd server, without the shim.

:class:`NetlinkSocket` is a blocking emulated netlink socket; :class:`TrioNetlinkSocket` the
same for trio; :class:`Service` sends service queries and ``xfrmd ctl`` verbs. They speak
docs/protocol.md directly.

    with NetlinkSocket(NETLINK_XFRM) as nl:
        for msg in nl.request(XfrmMsg.GETPOLICY, NLM_F_DUMP):
            ...
"""
from __future__ import annotations

import errno as E
import json
import os
import socket
import struct
from typing import Any, Iterator, Self

import trio

from netlink_codec.genl import GENL
from netlink_codec.message import Family, Message
from netlink_codec.netlink import (NETLINK_CAP_ACK, NETLINK_EXT_ACK, NETLINK_GENERIC,
                                   NETLINK_XFRM, NLM_F_ACK, NLM_F_DUMP, NLM_F_MULTI,
                                   NLM_F_REQUEST, NLMSG_DONE, NLMSG_ERROR, NLMSGERR_ATTR_MSG,
                                   NLMSGERR_ATTR_OFFS, SOL_NETLINK, encode_msg, split_messages)
from netlink_codec.xfrm import XFRM

from . import transport as T
from .service_client import Service, ServerRefused, _Closing, check_server  # noqa: F401

SOL_SOCKET, SO_RCVBUF = 1, 8


class NetlinkError(OSError):
    """An NLMSG_ERROR with a non-zero error: ``errno``, and the extack message if any."""

    def __init__(self, errno: int, msg: str | None = None, offset: int | None = None):
        super().__init__(errno, msg or os.strerror(errno))
        self.extack = msg
        self.offset = offset


def refused_option(path: str, netns: str, protocol: int, level: int, optname: int,
                   groups: int = 0) -> int:
    """EPERM if the kernel would refuse this socket option (or a bind joining ``groups``)
    to the caller, else 0: a group join of a protocol without NL_CFG_F_NONROOT_RECV, or
    SO_RCVBUFFORCE / SO_SNDBUFFORCE, without CAP_NET_ADMIN (docs/security.md). Such frames get no reply, so
    the client asks first (service op ``capable``), as the shim does."""
    join = (level == SOL_NETLINK and optname in (1, 2)) or groups   # ADD/DROP_MEMBERSHIP
    force = level == SOL_SOCKET and optname in (32, 33)             # SO_SND/RCVBUFFORCE
    if not (join or force):
        return 0
    with Service(netns, path=path) as svc:
        c = svc.query("capable")
    if c.get("errno"):
        return 0                        # the server refuses on its side
    if force:
        return 0 if c["net_admin_init"] else E.EPERM
    return 0 if c["net_admin"] or c["nonroot_recv"] >> protocol & 1 else E.EPERM


def _family_for(protocol: int) -> Family | None:
    """The codec family that decodes ``protocol``'s messages; None for NETLINK_ROUTE, which
    the codec does not declare (its messages stay bytes, see ``_Base._decode``)."""
    if protocol == NETLINK_XFRM:
        return XFRM
    if protocol == NETLINK_GENERIC:
        return GENL
    return None


class _Base:
    def _setup_frames(self, protocol, netns, groups, portid, ext_ack, cap_ack, rcvbuf, sock_type):
        frames = [T.hello(protocol, sock_type, netns)]
        if ext_ack:
            frames.append(T.setsockopt(SOL_NETLINK, NETLINK_EXT_ACK, 1))
        if cap_ack:
            frames.append(T.setsockopt(SOL_NETLINK, NETLINK_CAP_ACK, 1))
        if rcvbuf:
            frames.append(T.setsockopt(SOL_SOCKET, SO_RCVBUF, rcvbuf))
        frames.append(T.bind(portid, groups))
        return frames

    def _bind_result(self, rec: bytes) -> None:
        if not rec:    # refused (--max-clients) or the server went away
            raise ConnectionResetError(E.ECONNRESET, "xfrmd: the server closed the connection")
        version, kind, payload = T.parse_frame(rec)
        if kind != T.F_BIND_REPLY:
            raise OSError(E.EPROTO, f"xfrmd: expected BIND_REPLY, got frame kind {kind}")
        err, portid, groups = struct.unpack_from("=iII", payload)
        if err:
            raise OSError(-err, os.strerror(-err))
        self.portid = portid
        self.groups = groups

    nread = 0          # datagrams read; told to the server ahead of the next request
    nread_told = 0

    def _records_for(self, datagram: bytes) -> list[bytes]:
        """What sending the datagram takes: it goes behind a READ report if this socket has
        read since the last one, so the server admits the request's answers against what is
        really unread (docs/protocol.md, "Flow control")."""
        if self.nread == self.nread_told:
            return [datagram]
        self.nread_told = self.nread
        report = T.read_report(self.nread)
        if len(datagram) > T.MAX_RECORD - 64:     # no room for a BATCH: the report first
            return [report, datagram]
        return [T.batch([report, datagram])]

    def _is_datagram(self, rec: bytes) -> bool:
        """A record read from the server: a netlink datagram (True, counted as read) or a
        frame to skip (False); a SOCK_ERROR frame raises its errno, an empty record (the
        server closed the connection) ConnectionResetError."""
        if not rec:
            raise ConnectionResetError("xfrmd: server closed the connection")
        if T.is_frame(rec):
            _, kind, payload = T.parse_frame(rec)
            if kind == T.F_SOCK_ERROR:
                (err,) = struct.unpack_from("=i", payload)
                raise OSError(-err, os.strerror(-err))
            return False
        self.nread += 1
        return True

    def _next_seq(self) -> int:
        self.seq = (self.seq + 1) & 0xFFFFFFFF
        return self.seq

    def _decode(self, datagram: bytes) -> list[Message]:
        fam = self.family
        if fam is None:
            # no declared family (NETLINK_ROUTE): data messages keep their payload as bytes,
            # but NLMSG_ERROR and NLMSG_DONE are decoded, so errors raise NetlinkError
            return [_CONTROL.decode(datagram, h) if h.type in (NLMSG_ERROR, NLMSG_DONE) else
                    Message(h.type, h.flags, h.seq, h.pid, datagram[h.offset + 16:h.offset + h.len])
                    for h in split_messages(datagram)]
        return fam.decode_datagram(datagram)

    def _is_dump_part(self, datagram: bytes) -> bool:
        if len(datagram) < 16:
            return False
        _, t, flags = struct.unpack_from("=IHH", datagram)
        last_done = any(h.type == NLMSG_DONE for h in split_messages(datagram))
        return bool(flags & NLM_F_MULTI) and not last_done


def _raise_done(m: Message) -> None:
    raise NetlinkError(-_done_error(m), m.attr(NLMSGERR_ATTR_MSG))


def _done_error(m: Message) -> int:
    """The errno (negative) NLMSG_DONE carries when the dump failed, else 0."""
    raw = m.fixed if isinstance(m.fixed, (bytes, bytearray)) else b""
    return struct.unpack_from("=i", raw)[0] if len(raw) >= 4 else 0


# decodes only the messages every protocol shares (NLMSG_ERROR with its extack, NLMSG_DONE)
_CONTROL = Family("netlink", lambda t, f: None, lambda t, f: None)


def _check_error(m: Message) -> None:
    err = m.fixed.error
    if err:
        raise NetlinkError(-err, m.attr(NLMSGERR_ATTR_MSG), m.attr(NLMSGERR_ATTR_OFFS))


class NetlinkSocket(_Base, _Closing):
    """A blocking emulated netlink socket of ``protocol`` in namespace ``netns``."""

    def __init__(self, protocol: int, netns: str = "", *, path: str | None = None, groups: int = 0,
                 portid: int = 0, ext_ack: bool = True, cap_ack: bool = False, rcvbuf: int = 0,
                 recv_size: int = 32768, sock_type: int = 3, timeout: float | None = 10.0):
        self.protocol = protocol
        self.family = _family_for(protocol)
        self.path = path or T.default_socket_path()
        self.recv_size = recv_size
        self.seq = 0
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.sock.settimeout(timeout)
        self.sock.connect(self.path)
        check_server(self.sock, self.path)
        netns = netns or os.environ.get("XFRMD_NETNS", "")
        self.netns = netns
        for f in self._setup_frames(protocol, netns, groups, portid, ext_ack, cap_ack, rcvbuf, sock_type):
            self.sock.send(f)
        self._bind_result(self.sock.recv(T.MAX_RECORD))


    def fileno(self) -> int:
        return self.sock.fileno()

    def setsockopt(self, level: int, optname: int, value: int) -> None:
        err = refused_option(self.path, self.netns, self.protocol, level, optname)
        if err:
            raise OSError(err, os.strerror(err))
        self.sock.send(T.setsockopt(level, optname, value))

    def send(self, datagram: bytes) -> None:
        """sendmsg of one datagram. As the shim does (docs/protocol.md), a datagram the
        kernel would ignore (shorter than a header, or starting with four zero bytes) is
        not sent: on SEQPACKET an empty record would read as the end of the connection."""
        if len(datagram) < 16 or datagram[:4] == b"\0\0\0\0":
            return
        for rec in self._records_for(datagram):
            self.sock.send(rec)

    def recv(self, size: int | None = None) -> bytes:
        """One datagram, like recvmsg; a SOCK_ERROR frame raises that errno (e.g. ENOBUFS)."""
        size = size or self.recv_size
        while True:
            rec = self.sock.recv(max(size, T.MAX_RECORD))
            if self._is_datagram(rec):
                if self._is_dump_part(rec):
                    self.sock.send(T.recvd(size))
                return rec

    def recv_messages(self) -> list[Message]:
        return self._decode(self.recv())

    def request(self, msg_type: int, flags: int = 0, payload: bytes = b"", *,
                seq: int | None = None, pid: int = 0, raise_errors: bool = True) -> list[Message]:
        """Send one request and collect its answer: the data messages, and the ACK when
        NLM_F_ACK asks for one. A dump's closing NLMSG_DONE is not one of them (a failed
        dump raises :class:`NetlinkError` with the errno it carried).

        NLM_F_REQUEST is always set. Without NLM_F_DUMP and NLM_F_ACK the first datagram that
        answers it ends the exchange. ``raise_errors=False`` returns error messages instead.
        """
        seq = self._next_seq() if seq is None else seq
        self.send(encode_msg(msg_type, flags | NLM_F_REQUEST, seq, pid, payload))
        return list(self._collect(seq, flags, raise_errors))

    def _collect(self, seq: int, flags: int, raise_errors: bool) -> Iterator[Message]:
        dump = bool(flags & NLM_F_DUMP)
        while True:
            msgs = self.recv_messages()
            final = False
            for m in msgs:
                if m.seq != seq:
                    continue
                if m.type == NLMSG_ERROR:
                    if raise_errors:
                        _check_error(m)
                    yield m
                    final = True
                elif m.type == NLMSG_DONE:
                    # the end of a dump, not a message of it; a failed dump's errno is in it
                    if _done_error(m) and raise_errors:
                        _raise_done(m)
                    if _done_error(m):
                        yield m
                    final = True
                else:
                    yield m
                    if not dump and not (flags & NLM_F_ACK):
                        final = True
            if final:
                return


class TrioNetlinkSocket(_Base):
    """The same for trio: ``sock = await TrioNetlinkSocket.open(protocol, …)``."""

    @classmethod
    async def open(cls, protocol: int, netns: str = "", *, path: str | None = None, groups: int = 0,
                   portid: int = 0, ext_ack: bool = True, cap_ack: bool = False, rcvbuf: int = 0,
                   recv_size: int = 32768, sock_type: int = 3) -> "TrioNetlinkSocket":
        self = cls()
        self.protocol = protocol
        self.family = _family_for(protocol)
        self.path = path or T.default_socket_path()
        self.recv_size = recv_size
        self.seq = 0
        self.sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        await self.sock.connect(self.path)
        check_server(self.sock, self.path)
        netns = netns or os.environ.get("XFRMD_NETNS", "")
        for f in self._setup_frames(protocol, netns, groups, portid, ext_ack, cap_ack, rcvbuf, sock_type):
            await self.sock.send(f)
        self._bind_result(await self.sock.recv(T.MAX_RECORD))
        return self

    def close(self) -> None:
        self.sock.close()

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        self.close()

    async def send(self, datagram: bytes) -> None:
        if len(datagram) < 16 or datagram[:4] == b"\0\0\0\0":
            return                      # ignored by the kernel; see NetlinkSocket.send
        for rec in self._records_for(datagram):
            await self.sock.send(rec)

    async def recv(self, size: int | None = None) -> bytes:
        size = size or self.recv_size
        while True:
            rec = await self.sock.recv(max(size, T.MAX_RECORD))
            if self._is_datagram(rec):
                if self._is_dump_part(rec):
                    await self.sock.send(T.recvd(size))
                return rec

    async def recv_messages(self) -> list[Message]:
        return self._decode(await self.recv())

    async def request(self, msg_type: int, flags: int = 0, payload: bytes = b"", *,
                      seq: int | None = None, pid: int = 0, raise_errors: bool = True) -> list[Message]:
        seq = self._next_seq() if seq is None else seq
        await self.send(encode_msg(msg_type, flags | NLM_F_REQUEST, seq, pid, payload))
        out = []
        dump = bool(flags & NLM_F_DUMP)
        while True:
            final = False
            for m in await self.recv_messages():
                if m.seq != seq:
                    continue
                if m.type == NLMSG_DONE:           # see NetlinkSocket._collect
                    if _done_error(m) and raise_errors:
                        _raise_done(m)
                    if _done_error(m):
                        out.append(m)
                    final = True
                    continue
                out.append(m)
                if m.type == NLMSG_ERROR:
                    if raise_errors:
                        _check_error(m)
                    final = True
                elif not dump and not (flags & NLM_F_ACK):
                    final = True
            if final:
                return out
