"""What af_netlink.c does for every protocol: port ids, the receive loop, ACKs, dumps and
multicast. Protocol families plug in with a ``rcv_msg`` method (see :class:`NetlinkFamily`)."""
from __future__ import annotations

import errno as E
import sys
from typing import Iterable, Protocol

from netlink_codec.netlink import (NLM_F_ACK, NLM_F_DUMP_INTR, NLM_F_MULTI, NLM_F_REQUEST,
                                   NLMSG_HDRLEN, NLMSG_MIN_TYPE, ExtAck, Header, encode_ack,
                                   dump_fill, encode_done, extack_tlvs, kernel_messages)

from ..errors import KernelError
from ..stats import INTERNAL_ERROR
from .socket import DumpState, NetlinkSocket

# NLMSG_GOODSIZE on x86_64 with 4 KiB pages: SKB_WITH_OVERHEAD(4096) = 4096 - 320
NLMSG_GOODSIZE = 3776
# netlink_recvmsg caps the remembered read size at SKB_WITH_OVERHEAD(32768) = 32768 - 320:
# the real kernel's dump datagrams never exceed 32448 bytes (checked by the policy differential)
MAX_RECVMSG_LEN = 32768 - 320

_new = object.__new__

# Returned by a handler that started a dump: the kernel's -EINTR, which suppresses the ACK.
DUMP_STARTED = object()


class Reply:
    """A handler's outcome: errno (0 or negative) and extended-ACK data.

    ``echo``: the datagram as the handler left it, when it changed the request in place
    before failing (``validate_tmpl`` fills template families) — the error echoes that."""
    __slots__ = ("error", "ext", "echo")

    def __init__(self, error: int = 0, msg: str | None = None, **kw):
        self.error = error
        self.ext = ExtAck(msg, **kw) if (msg or kw) else None
        self.echo = None


OK = Reply()


def error_reply(err: KernelError) -> Reply:
    """The NLMSG_ERROR a :class:`KernelError` becomes (errno negated, extack fields)."""
    r = Reply(-err.errno, **err.extack())
    if err.echo is not None:
        r.echo = err.echo
    return r


class NetlinkFamily(Protocol):
    """A netlink protocol's kernel side (``netlink_kernel_cfg.input``)."""

    protocol: int
    groups: int  # number of multicast groups
    # optional ``request_type``: the Request subclass its rcv_msg takes (default Request)

    def rcv_msg(self, req: "Request") -> Reply | object: ...


class Request:
    """Context for one message being handled: the socket, the datagram and the header."""
    __slots__ = ("kernel", "sock", "buf", "hdr")

    def __init__(self, kernel, sock: NetlinkSocket, buf, hdr: Header):
        self.kernel = kernel
        self.sock = sock
        self.buf = buf
        self.hdr = hdr

    @property
    def netns(self):
        return self.sock.netns

    @property
    def payload_offset(self) -> int:
        return self.hdr.offset + NLMSG_HDRLEN

    @property
    def end(self) -> int:
        return self.hdr.offset + self.hdr.len

    def unicast(self, datagram: bytes) -> None:
        self.kernel.unicast(self.sock, datagram)

    def start_dump(self, messages: Iterable[bytes]) -> object:
        """``netlink_dump_start``: EBUSY if one is running, else the first batch now."""
        sock = self.sock
        if sock.dump is not None:
            return Reply(-E.EBUSY)
        sock.dump = DumpState(seq=self.hdr.seq, iterator=iter(messages))
        err = self.kernel.netlink_dump(sock)
        if err:
            # __netlink_dump_start returns the first step's error, which netlink_rcv_skb
            # ACKs; the dump stays running and goes on as the reader reads
            return Reply(err)
        return DUMP_STARTED


def netlink_rcv_skb(kernel, sock: NetlinkSocket, buf, family: NetlinkFamily) -> None:
    """Process every message of one sendmsg buffer as ``netlink_rcv_skb`` does."""
    faults = kernel.faults
    for hdr in kernel_messages(buf):
        if not (hdr.flags & NLM_F_REQUEST) or hdr.type < NLMSG_MIN_TYPE:
            # not dispatched; ACKed only when asked
            if hdr.flags & NLM_F_ACK:
                netlink_ack(kernel, sock, buf, hdr, OK)
            continue
        if faults.rules and faults.rcv_msg(kernel, sock, buf, hdr, family):
            continue            # `xfrmd ctl fault`: answered (or not) as the rule says
        netlink_rcv_msg(kernel, sock, buf, hdr, family)


def netlink_rcv_msg(kernel, sock: NetlinkSocket, buf, hdr: Header, family: NetlinkFamily) -> None:
    """One request: the family's handler (``cb``), then the ACK netlink_rcv_skb sends."""
    sock.reply_dropped = False
    # the family's own request class when it has one (XFRM: XfrmRequest), its four fields
    # stored here: calling the class would run Request.__init__ through slot_tp_init, a
    # frame more per message (a request class adds no __init__ of its own)
    req = _new(getattr(family, "request_type", Request))
    req.kernel = kernel
    req.sock = sock
    req.buf = buf
    req.hdr = hdr
    try:
        outcome = family.rcv_msg(req)
    except Exception as exc:  # noqa: BLE001 - a bug answers EINVAL, never kills the server
        outcome = handler_failed(kernel, sock, hdr, exc)
    if outcome is DUMP_STARTED:
        return
    netlink_rcv_done(kernel, sock, buf, hdr, outcome)


