"""NETLINK_ROUTE (net/core/rtnetlink.c ``rtnetlink_rcv_msg``): links, addresses, routes, rules.

Each module declares its handlers in a constant table ``RTNL_MSG_HANDLERS`` of
(family, msgtype, doit, dumpit) rows (``rtnl_register_many``); :func:`init` registers them
into the kernel's :class:`Rtnetlink`. Family 0 is PF_UNSPEC; a row for another family
(PF_BRIDGE) is looked up first for requests of that family. What is not modelled answers
EOPNOTSUPP with an ``xfrmd:`` message; GET requests need no privilege, everything else
CAP_NET_ADMIN."""
from __future__ import annotations

import errno as E
from typing import TYPE_CHECKING, Any, Callable, Iterable, Optional

from devices.netdev import LinkTable, loopback
from netlink_codec.netlink import NETLINK_ROUTE, NLM_F_DUMP, NLM_F_ECHO, ExtAck

from ..errors import KernelError
from ..netlink.core import OK, Reply, Request
from ..notifier import NETDEV_PRI_FIB, NETDEV_PRI_NEIGH, NETDEV_PRI_PROCFS
from . import (addr, addrlabel, br_fdb, fib, links, neigh, netconf, netns, procfs, route, rule, services,
               sysfs_class)

if TYPE_CHECKING:
    from ..kernel import Kernel

__all__ = ["Rtnetlink", "RtnlRequest", "init"]

Handler = Callable[..., Any]
# one row of a handler table: (family, msgtype, doit, dumpit), ``struct rtnl_msg_handler``
MsgHandler = tuple[int, int, Optional[Handler], Optional[Handler]]
RTM_BASE, RTM_MAX = 16, 127


class RtnlRequest(Request):
    """A request with the extack message its attribute parse left (xfrmd/rtnl/policy.py)."""
    __slots__ = ("warning",)

    def __init__(self, base: Request):
        super().__init__(base.kernel, base.sock, base.buf, base.hdr)
        self.warning: str | None = None


def _with_warning(out: Any, warning: str) -> Any:
    """The parser's extack message stays unless a later step set one (NL_SET_ERR_MSG only
    overwrites): on the ACK of a success (and on an error Reply that says nothing else, from
    the handlers that still return one: link.py, bridge.py, netns.py)."""
    if isinstance(out, Reply) and (out.ext is None or out.ext.msg is None):
        r = Reply(out.error)
        r.ext = (out.ext or ExtAck())._replace(msg=warning)
        r.echo = out.echo
        return r
    return out


