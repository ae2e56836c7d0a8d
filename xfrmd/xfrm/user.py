"""xfrm_user: the NETLINK_XFRM family (net/xfrm/xfrm_user.c ``xfrm_user_rcv_msg``).

This module is the single place where an XFRM request is checked in the kernel's order and
handed to its handler. Handlers live next to what they manage; :data:`XFRM_DISPATCH` (the
kernel's ``xfrm_dispatch[]``) says which one serves a message type. Each takes an
:class:`XfrmRequest` and returns a :class:`Reply` (success, with an extack warning maybe) or
``DUMP_STARTED``; a failure raises :class:`~xfrmd.errors.KernelError`.
"""
from __future__ import annotations

import errno as E
from collections import deque
from typing import TYPE_CHECKING, Callable, NamedTuple

from netlink_codec import cext
from netlink_codec import xfrm as X
from netlink_codec.netlink import NETLINK_XFRM, NLM_F_DUMP, Header, RawAttr

from ..cext import source
from ..errors import KernelError
from ..netlink.core import DUMP_STARTED, Reply, Request, handler_failed, netlink_rcv_done
from ..netlink.socket import NetlinkSocket
from ..netlink.nlattr import attr_parser
from .acquire import xfrm_add_acquire
from .info import (xfrm_get_default, xfrm_get_sadinfo, xfrm_get_spdinfo, xfrm_set_default,
                   xfrm_set_spdinfo)
from .migrate import xfrm_do_migrate
from .netns import XfrmNet, xfrm_net
from .policy_table import STRICT_START_TYPE, XFRMA_POLICY, XFRMA_SPD_POLICY
from .request import XfrmRequest
from .sad import (xfrm_add_sa, xfrm_add_sa_expire, xfrm_alloc_userspi, xfrm_del_sa,
                  xfrm_dump_sa, xfrm_flush_sa, xfrm_get_ae, xfrm_get_sa, xfrm_new_ae)
from .spd import (xfrm_add_pol_expire, xfrm_add_policy, xfrm_dump_policy, xfrm_flush_policy,
                  xfrm_get_policy)

if TYPE_CHECKING:
    from ..kernel import Kernel, NetNamespace

Handler = Callable[[XfrmRequest], object]   # a Reply, or DUMP_STARTED
M = X.XfrmMsg


class XfrmLink(NamedTuple):
    """``struct xfrm_link``: the doit and the dumpit of a message type."""
    doit: Handler | None
    dump: Handler | None = None


# xfrm_dispatch[]: what xfrmd models of each XFRM_MSG_* (GETSA and GETPOLICY also dump)
XFRM_DISPATCH: dict[int, XfrmLink] = {
    M.NEWSA: XfrmLink(xfrm_add_sa),
    M.DELSA: XfrmLink(xfrm_del_sa),
    M.GETSA: XfrmLink(xfrm_get_sa, xfrm_dump_sa),
    M.NEWPOLICY: XfrmLink(xfrm_add_policy),
    M.DELPOLICY: XfrmLink(xfrm_get_policy),
    M.GETPOLICY: XfrmLink(xfrm_get_policy, xfrm_dump_policy),
    M.ALLOCSPI: XfrmLink(xfrm_alloc_userspi),
    M.ACQUIRE: XfrmLink(xfrm_add_acquire),
    M.EXPIRE: XfrmLink(xfrm_add_sa_expire),
    M.UPDPOLICY: XfrmLink(xfrm_add_policy),
    M.UPDSA: XfrmLink(xfrm_add_sa),
    M.POLEXPIRE: XfrmLink(xfrm_add_pol_expire),
    M.FLUSHSA: XfrmLink(xfrm_flush_sa),
    M.FLUSHPOLICY: XfrmLink(xfrm_flush_policy),
    M.NEWAE: XfrmLink(xfrm_new_ae),
    M.GETAE: XfrmLink(xfrm_get_ae),
    M.MIGRATE: XfrmLink(xfrm_do_migrate),
    M.GETSADINFO: XfrmLink(xfrm_get_sadinfo),
    M.NEWSPDINFO: XfrmLink(xfrm_set_spdinfo),
    M.GETSPDINFO: XfrmLink(xfrm_get_spdinfo),
    M.SETDEFAULT: XfrmLink(xfrm_set_default),
    M.GETDEFAULT: XfrmLink(xfrm_get_default),
}
# the same table by role, plain ints as keys (benchmarks read HANDLERS)
HANDLERS: dict[int, Handler] = {int(t): ln.doit for t, ln in XFRM_DISPATCH.items()
                                if ln.doit is not None}
DUMPERS: dict[int, Handler] = {int(t): ln.dump for t, ln in XFRM_DISPATCH.items()
                               if ln.dump is not None}


