"""libnetlink's request/answer loop as `ip` 6.1 runs it (lib/libnetlink.c ``rtnl_talk``,
``rtnl_dump_filter``), over either an xfrmd netlink connection or a real AF_NETLINK socket.

Kernel errors become the stderr text ip prints ("Error: <extack>." or
"RTNETLINK answers: <strerror>") and the exit status ip uses (2 for a failed talk)."""
from __future__ import annotations

import os
import select
import socket
import struct
import time

from netlink_codec.netlink import (NLM_F_ACK, NLM_F_ACK_TLVS, NLM_F_CAPPED, NLMSG_DONE,
                                   NLMSG_ERROR, NLMSGERR_ATTR_MSG)

from ..client import NetlinkSocket
from .args import IpExit

SOL_NETLINK, NETLINK_EXT_ACK = 270, 11


def _ext_ack_msg(msg: bytes) -> str | None:
    """The NLMSGERR_ATTR_MSG of an NLMSG_ERROR / DONE, if any (nl_dump_ext_ack)."""
    length, _, flags = struct.unpack_from("<IHH", msg)
    if not flags & NLM_F_ACK_TLVS:
        return None
    off = 16 + 4
    if flags & NLM_F_CAPPED:
        off += 16
    else:
        inner = struct.unpack_from("<I", msg, off)[0] if len(msg) >= off + 4 else 16
        off += (inner + 3) & ~3
    while off + 4 <= length:
        alen, atype = struct.unpack_from("<HH", msg, off)
        if alen < 4:
            break
        if atype & 0x3FFF == NLMSGERR_ATTR_MSG:
            return msg[off + 4:off + alen].split(b"\0", 1)[0].decode(errors="replace")
        off += (alen + 3) & ~3
    return None


def ext_ack_text(msg: bytes, error: int) -> str | None:
    text = _ext_ack_msg(msg)
    if not text:
        return None
    tag = "Error" if error else "Warning"
    return f"{tag}: {text}{'' if text.endswith('.') else '.'}\n"


class Talker:
    """One `ip` netlink handle (``struct rtnl_handle``): send requests, read answers."""

    def __init__(self, sock, err):
        self.sock = sock          # .send(bytes) / .recv() -> one datagram
        self.err = err            # callable(str): writes to the command's stderr
        self.seq = int(time.time())
        self.sent: list[bytes] = []

    def close(self) -> None:
        self.sock.close()

    def _messages(self, datagram: bytes):
        off = 0
        while off + 16 <= len(datagram):
            length = struct.unpack_from("<I", datagram, off)[0]
            if length < 16 or off + length > len(datagram):
                break
            yield datagram[off:off + length]
            off += (length + 3) & ~3

    def send(self, req: bytearray) -> None:
        self.sent.append(bytes(req))
        self.sock.send(bytes(req))

    def talk(self, req: bytearray, answer: bool = False) -> bytes | None:
        """rtnl_talk: seq, NLM_F_ACK when no answer is wanted; raises IpExit(2) on error."""
        self.seq += 1
        struct.pack_into("<I", req, 8, self.seq)
        if not answer:
            flags = struct.unpack_from("<H", req, 6)[0] | NLM_F_ACK
            struct.pack_into("<H", req, 6, flags)
        self.send(req)
        while True:
            for msg in self._messages(self.sock.recv()):
                _, mtype, _, seq, pid = struct.unpack_from("<IHHII", msg)
                if seq != self.seq:
                    continue
                if mtype == NLMSG_ERROR:
                    if len(msg) < 20:
                        self.err("ERROR truncated\n")
                        raise IpExit("", 255)
                    error = struct.unpack_from("<i", msg, 16)[0]
                    text = ext_ack_text(msg, error)
                    if error:
                        self.err(text or f"RTNETLINK answers: {os.strerror(-error)}\n")
                        raise IpExit("", 2)
                    if text:
                        self.err(text)
                    return None
                if answer:
                    return msg

    def dump(self, req: bytearray):
        """rtnl_send + rtnl_dump_filter: yields each message of the dump; errors print and
        raise IpExit(1) with ip's "Dump terminated"."""
        self.seq += 1
        dump_seq = self.seq   # ip's rth.dump: callers may take more seqs while reading
        struct.pack_into("<I", req, 8, self.seq)
        self.send(req)
        while True:
            for msg in self._messages(self.sock.recv()):
                _, mtype, _, seq, _ = struct.unpack_from("<IHHII", msg)
                if seq != dump_seq:
                    continue
                if mtype == NLMSG_DONE:
                    err = struct.unpack_from("<i", msg, 16)[0] if len(msg) >= 20 else 0
                    if err < 0:
                        text = ext_ack_text(msg, err)
                        self.err(text or f"RTNETLINK answers: {os.strerror(-err)}\n")
                        self.err("Dump terminated\n")
                        raise IpExit("", 1)
                    return
                if mtype == NLMSG_ERROR:
                    error = struct.unpack_from("<i", msg, 16)[0] if len(msg) >= 20 else 0
                    self.err(f"RTNETLINK answers: {os.strerror(-error)}\n")
                    self.err("Dump terminated\n")
                    raise IpExit("", 1)
                yield msg

    def send_check(self, buf: bytes, what: str = "Failed to send delete-all request") -> None:
        """rtnl_send_check: messages without NLM_F_ACK; only failures come back."""
        self.send(bytearray(buf))
        while True:
            try:
                data = self.sock.recv_nowait()
            except BlockingIOError:
                return
            if data is None:
                return
            for msg in self._messages(data):
                if struct.unpack_from("<H", msg, 4)[0] == NLMSG_ERROR:
                    error = struct.unpack_from("<i", msg, 16)[0]
                    if error:
                        self.err(f"{what}: {os.strerror(-error)}\n")
                        raise IpExit("", 1)


class KernelSocket:
    """A real AF_NETLINK socket to the running Linux kernel (``--kernel``)."""

    def __init__(self, protocol: int):
        self.s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, protocol)
        self.s.setsockopt(SOL_NETLINK, NETLINK_EXT_ACK, 1)
        self.s.bind((0, 0))

    def send(self, data: bytes) -> None:
        self.s.send(data)

    def recv(self) -> bytes:
        return self.s.recv(1 << 16)

    def recv_nowait(self) -> bytes | None:
        self.s.setblocking(False)
        try:
            return self.s.recv(1 << 16)
        finally:
            self.s.setblocking(True)

    def close(self) -> None:
        self.s.close()


class XfrmdSocket:
    """An emulated netlink socket on an xfrmd server (``xfrmd.client``)."""

    def __init__(self, protocol: int, path: str | None, netns: str):
        self.s = NetlinkSocket(protocol, netns, path=path, ext_ack=True)

    def send(self, data: bytes) -> None:
        self.s.send(data)

    def recv(self) -> bytes:
        return self.s.recv()

    def recv_nowait(self) -> bytes | None:
        r, _, _ = select.select([self.s.fileno()], [], [], 0.05)
        return self.s.recv() if r else None

    def close(self) -> None:
        self.s.close()