class Rtnetlink:
    """The NETLINK_ROUTE family of one kernel: its handler tables (``rtnl_msg_handlers``)
    and the namespace set-up of the link table and the FIB."""
    protocol = NETLINK_ROUTE
    groups = 32          # RTNLGRP_* used by the clients fit in the first 32

    def __init__(self, kernel: Kernel):
        self.kernel = kernel
        self.doit: dict[int, Handler] = {}
        self.dumpit: dict[int, Handler] = {}
        # handlers one family registered for itself (rtnl_register(PF_BRIDGE, …)), looked up first
        self.family_doit: dict[tuple[int, int], Handler] = {}
        self.family_dumpit: dict[tuple[int, int], Handler] = {}

    def register_many(self, table: Iterable[MsgHandler]) -> None:
        """``rtnl_register_many``: each (family, msgtype, doit, dumpit) row."""
        for family, msgtype, doit, dumpit in table:
            if doit is not None:
                if family:
                    self.family_doit[(family, msgtype)] = doit
                else:
                    self.doit[msgtype] = doit
            if dumpit is not None:
                if family:
                    self.family_dumpit[(family, msgtype)] = dumpit
                else:
                    self.dumpit[msgtype] = dumpit

    def init_net(self, ns: Any) -> None:
        ns.links = LinkTable(ns)
        ns.links.register(loopback())
        ns.routes = []
        fib.fib(ns)             # a new namespace's FIB (fib_net_init, fib6_net_init)

    def exit_net(self, ns: Any) -> None:
        """``cleanup_net``: other namespaces forget their id for this one, then its hardware
        ports go home to ``default`` and its rtnetlink-made devices are deleted
        (xfrmd/rtnl/netns.py)."""
        netns.net_exit_ids(ns)
        netns.default_device_exit_net(ns)

    def rcv_msg(self, req: Request) -> Any:
        t = req.hdr.type
        if t > RTM_MAX:
            raise KernelError(E.EOPNOTSUPP)
        if req.hdr.len - 16 < 1:
            return OK                  # "All the messages must have at least 1 byte length"
        kind = (t - RTM_BASE) & 3      # NEW, DEL, GET, SET of each family of messages
        # rtnl_get_link: the family's own handler, else the PF_UNSPEC one
        family = req.buf[req.payload_offset] if req.end > req.payload_offset else 0
        if kind == 2 and req.hdr.flags & NLM_F_DUMP:
            fn = self.family_dumpit.get((family, t)) or self.dumpit.get(t)
            if fn is None:
                raise KernelError(E.EOPNOTSUPP,
                                  f"xfrmd: dumps of rtnetlink message {t} are not modelled")
            return fn(req)
        if kind != 2 and not req.sock.cap_net_admin:
            raise KernelError(E.EPERM)     # netlink_net_capable(skb, CAP_NET_ADMIN)
        fn = self.family_doit.get((family, t)) or self.doit.get(t)
        if fn is None:
            raise KernelError(E.EOPNOTSUPP, f"xfrmd: rtnetlink message {t} is not modelled")
        rreq = RtnlRequest(req)
        if rreq.hdr.flags & NLM_F_ECHO:
            # nlmsg_report: the notifications this request causes are echoed to its sender
            self.kernel.report = (rreq.sock, rreq.hdr.seq)
        try:
            out = fn(rreq)
        except KernelError as err:
            # the parser's warning is the extack message of an error that says nothing else
            if rreq.warning is not None and err.msg is None:
                err.msg = rreq.warning
            raise
        finally:
            self.kernel.report = None
        return out if rreq.warning is None else _with_warning(out, rreq.warning)


# the handler tables, in the order the kernel's subsystems register theirs
RTNL_TABLES: tuple[tuple[MsgHandler, ...], ...] = (
    addr.RTNL_MSG_HANDLERS, route.RTNL_MSG_HANDLERS, rule.RTNL_MSG_HANDLERS,
    neigh.RTNL_MSG_HANDLERS, netconf.RTNL_MSG_HANDLERS, addrlabel.RTNL_MSG_HANDLERS,
    br_fdb.RTNL_MSG_HANDLERS)


def init(kernel: Kernel) -> None:
    """``rtnetlink_init`` and the rtnetlink subsystems' init calls: the NETLINK_ROUTE family
    and its message handlers, the netdevice and inetaddr notifiers of the neighbour tables,
    the IP sysctls and the FIB, the interface service ops, ioctls and virtual files."""
    rtnl = Rtnetlink(kernel)
    for table in RTNL_TABLES:
        rtnl.register_many(table)
    # links (link.py, bridge.py, netns.py, xfrmi.py): their handler tables, the link kinds
    # and rtnetlink_event
    rtnl.register_many(links.RTNL_MSG_HANDLERS)
    links.links_init(kernel)
    kernel.netlink_kernel_create(rtnl)
    kernel.fib_lookup = fib.route_lookup     # what xfrm's offload path routes with
    kernel.netdev_chain.register(neigh.neigh_netdev_event, NETDEV_PRI_NEIGH)
    kernel.netdev_chain.register(procfs.procfs_netdev_event, NETDEV_PRI_PROCFS)
    kernel.netdev_chain.register(netconf.netconf_netdev_event, NETDEV_PRI_PROCFS)
    kernel.netdev_chain.register(fib.fib_netdev_event, NETDEV_PRI_FIB)
    kernel.inetaddr_chain.register(fib.fib_inetaddr_event)
    for pattern, read, write in netconf.VFS_FILES + procfs.VFS_FILES + services.VFS_FILES:
        kernel.vfs.register(pattern, read, write)
    for pattern, lister in procfs.VFS_DIRS + services.VFS_DIRS + sysfs_class.VFS_DIRS:
        kernel.vfs.register_dir(pattern, lister)
    for pattern, target in sysfs_class.VFS_LINKS:
        kernel.vfs.register_link(pattern, target)
    kernel.vfs.register_alias(sysfs_class.device_alias)
    kernel.services.update(services.SERVICES)
    kernel.ioctls.update(services.IOCTLS)
