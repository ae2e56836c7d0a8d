"""NETLINK_ROUTE (net/core/rtnetlink.c ``rtnetlink_rcv_msg``): links, addresses, routes, rules.

Handlers register per message type with :func:`rtnl_handler` (doit) or
``rtnl_handler(t, dump=True)`` (dumpit). What is not modelled answers EOPNOTSUPP with an
``xfrmd:`` message; GET requests need no privilege, everything else CAP_NET_ADMIN."""
from __future__ import annotations

import errno as E
from typing import Callable

from netlink_codec.netlink import NETLINK_ROUTE, NLM_F_DUMP, NLM_F_ECHO

from ..netlink.core import OK, Reply, Request

DOIT: dict[int, Callable] = {}
DUMPIT: dict[int, Callable] = {}
# handlers one family registered for itself (rtnl_register(PF_BRIDGE, …)), looked up first
FAMILY_DOIT: dict[tuple[int, int], Callable] = {}
FAMILY_DUMPIT: dict[tuple[int, int], Callable] = {}
RTM_BASE, RTM_MAX = 16, 127


def rtnl_handler(msg_type: int, *, dump: bool = False, family: int = 0):
    def register(fn):
        if family:
            (FAMILY_DUMPIT if dump else FAMILY_DOIT)[(family, msg_type)] = fn
        else:
            (DUMPIT if dump else DOIT)[msg_type] = fn
        return fn
    return register


class RtnlRequest(Request):
    """A request with the extack message its attribute parse left (xfrmd/rtnl/policy.py)."""
    __slots__ = ("warning",)

    def __init__(self, base: Request):
        super().__init__(base.kernel, base.sock, base.buf, base.hdr)
        self.warning = None


def _with_warning(out, warning: str):
    """The parser's extack message stays unless a later step set one (NL_SET_ERR_MSG only
    overwrites): on the ACK of a success, and on an error that says nothing else."""
    if isinstance(out, Reply) and (out.ext is None or out.ext.msg is None):
        from netlink_codec.netlink import ExtAck
        r = Reply(out.error)
        r.ext = (out.ext or ExtAck())._replace(msg=warning)
        r.echo = out.echo
        return r
    return out


class Rtnetlink:
    protocol = NETLINK_ROUTE
    groups = 32          # RTNLGRP_* used by the clients fit in the first 32

    def __init__(self, kernel):
        self.kernel = kernel
        from . import addr, bridge, link, neigh, netconf, netns, procfs, route, rule  # noqa: F401  (handlers register on import)

    def init_net(self, ns) -> None:
        from devices.netdev import LinkTable, loopback
        ns.links = LinkTable(ns)
        ns.links.register(loopback())
        ns.routes = []
        from .fib import fib
        fib(ns)                 # a new namespace's FIB (fib_net_init, fib6_net_init)

    def exit_net(self, ns) -> None:
        """``cleanup_net``: other namespaces forget their id for this one, then its hardware
        ports go home to ``default`` and its rtnetlink-made devices are deleted
        (xfrmd/rtnl/netns.py)."""
        from .netns import default_device_exit_net, net_exit_ids
        net_exit_ids(ns)
        default_device_exit_net(ns)

    def rcv_msg(self, req: Request):
        t = req.hdr.type
        if t > RTM_MAX:
            return Reply(-E.EOPNOTSUPP)
        if req.hdr.len - 16 < 1:
            return OK                  # "All the messages must have at least 1 byte length"
        kind = (t - RTM_BASE) & 3      # NEW, DEL, GET, SET of each family of messages
        # rtnl_get_link: the family's own handler, else the PF_UNSPEC one
        family = req.buf[req.payload_offset] if req.end > req.payload_offset else 0
        if kind == 2 and req.hdr.flags & NLM_F_DUMP:
            fn = FAMILY_DUMPIT.get((family, t)) or DUMPIT.get(t)
            if fn is None:
                return Reply(-E.EOPNOTSUPP, f"xfrmd: dumps of rtnetlink message {t} are not modelled")
            return fn(req)
        if kind != 2 and not req.sock.cap_net_admin:
            return Reply(-E.EPERM)     # netlink_net_capable(skb, CAP_NET_ADMIN)
        fn = FAMILY_DOIT.get((family, t)) or DOIT.get(t)
        if fn is None:
            return Reply(-E.EOPNOTSUPP, f"xfrmd: rtnetlink message {t} is not modelled")
        req = RtnlRequest(req)
        if req.hdr.flags & NLM_F_ECHO:
            # nlmsg_report: the notifications this request causes are echoed to its sender
            self.kernel.report = (req.sock, req.hdr.seq)
        try:
            out = fn(req)
        finally:
            self.kernel.report = None
        return out if req.warning is None else _with_warning(out, req.warning)


def init(kernel) -> None:
    """``rtnetlink_init``: the NETLINK_ROUTE family and its message handlers."""
    kernel.netlink_kernel_create(Rtnetlink(kernel))