def handler_failed(kernel, sock: NetlinkSocket, hdr: Header, exc: Exception) -> Reply:
    """The outcome of a handler that raised: a :class:`KernelError` is the one conversion of
    a model error for netlink requests; anything else is a bug, answered EINVAL."""
    if isinstance(exc, KernelError):
        return error_reply(exc)
    return internal_error(kernel, exc, f"message type {hdr.type} (protocol {sock.protocol})")


def netlink_rcv_done(kernel, sock: NetlinkSocket, buf, hdr: Header, outcome: Reply) -> None:
    """What netlink_rcv_skb does with a doit's outcome: the ACK or the error, if any (also
    the C receive's way out for every outcome but a plain one: xfrmd/netlink/_rcvfast.c)."""
    if sock.reply_dropped and not outcome.error:
        # a doit returns what nlmsg_unicast said: its reply found no room (-EAGAIN
        # from netlink_attachskb), which netlink_rcv_skb then ACKs as the error
        outcome = Reply(-E.EAGAIN)
    if outcome.error or hdr.flags & NLM_F_ACK:
        if outcome.ext is None and outcome.echo is None:
            # netlink_ack without extack data: most ACKs, answered without the call
            kernel.unicast(sock, encode_ack(buf, hdr, outcome.error, sock.portid,
                                            cap_ack=sock.cap_ack))
        else:
            netlink_ack(kernel, sock, buf, hdr, outcome)


def internal_error(kernel, exc: BaseException, what: str) -> Reply:
    """A handler raised: the request gets EINVAL "xfrmd: internal error" and the server
    counts and logs it in one line (xfrmd/stats.py)."""
    kernel.stats.internal_error(exc, what)
    return Reply(-E.EINVAL, INTERNAL_ERROR)


def netlink_ack(kernel, sock: NetlinkSocket, buf, hdr: Header, outcome: Reply) -> None:
    if outcome.echo is not None:
        buf = outcome.echo
    # a trace shows the extack a client without NETLINK_EXT_ACK was not sent (xfrmd/trace.py)
    note = outcome.ext is not None and not sock.ext_ack and kernel.tracers
    if note:
        kernel.trace_note = (sock.id, extack_tlvs(outcome.ext, outcome.error))
    kernel.unicast(sock, encode_ack(buf, hdr, outcome.error, sock.portid, cap_ack=sock.cap_ack,
                                    ext_ack=sock.ext_ack, ext=outcome.ext))
    if note:
        kernel.trace_note = None


def dump_alloc_size(sock: NetlinkSocket) -> int:
    """What ``netlink_dump`` allocates for a step: the largest read seen (capped), at least
    NLMSG_GOODSIZE."""
    return max(NLMSG_GOODSIZE, sock.max_recvmsg_len)


def _dump_error(st, msg: Reply) -> None:
    st.done_error = msg.error
    st.done_tlvs = extack_tlvs(msg.ext, msg.error) if msg.ext else b""


def dump_batch(sock: NetlinkSocket) -> bytes | None:
    """One step of ``netlink_dump``: the next datagram of a running dump, or None."""
    st = sock.dump
    if st is None:
        return None
    if st.finished:
        tlvs = b""
        if sock.ext_ack and st.done_tlvs:
            tlvs = st.done_tlvs
        sock.dump = None
        done = encode_done(st.seq, sock.portid, st.done_error, tlvs)
        return dump_intr(done) if st.intr else done
    size = dump_alloc_size(sock)
    parts: list[bytes] = []
    used = 0
    intr = st.intr        # the next message put says the dump was interrupted
    if intr and st.pending is not None:
        st.pending = dump_intr(st.pending)
        st.intr = intr = False
    if st.pending is not None:
        parts.append(st.pending)
        used = len(st.pending)
        st.pending = None
    try:
        while True:
            if intr:        # the message put next is marked: taken alone
                msg = next(st.iterator, None)
            else:           # the messages that fit, in one call (C when built)
                used, msg = dump_fill(st.iterator, parts, used, size)
            if msg is None:
                break
            if isinstance(msg, Reply):  # the callback failed: NLMSG_DONE carries the error
                _dump_error(st, msg)
                break
            if intr:
                msg = dump_intr(msg)
                st.intr = intr = False
            if used + len(msg) > size and parts:
                st.pending = msg
                return b"".join(parts)
            parts.append(msg)
            used += len(msg)
    except KernelError as err:   # a dump callback failed: NLMSG_DONE carries the error
        _dump_error(st, error_reply(err))
    except Exception as exc:  # noqa: BLE001 - a bug ends the dump with EINVAL in NLMSG_DONE
        _dump_error(st, internal_error(sock.netns.kernel, exc, f"a dump (protocol {sock.protocol})"))
    st.finished = True
    if parts:
        return b"".join(parts)
    return dump_batch(sock)


def dump_intr(msg) -> bytes:
    """``nl_dump_check_consistent`` saw the generation move: NLM_F_DUMP_INTR on the first
    message put afterwards."""
    flags = int.from_bytes(msg[6:8], sys.byteorder) | NLM_F_DUMP_INTR
    return bytes(msg[:6]) + flags.to_bytes(2, sys.byteorder) + bytes(msg[8:])


MULTI = NLM_F_MULTI