class XfrmUser:
    """The NETLINK_XFRM kernel socket."""
    protocol = NETLINK_XFRM
    groups = X.XFRMNLGRP_MAX

    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self.doit = HANDLERS
        self.dumpit = DUMPERS
        if _rcvfast is not None:
            # the kernel's deliver takes an XFRM request's common case in C (the C pump
            # and every caller look deliver up on the kernel); the rest is Kernel.deliver's
            setattr(kernel, "deliver", _rcvfast.Deliver(kernel, type(kernel).deliver))

    def init_net(self, ns: NetNamespace) -> None:
        setattr(ns, "xfrm", XfrmNet(ns))    # net->xfrm

    def exit_net(self, ns: NetNamespace) -> None:
        xfrm_net(ns).flush_all()

    request_type = XfrmRequest

    def rcv_msg(self, req: Request) -> object:
        if type(req) is not XfrmRequest:
            req = XfrmRequest.of(req)
        hdr = req.hdr
        t = hdr.type
        if t > _MSG_MAX:
            raise KernelError(E.EINVAL)
        if not req.sock.cap_net_admin:
            # xfrm_user_rcv_msg: "All operations require privileges, even GET"
            # (netlink_net_capable, the opener's credentials: docs/security.md)
            raise KernelError(E.EPERM)
        if t in _DUMPABLE and hdr.flags & NLM_F_DUMP:
            dumper = self.dumpit.get(t)
            if dumper is None:
                raise KernelError(E.EINVAL)
            req.attrs, req.warning = {}, None
            return dumper(req)
        min_len = _MSG_MIN[t]
        if hdr.len - 16 < min_len:
            raise KernelError(E.EINVAL, "Invalid header length")
        # the attributes: after the nlmsghdr and the aligned fixed part, to the message's end
        start, end = hdr.offset + 16 + ((min_len + 3) & ~3), hdr.offset + hdr.len
        parse = _parse_spd_attrs if t == _NEWSPDINFO else _parse_attrs
        tb, err, warn = parse(req.buf, start, end, hdr.offset)
        if err is not None:
            return err
        if t != _NEWSPDINFO and (_SA_DIR in tb or _SA_PCPU in tb):
            _reject_unused_attr(t, tb)
        doit = self.doit.get(t)
        if doit is None:
            raise KernelError(E.EINVAL)
        req.attrs, req.warning = tb, warn
        return doit(req)


# plain ints for the per-message path (IntEnum member access costs a dict lookup each)
_DUMPABLE = frozenset((int(X.XfrmMsg.GETSA), int(X.XfrmMsg.GETPOLICY)))
_MSG_MIN = {int(k): v for k, v in X.MSG_MIN.items()}
_MSG_MAX = int(X.XFRM_MSG_MAX)
_NEWSPDINFO = int(X.XfrmMsg.NEWSPDINFO)
_SA_DIR, _SA_PCPU = int(X.Xfrma.SA_DIR), int(X.Xfrma.SA_PCPU)
# nlmsg_parse_deprecated with xfrma_policy / xfrma_spd_policy (their tables compiled once)
_parse_attrs = attr_parser(XFRMA_POLICY, X.XFRMA_MAX, STRICT_START_TYPE)
_parse_spd_attrs = attr_parser(XFRMA_SPD_POLICY, X.XFRMA_SPD_MAX)
_ACQUIRE = int(X.XfrmMsg.ACQUIRE)


# the messages SA_DIR / SA_PCPU mean something in (plain ints: charon sends SA_DIR in every
# ALLOCSPI, NEWSA and UPDSA, so this runs three times per Child SA)
_SA_DIR_OK = frozenset(int(m) for m in (M.NEWSA, M.UPDSA, M.ALLOCSPI))
_SA_PCPU_OK = _SA_DIR_OK | {int(M.ACQUIRE)}


def _reject_unused_attr(t: int, tb: dict[int, RawAttr]) -> None:
    """``xfrm_reject_unused_attr``: SA_DIR and SA_PCPU only where they mean something."""
    if t in _SA_PCPU_OK:
        if t == _ACQUIRE and _SA_DIR in tb:
            raise KernelError(E.EINVAL, "Invalid attribute SA_DIR")
        return
    if _SA_DIR in tb:
        raise KernelError(E.EINVAL, "Invalid attribute SA_DIR")
    if _SA_PCPU in tb:
        raise KernelError(E.EINVAL, "Invalid attribute SA_PCPU")


# The framework of a request in C (xfrmd/netlink/_rcvfast.c: Kernel.deliver, netlink_rcv_skb,
# netlink_rcv_msg and rcv_msg above for the common case, the ACK queued), None in pure Python
_rcvfast = cext.load("xfrmd.netlink._rcvfast", source("xfrmd.netlink._rcvfast"))
if _rcvfast is not None:
    _rcvfast.setup(
        NetlinkSocket=NetlinkSocket, XfrmRequest=XfrmRequest, Header=Header, Reply=Reply,
        XfrmUser=XfrmUser, rcv_msg=XfrmUser.rcv_msg, DUMP_STARTED=DUMP_STARTED,
        handler_failed=handler_failed, netlink_rcv_done=netlink_rcv_done, msg_min=_MSG_MIN,
        msg_max=_MSG_MAX, dumpable=_DUMPABLE, newspdinfo=_NEWSPDINFO, sa_dir=_SA_DIR,
        sa_pcpu=_SA_PCPU, sa_pcpu_ok=_SA_PCPU_OK, acquire=_ACQUIRE, parser=_parse_attrs, deque=deque)


def not_modelled(name: str) -> Handler:
    """A handler for what xfrmd does not model yet: EOPNOTSUPP with an ``xfrmd:`` message."""
    def doit(req: XfrmRequest) -> Reply:
        raise KernelError(E.EOPNOTSUPP, f"xfrmd: {name} is not modelled")
    return doit


__all__ = ["HANDLERS", "DUMPERS", "XFRM_DISPATCH", "XfrmLink", "XfrmRequest", "XfrmUser"]
