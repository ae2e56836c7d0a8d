"""xfrm_user: the NETLINK_XFRM family (net/xfrm/xfrm_user.c ``xfrm_user_rcv_msg``).

This module is the single place where an XFRM request is checked in the kernel's order and
handed to its handler. Handlers live next to what they manage and register themselves with
:func:`handler`; each takes an :class:`XfrmRequest` and returns a :class:`Reply` (errno and
extack) or ``DUMP_STARTED``.
"""
from __future__ import annotations

import errno as E
from typing import Callable

from netlink_codec import xfrm as X
from netlink_codec.netlink import NETLINK_XFRM, NLM_F_DUMP, encode_msg

from ..netlink.core import Reply, Request
from ..netlink.nlattr import parse_attrs
from .policy_table import STRICT_START_TYPE, XFRMA_POLICY, XFRMA_SPD_POLICY

HANDLERS: dict[int, Callable] = {}   # doit, by message type
DUMPERS: dict[int, Callable] = {}    # dumpit (GETSA, GETPOLICY)


def handler(msg_type: int, *, dump: bool = False):
    """Register the doit (or, with ``dump=True``, the dumpit) of a message type."""
    def register(fn):
        (DUMPERS if dump else HANDLERS)[msg_type] = fn
        return fn
    return register


class XfrmRequest(Request):
    """A request after parsing: ``attrs`` maps XFRMA_* to the last RawAttr of that type."""
    __slots__ = ("attrs", "warning")

    def __init__(self, base: Request, attrs=None, warning=None):
        super().__init__(base.kernel, base.sock, base.buf, base.hdr)
        self.attrs = attrs or {}
        self.warning = warning

    @property
    def xfrm(self):
        return self.sock.netns.xfrm

    def fixed(self, cls):
        """The fixed part of the message; short ones are zero-padded (already length-checked)."""
        return cls.decode_padded(self.buf, self.payload_offset, self.end)

    def has(self, t: int) -> bool:
        return t in self.attrs

    def attr_bytes(self, t: int) -> bytes | None:
        ra = self.attrs.get(t)
        return None if ra is None else bytes(self.buf[ra.start:ra.end])

    def attr_struct(self, t: int, cls):
        """The attribute's payload as ``cls`` (the policy guaranteed its minimum length)."""
        ra = self.attrs.get(t)
        return None if ra is None else cls.decode_padded(self.buf, ra.start, ra.end)

    def attr_int(self, t: int, size: int = 4) -> int | None:
        ra = self.attrs.get(t)
        if ra is None:
            return None
        return int.from_bytes(bytes(self.buf[ra.start:ra.start + size]).ljust(size, b"\0"), "little")

    def attr_offset(self, t: int) -> int:
        """Offset of the attribute from the request's nlmsghdr (for NLMSGERR_ATTR_OFFS)."""
        return self.attrs[t].offset - self.hdr.offset

    def reply(self, msg_type: int, payload: bytes, flags: int = 0) -> None:
        """A unicast answer to the requester with the request's seq and the socket's port id."""
        self.unicast(encode_msg(msg_type, flags, self.hdr.seq, self.sock.portid, payload))

    def notify(self, group: int, msg_type: int, payload: bytes, *, seq: int | None = None,
               pid: int | None = None) -> None:
        """Multicast an event made by this request: seq and pid of the request header
        (``km_event`` c.seq / c.portid), flags 0."""
        data = encode_msg(msg_type, 0, self.hdr.seq if seq is None else seq,
                          self.hdr.pid if pid is None else pid, payload)
        self.kernel.multicast(self.sock.netns, NETLINK_XFRM, group, data)

    def ok(self) -> Reply:
        """Success, carrying a parse warning (extack message on the ACK) if there was one."""
        return self.warning or Reply()


class XfrmUser:
    """The NETLINK_XFRM kernel socket."""
    protocol = NETLINK_XFRM
    groups = X.XFRMNLGRP_MAX

    def __init__(self, kernel):
        self.kernel = kernel
        # the handler modules register themselves on import
        from . import info, sad, spd  # noqa: F401

    def init_net(self, ns) -> None:
        from .netns import XfrmNet
        ns.xfrm = XfrmNet(ns)

    def exit_net(self, ns) -> None:
        ns.xfrm.flush_all()

    def rcv_msg(self, req: Request):
        t = req.hdr.type
        if t > X.XFRM_MSG_MAX:
            return Reply(-E.EINVAL)
        if not req.sock.cap_net_admin:
            # xfrm_user_rcv_msg: "All operations require privileges, even GET"
            # (netlink_net_capable, the opener's credentials: docs/security.md)
            return Reply(-E.EPERM)
        if t in _DUMPABLE and req.hdr.flags & NLM_F_DUMP:
            dumper = DUMPERS.get(t)
            if dumper is None:
                return Reply(-E.EINVAL)
            return dumper(XfrmRequest(req))
        payload_len = req.hdr.len - 16
        min_len = _MSG_MIN[t]
        if payload_len < min_len:
            return Reply(-E.EINVAL, "Invalid header length")
        start = req.payload_offset + ((min_len + 3) & ~3)
        if t == _NEWSPDINFO:
            tb, err, warn = parse_attrs(req.buf, start, req.end, XFRMA_SPD_POLICY, X.XFRMA_SPD_MAX,
                                        hdr_offset=req.hdr.offset)
        else:
            tb, err, warn = parse_attrs(req.buf, start, req.end, XFRMA_POLICY, X.XFRMA_MAX,
                                        hdr_offset=req.hdr.offset,
                                        strict_start_type=STRICT_START_TYPE)
        if err is not None:
            return err
        if t != _NEWSPDINFO and (_SA_DIR in tb or _SA_PCPU in tb):
            bad = _reject_unused_attr(t, tb)
            if bad is not None:
                return bad
        doit = HANDLERS.get(t)
        if doit is None:
            return Reply(-E.EINVAL)
        return doit(XfrmRequest(req, tb, warn))


# plain ints for the per-message path (IntEnum member access costs a dict lookup each)
_DUMPABLE = frozenset((int(X.XfrmMsg.GETSA), int(X.XfrmMsg.GETPOLICY)))
_MSG_MIN = {int(k): v for k, v in X.MSG_MIN.items()}
_NEWSPDINFO = int(X.XfrmMsg.NEWSPDINFO)
_SA_DIR, _SA_PCPU = int(X.Xfrma.SA_DIR), int(X.Xfrma.SA_PCPU)


def _reject_unused_attr(t: int, tb) -> Reply | None:
    """``xfrm_reject_unused_attr``: SA_DIR and SA_PCPU only where they mean something."""
    M = X.XfrmMsg
    if X.Xfrma.SA_DIR in tb and t not in (M.NEWSA, M.UPDSA, M.ALLOCSPI):
        return Reply(-E.EINVAL, "Invalid attribute SA_DIR")
    if X.Xfrma.SA_PCPU in tb and t not in (M.NEWSA, M.UPDSA, M.ALLOCSPI, M.ACQUIRE):
        return Reply(-E.EINVAL, "Invalid attribute SA_PCPU")
    return None


def not_modelled(name: str) -> Callable:
    """A handler for what xfrmd does not model yet: EOPNOTSUPP with an ``xfrmd:`` message."""
    def doit(req: XfrmRequest) -> Reply:
        return Reply(-E.EOPNOTSUPP, f"xfrmd: {name} is not modelled")
    return doit
