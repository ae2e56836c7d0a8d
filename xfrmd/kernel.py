"""The emulated kernel: network namespaces, netlink sockets, timers. Sans-IO.

``Kernel.deliver(sock, datagram)`` is ``sendmsg`` on an emulated netlink socket: it runs the
protocol's handlers, which queue replies on ``sock`` and multicast events on other sockets.
Whoever does the I/O (the trio server, or a test) then takes datagrams out of each socket in
``kernel.dirty``. Time only moves through the injected :class:`~xfrmd.clock.Clock`; the server
asks :meth:`Kernel.next_deadline` and calls :meth:`Kernel.run_timers`.
"""
from __future__ import annotations

import errno as E
import heapq
import itertools
import logging
import random
from typing import TYPE_CHECKING, Any, Callable

from netlink_codec import cext
from netlink_codec import netlink as N

from . import initcalls as _initcalls
from .capability import NONROOT_RECV_PROTOCOLS
from .cext import source
from .clock import Clock, ManualClock
from .errors import KernelError
from .fault import FaultTable
from .net_namespace import note_pid, put_net, resolve
from .netlink.core import MAX_RECVMSG_LEN, dump_alloc_size, dump_batch, netlink_rcv_skb
from .netlink.socket import ENOBUFS, NetlinkSocket, rcvbuf_for, skb_truesize, update_listeners
from .notifier import NotifierChain
from .stats import Stats
from .vfs import Vfs

if TYPE_CHECKING:
    from devices.netdev import LinkTable

    from .xfrm.netns import XfrmNet

SOL_SOCKET, SO_RCVBUF, SO_RCVBUFFORCE = 1, 8, 33

log = logging.getLogger("xfrmd.kernel")

SOCK_DGRAM, SOCK_RAW = 2, 3

# the C half of Kernel.reopen's in-place case (None: the Python, XFRMD_PURE_PYTHON or not
# built); setup learns NetlinkSocket's slots and what fresh() writes (False: never in place)
reopen_c = cext.load("xfrmd.netlink._reopen", source("xfrmd.netlink._reopen"))
if reopen_c is not None and not reopen_c.setup(NetlinkSocket):
    reopen_c = None
# the same arguments, then the kernel's tables: namespaces, families, former_names, dirty,
# _sock_ids, admin_uids (Server._replay's REOPEN op uses the module too: server.py)
reopen_in_place = reopen_c.reopen if reopen_c is not None else None
UNNAMED = "~unshared-"     # an unshare()d namespace before a bind mount names it


class Timer:
    __slots__ = ("when", "fn", "cancelled")

    def __init__(self, when: float, fn: Callable[[], None]):
        self.when = when
        self.fn = fn
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class NetNamespace:
    """``struct net``: each subsystem keeps its per-namespace state as an attribute, created
    by its ``init_net`` (pernet_operations). Declared here, set there: ``links`` (the link
    table, rtnetlink), ``routes`` (routes given as (dst, dev) by a topology), ``xfrm`` (the
    SAD and SPD, ``net->xfrm``), ``dying`` (cleanup_net has started), ``unplugged`` (ports
    pulled with ``xfrmd ctl link … unplug``). The FIB, the rule table and the per-device IP
    sysctls are made on first use by their modules (``fib``, ``fib_rules``, ``ip_devconf``)."""

    links: LinkTable
    routes: list[Any]
    xfrm: XfrmNet
    dying: bool
    unplugged: dict[str, Any]
    refcounted: bool      # made by unshare(): lives while held (xfrmd/net_namespace.py)
    former_name: str | None   # the name `ip netns del` removed while it was held

    def __init__(self, kernel: "Kernel", name: str):
        self.kernel = kernel
        self.name = name
        self.sockets: dict[int, set[NetlinkSocket]] = {}      # protocol → open sockets
        self.ports: dict[int, dict[int, NetlinkSocket]] = {}  # protocol → portid → socket
        # protocol → OR of its open sockets' groups (nl_table[].listeners), kept by
        # update_listeners wherever a socket's groups change or it closes
        self.listeners: dict[int, int] = {}
        # instance attributes, not class defaults: each socket close reads ``refcounted``
        self.refcounted = False
        self.former_name = None     # Kernel.set_former_name keeps the index resolve reads

    def __repr__(self):
        return f"<netns {self.name}>"


InitCall = Callable[["Kernel"], None]


class Kernel:
    """Holds everything; one per server. Two kernels in one process share nothing: every
    table a subsystem fills (protocol families, notifier chains, link kinds, service ops,
    virtual files, ioctls, driver state) is an attribute of the kernel, filled by the
    subsystem's init call. ``initcalls``: the start-up sequence (``do_initcalls``); the
    default is :data:`xfrmd.initcalls.INITCALLS`, in the order that module gives."""

    UNNAMED = UNNAMED

    def __init__(self, clock: Clock | None = None, *, topology=None, admin_uids=None,
                 auto_create_netns: bool = True, seed: int | None = None,
                 initcalls: "tuple[InitCall, ...] | None" = None):
        self.clock = clock or ManualClock()
        self.namespaces: dict[str, NetNamespace] = {}
        self.admin_uids = admin_uids  # None = every caller has CAP_NET_ADMIN
        self.auto_create_netns = auto_create_netns
        self.random = random.Random(seed)
        self.dirty: set[NetlinkSocket] = set()   # sockets with new datagrams queued
        # (socket, seq) of the NLM_F_ECHO request being handled, see multicast
        self.report: tuple[NetlinkSocket, int] | None = None
        # (socket id, extack TLVs) while netlink_ack sends an ACK whose extack the socket
        # does not take (no NETLINK_EXT_ACK): the tracers show it (xfrmd/trace.py)
        self.trace_note: tuple[int, bytes] | None = None
        self._timers: list[tuple[float, int, Timer]] = []
        self._timer_seq = itertools.count()
        self._sock_ids = itertools.count(1)
        self.families: dict[int, object] = {}
        self.tracers: list[Callable[[str, NetlinkSocket, bytes], None]] = []
        self.stats = Stats()
        self.faults = FaultTable()               # `xfrmd ctl fault` rules (xfrmd/fault.py)
        # the tables subsystems fill in their init calls
        self.netdev_chain = NotifierChain("netdev")       # register_netdevice_notifier
        self.inetaddr_chain = NotifierChain("inetaddr")   # register_inetaddr_notifier
        self.link_ops: dict[str, object] = {}             # rtnl_link_register: kind → ops
        self.services: dict[str, Callable] = {}           # service op → fn (xfrmd/services.py)
        self.vfs = Vfs()                                  # /proc, /sys, debugfs files
        self.ioctls: dict[int, Callable] = {}             # SIOC* → fn (xfrmd/ioctl.py)
        self.drivers: dict[str, object] = {}              # a driver's global state, by driver
        self.pernet: list = []                            # pernet_operations (init_net/exit_net)
        # which emulated namespace a process is in, when it moved itself (unshare, setns:
        # the shim tells); ``get_net_ns_by_pid`` asks here first
        self.pid_netns: dict[int, str] = {}
        # when each of those processes started (the shim's /proc/PID/stat starttime): a later
        # process that reuses the pid is not taken for the one that moved
        self.pid_start: dict[int, int] = {}
        # the namespaces a watched process has left by setns/unshare: it may keep an nsfs fd
        # of each (ipsec.c opens /proc/self/ns/net, moves on, and setns()es back later), so
        # each stays held until the process exits (net_namespace.in_use)
        self.pid_held: dict[int, set[str]] = {}
        # set by a server: watch process (pid, start) and call net_namespace.process_exit
        # when it ends (the last process in an unshare()d namespace destroys it)
        self.watch_process: Callable[[int, int], None] | None = None
        # set by a server: the parent of a process (0 if unknown), for net_namespace.resolve
        self.parent_of: Callable[[int], int] | None = None
        # set by a server: the (pid, start) of live processes whose environment puts them
        # in one of the namespaces named, for net_namespace.put_net
        self.find_processes: Callable[[set[str]], list[tuple[int, int]]] | None = None
        # the FIB's route lookup (``fib_lookup``), set by rtnetlink's init: lower layers
        # (xfrm's offload path) route through it without importing rtnl
        self.fib_lookup: Callable | None = None
        self._unshared = itertools.count(1)
        # names bound in /run/netns (``ip netns add``): what ``ip netns list`` shows; a
        # topology's namespaces are not there, as on a host where a test made them otherwise
        self.netns_bound: set[str] = set()
        # former name → how many live namespaces have it (NetNamespace.former_name): each
        # socket() asks whether the name it was given is one (net_namespace.resolve)
        self.former_names: dict[str, int] = {}
        for init in (_initcalls.INITCALLS if initcalls is None else initcalls):
            init(self)
        self.topology = topology
        if topology is not None:
            topology.apply(self)

    # -- registration (called by init calls) ----------------------------------------

    def netlink_kernel_create(self, family) -> None:
        """``netlink_kernel_create``: the kernel side of a netlink protocol."""
        self.families[family.protocol] = family

    def register_pernet_subsys(self, ops) -> None:
        """``register_pernet_subsys``: ``ops.init_net(ns)`` for every namespace made from
        now on (and the ones that exist), ``ops.exit_net(ns)`` when one goes."""
        self.pernet.append(ops)
        for ns in self.namespaces.values():
            init = getattr(ops, "init_net", None)
            if init:
                init(ns)

    def rtnl_link_register(self, ops) -> None:
        """``rtnl_link_register``: the link kind ``ops.kind`` (``struct rtnl_link_ops``)."""
        if ops.kind in self.link_ops:
            raise KernelError(E.EEXIST, f"link kind {ops.kind!r} registered twice")
        self.link_ops[ops.kind] = ops

    # -- namespaces --------------------------------------------------------------------

    def netns(self, name: str = "default", create: bool | None = None) -> NetNamespace:
        ns = self.namespaces.get(name)
        if ns is None:
            if not (self.auto_create_netns if create is None else create):
                raise KernelError(E.ENOENT, f"no network namespace {name!r}")
            ns = self.add_netns(name)
        return ns

    def add_netns(self, name: str) -> NetNamespace:
        if name in self.namespaces:
            raise KernelError(E.EEXIST, f"network namespace {name!r} exists")
        ns = NetNamespace(self, name)
        self.namespaces[name] = ns
        for ops in self._pernet_ops():
            init = getattr(ops, "init_net", None)
            if init:
                init(ns)
        return ns

    def _pernet_ops(self) -> list:
        """Families first (netlink_kernel_create's order), then pernet subsystems in
        registration order; exits run in the same order."""
        return list(self.families.values()) + [o for o in self.pernet
                                               if o not in self.families.values()]

    def unshare_netns(self, pid: int, start: int = 0) -> NetNamespace:
        """``unshare(CLONE_NEWNET)`` by process ``pid`` (``copy_net_ns``): a new namespace
        with no name yet (``ip netns list`` does not show it), the process's from now on;
        it lives while held (xfrmd/net_namespace.py)."""
        ns = self.add_netns(f"{UNNAMED}{pid}-{next(self._unshared)}")
        ns.refcounted = True
        note_pid(self, pid, start, ns.name)
        return ns

    def rename_netns(self, old: str, new: str) -> None:
        """A bind mount of a namespace onto /run/netns/NEW (``ip netns add``): an unnamed
        namespace takes the name its users see."""
        ns = self.namespaces.get(old)
        if ns is None:
            raise KernelError(E.ENOENT, f"no network namespace {old!r}")
        if new in self.namespaces:
            raise KernelError(E.EEXIST, f"network namespace {new!r} exists")
        if not old.startswith(UNNAMED):
            raise KernelError(E.EOPNOTSUPP, f"xfrmd: network namespace {old!r} has a name "
                              "already; a second name for it is not emulated")
        del self.namespaces[old]
        ns.name = new
        self.namespaces[new] = ns
        self.netns_bound.add(new)
        for pid, name in list(self.pid_netns.items()):
            if name == old:
                self.pid_netns[pid] = new
        self.rename_held(old, new)

    def rename_held(self, old: str, new: str) -> None:
        """A namespace held by processes that left it (``pid_held``) got a new name."""
        for held in self.pid_held.values():
            if old in held:
                held.discard(old)
                held.add(new)

    def set_former_name(self, ns: NetNamespace, name: str) -> None:
        """``ns`` lost its name ``name`` to ``ip netns del`` while held
        (net_namespace.netns_umount); ``former_names`` follows."""
        if ns.former_name is not None:
            self._count_former_name(ns.former_name, -1)
        ns.former_name = name
        self._count_former_name(name, 1)

    def _count_former_name(self, name: str, delta: int) -> None:
        n = self.former_names.get(name, 0) + delta
        if n > 0:
            self.former_names[name] = n
        else:
            self.former_names.pop(name, None)

    def del_netns(self, name: str) -> None:
        ns = self.namespaces.pop(name, None)
        if ns is None:
            raise KernelError(E.ENOENT, f"no network namespace {name!r}")
        for pid in [p for p, n in self.pid_netns.items() if n == name]:
            del self.pid_netns[pid]
        for held in self.pid_held.values():
            held.discard(name)
        self.netns_bound.discard(name)
        if ns.former_name is not None:
            self._count_former_name(ns.former_name, -1)
        for ops in self._pernet_ops():
            exit_ = getattr(ops, "exit_net", None)
            if exit_:
                exit_(ns)

    # -- sockets -----------------------------------------------------------------------

    def socket(self, protocol: int, netns: str = "default", *, pid: int = 0, uid: int = 0,
               sock_type: int = SOCK_RAW, cred=None, create: bool | None = None) -> NetlinkSocket:
        """``socket(AF_NETLINK, type, protocol)``; unknown protocols → EPROTONOSUPPORT.

        ``cred`` (:class:`~xfrmd.capability.Credentials`): what the opener may do (the
        server's peers); without it ``admin_uids`` decides. ``create=False``: an unknown
        namespace is ENOENT (a peer cannot make namespaces, docs/security.md)."""
        # every `ip` line opens one (Server._replay): nothing here is done twice, nothing
        # is allocated that is not kept
        if sock_type != SOCK_RAW and sock_type != SOCK_DGRAM:
            raise KernelError(E.ESOCKTNOSUPPORT)      # netlink_create
        fam = self.families.get(protocol)
        if fam is None or getattr(fam, "refuse_sockets", False):
            # netlink_create: no kernel socket registered for this protocol (or switched off,
            # `xfrmd ctl genetlink off`, to make programs take their non-netlink path)
            raise KernelError(E.EPROTONOSUPPORT)
        if pid and netns in self.former_names:
            netns = resolve(self, netns, pid)         # a name `ip netns del` removed
        ns = self.namespaces.get(netns)
        if ns is None:
            ns = self.netns(netns, create)
        # __netlink_create: sk_alloc in the namespace, the socket's defaults
        sock = NetlinkSocket(protocol, ns, pid, uid, sock_type, next(self._sock_ids))
        if cred is not None:
            sock.cap_net_admin = cred.net_admin
            sock.cap_net_admin_init = cred.net_admin_init
        else:
            sock.cap_net_admin = sock.cap_net_admin_init = self.admin_uids is None or uid in self.admin_uids
        socks = ns.sockets.get(protocol)
        if socks is None:
            socks = ns.sockets[protocol] = set()
        socks.add(sock)
        return sock

    def reopen(self, sock: NetlinkSocket, protocol: int, netns: str, pid: int, uid: int,
               sock_type: int, cred=None, portid: int = 0) -> NetlinkSocket:
        """``close(sock)``, then ``socket(protocol, netns, pid=pid, uid=uid,
        sock_type=sock_type, cred=cred, create=False)`` and, given ``portid``,
        ``bind(new, portid)`` (a bind that fails leaves the new socket unbound: the caller's
        BIND_AUTO path says why): a kept connection's RELEASE, HELLO and BIND_AUTO, once per
        `ip -batch` line (Server._replay). Errors are socket()'s.

        When nothing can tell the difference, ``sock`` itself becomes the new socket, reset in
        place (:meth:`NetlinkSocket.fresh`) under a new ``id``: it is open, in no group, in
        the namespace named, which is not refcounted (no put_net), with the protocol, type and
        owner asked. As netlink_release does, its queue and dump are dropped and its port id
        is freed — or kept when it is ``portid``, which netlink_insert would give it again.
        Every other case is :meth:`close` and :meth:`socket`, the reference.

        The in-place case runs in C when built (``xfrmd/netlink/_reopen.c``: the same tests
        and stores, without this frame; anything else it leaves untouched to the Python
        below); a ``portid`` it did not keep is bound here."""
        if reopen_in_place is not None and reopen_in_place(
                sock, protocol, netns, pid, uid, sock_type, cred, portid, self.namespaces,
                self.families, self.former_names, self.dirty, self._sock_ids, self.admin_uids):
            if portid and not sock.bound:
                try:
                    self.bind(sock, portid)
                except KernelError:
                    pass
            return sock
        ns = sock.netns
        fam = self.families.get(protocol)
        if (sock.closed or sock._groups or ns.refcounted or sock.protocol != protocol
                or sock.sock_type != sock_type or sock.pid != pid or sock.uid != uid
                or self.namespaces.get(netns) is not ns or fam is None
                or getattr(fam, "refuse_sockets", False) or (pid and netns in self.former_names)):
            self.close(sock)
            sock = self.socket(protocol, netns, pid=pid, uid=uid, sock_type=sock_type,
                               cred=cred, create=False)
            if portid:
                try:
                    self.bind(sock, portid)
                except KernelError:
                    pass
            return sock
        keep = False
        if sock.bound:                    # netlink_release → netlink_remove
            ports = ns.ports.get(protocol)
            if ports is not None and ports.get(sock.portid) is sock:
                if sock.portid == portid:
                    keep = True
                else:
                    del ports[sock.portid]
        self.dirty.discard(sock)
        if sock.rx:                       # skb_queue_purge
            sock.rx.clear()
            sock.rx_truesize.clear()
        sock.fresh()                      # __netlink_create
        sock.id = next(self._sock_ids)
        if cred is not None:
            sock.cap_net_admin = cred.net_admin
            sock.cap_net_admin_init = cred.net_admin_init
        else:
            sock.cap_net_admin = sock.cap_net_admin_init = self.admin_uids is None or uid in self.admin_uids
        if keep:
            sock.portid = portid
            sock.bound = True
        elif portid:
            try:
                self.bind(sock, portid)
            except KernelError:
                pass
        return sock

    def bind(self, sock: NetlinkSocket, portid: int = 0, groups: int = 0) -> None:
        """``netlink_bind``: assign or check the port id, then set the legacy group mask."""
        if groups and not self._may_join(sock):
            raise KernelError(E.EPERM)     # checked before the port id (netlink_bind)
        if sock.bound:
            if portid and portid != sock.portid:
                raise KernelError(E.EINVAL)
        elif portid:
            # netlink_insert
            ports = sock.netns.ports.get(sock.protocol)
            if ports is None:
                ports = sock.netns.ports[sock.protocol] = {}
            if portid in ports:
                raise KernelError(E.EADDRINUSE)
            ports[portid] = sock
            sock.portid = portid
            sock.bound = True
        else:
            self.autobind(sock)
        if groups or sock._groups & 0xFFFFFFFF:     # the field: no property call when 0
            sock.groups = (sock.groups & ~0xFFFFFFFF) | (groups & 0xFFFFFFFF)

    @staticmethod
    def _may_join(sock: NetlinkSocket) -> bool:
        """``netlink_allowed(sock, NL_CFG_F_NONROOT_RECV)`` (xfrmd/capability.py)."""
        return sock.cap_net_admin or sock.protocol in NONROOT_RECV_PROTOCOLS

    def autobind(self, sock: NetlinkSocket) -> None:
        """``netlink_autobind``: the process id if free, else a unique negative id."""
        if sock.bound:
            return
        ports = sock.netns.ports.get(sock.protocol)
        if ports is None:
            ports = sock.netns.ports[sock.protocol] = {}
        portid = sock.pid
        if not portid or portid in ports:
            while True:
                portid = self.random.randint(-(2 ** 31), -4097) & 0xFFFFFFFF
                if portid not in ports:
                    break
        ports[portid] = sock
        sock.portid = portid
        sock.bound = True

    def setsockopt(self, sock: NetlinkSocket, level: int, optname: int, value: int) -> None:
        """``netlink_setsockopt`` (SOL_NETLINK) and ``sk_setsockopt``'s receive buffer
        sizes. `ip` sets SO_RCVBUF and NETLINK_EXT_ACK on each socket: those come first."""
        if level == SOL_SOCKET:
            if optname == SO_RCVBUF:
                sock.rcvbuf = rcvbuf_for(value, False)
            elif optname == SO_RCVBUFFORCE:
                if not sock.cap_net_admin_init:
                    # sk_setsockopt: capable(CAP_NET_ADMIN) in the init user namespace, or
                    # EPERM and nothing changes (docs/security.md)
                    raise KernelError(E.EPERM)
                sock.rcvbuf = rcvbuf_for(value, True)
            return
        if level == N.SOL_NETLINK:
            if optname == N.NETLINK_EXT_ACK:
                sock.ext_ack = bool(value)
            elif optname == N.NETLINK_ADD_MEMBERSHIP or optname == N.NETLINK_DROP_MEMBERSHIP:
                fam = self.families[sock.protocol]
                if not self._may_join(sock):
                    raise KernelError(E.EPERM)   # netlink_setsockopt: before the group check
                if value <= 0 or value > max(getattr(fam, "groups", 32), 32):
                    raise KernelError(E.EINVAL)
                if not sock.bound:
                    self.autobind(sock)
                bit = 1 << (value - 1)
                sock.groups = sock.groups | bit if optname == N.NETLINK_ADD_MEMBERSHIP else sock.groups & ~bit
            elif optname == N.NETLINK_CAP_ACK:
                sock.cap_ack = bool(value)
            elif optname == N.NETLINK_GET_STRICT_CHK:
                sock.strict_chk = bool(value)
            elif optname == N.NETLINK_NO_ENOBUFS:
                sock.no_enobufs = bool(value)
                if value:                  # netlink_setsockopt: a congestion ends at once
                    sock.congested = False

    def close(self, sock: NetlinkSocket) -> None:
        """``netlink_release``: out of the namespace's socket list and port table
        (``netlink_remove``), the dump dropped (``netlink_dump_done``). Group membership is
        the socket's own ``groups``: nothing to leave (multicast walks ``ns.sockets``)."""
        if sock.closed:
            return
        sock.closed = True
        ns = sock.netns
        socks = ns.sockets.get(sock.protocol)
        if socks is not None:
            socks.discard(sock)
        if sock._groups:                  # netlink_release → netlink_update_listeners
            update_listeners(ns, sock.protocol)
        if sock.bound:
            ports = ns.ports.get(sock.protocol)
            if ports is not None and ports.get(sock.portid) is sock:
                del ports[sock.portid]
        sock.dump = None
        self.dirty.discard(sock)
        if ns.refcounted:                 # sk_net's reference (sk_destruct → put_net)
            put_net(self, ns.name)

    # -- data path ---------------------------------------------------------------------

    def deliver(self, sock: NetlinkSocket, datagram: bytes) -> None:
        """``sendmsg`` of one datagram to the kernel."""
        if not sock.bound:
            self.autobind(sock)
        self.stats.datagrams += 1
        for t in self.tracers:
            t("tx", sock, datagram)
        netlink_rcv_skb(self, sock, datagram, self.families[sock.protocol])

    def unicast(self, sock: NetlinkSocket, datagram: bytes, truesize: int = 0) -> bool:
        """``netlink_unicast`` from a kernel socket (MSG_DONTWAIT): False when the receive
        buffer had no room and the datagram was dropped (``netlink_overrun``)."""
        if sock.closed:
            return False
        queued = sock.queue(datagram, truesize)
        self.dirty.add(sock)       # a drop may have queued the ENOBUFS error
        if queued:
            # taps see what was queued (__netlink_sendskb), not what was dropped
            for t in self.tracers:
                t("rx", sock, datagram)
        return queued

    def multicast(self, netns: NetNamespace, protocol: int, group: int, datagram: bytes) -> None:
        """``netlink_broadcast`` to every member of ``group``, the sender included. A
        notification built from an NLM_F_ECHO request (its seq and port id) goes to the
        requester by unicast instead (``nlmsg_notify`` with report set)."""
        exclude = None
        rep = self.report
        if rep is not None and len(datagram) >= 16 and rep[0].netns is netns \
                and rep[0].protocol == protocol \
                and N.HDR.unpack_from(datagram)[3:5] == (rep[1], rep[0].portid):
            exclude = rep[0]
            self.unicast(exclude, datagram)
        for s in netns.sockets.get(protocol, ()):
            if s is not exclude and s.member(group):
                for t in self.tracers:
                    t("event", s, datagram)
                if s.queue_multicast(datagram):
                    self.dirty.add(s)
                else:
                    self.dirty.add(s)

    @staticmethod
    def has_listeners(netns: NetNamespace, protocol: int, group: int) -> bool:
        """``netlink_has_listeners``: a test of the namespace's listeners mask, which
        update_listeners keeps (xfrmd/netlink/socket.py); no walk of the sockets. The kernel's
        bitmap is per protocol across namespaces; this one is per namespace, which only
        spares building a message no member of this namespace would receive."""
        return group > 0 and bool(netns.listeners.get(protocol, 0) >> (group - 1) & 1)

    def netlink_dump(self, sock: NetlinkSocket) -> int:
        """One step of ``netlink_dump``: 0, or -ENOBUFS when the step's skb does not fit
        the receive buffer (charged first; refused unless alone in the queue or the total
        stays below rcvbuf). A dump ignores congestion, as ``__netlink_sendskb`` does."""
        if sock.dump is None or sock.closed:
            return 0
        ts = skb_truesize(dump_alloc_size(sock))
        rmem = sock.rmem() + ts
        if rmem != ts and rmem >= sock.rcvbuf and sock.outq_probe is not None:
            sock.outq = sock.outq_probe()
            rmem = sock.rmem() + ts
        if rmem != ts and rmem >= sock.rcvbuf:
            return -ENOBUFS
        batch = dump_batch(sock)
        if batch is not None:
            sock.rx.append(batch)
            sock.rx_truesize.append(ts)
            sock.rx_bytes += ts
            self.dirty.add(sock)
            for t in self.tracers:
                t("rx", sock, batch)
        return 0

    def recvd(self, sock: NetlinkSocket, buflen: int) -> None:
        """``netlink_recvmsg`` saw a receive of ``buflen`` bytes: remember the size and, if
        at most half the receive buffer is in use, run the next step of a running dump; a
        step that fails sets ``sk_err``."""
        if buflen > sock.max_recvmsg_len:
            sock.max_recvmsg_len = min(buflen, MAX_RECVMSG_LEN)
        if sock.dump is None:
            return
        if sock.outq_probe is not None:
            sock.outq = sock.outq_probe()
        if sock.rmem() <= sock.rcvbuf // 2:
            err = self.netlink_dump(sock)
            if err:
                sock.set_error(-err)
                self.dirty.add(sock)

    def recv(self, sock: NetlinkSocket, buflen: int = MAX_RECVMSG_LEN) -> bytes | None:
        """A whole ``recvmsg`` for in-process users: take one datagram, then continue a dump."""
        d = sock.pop()
        self.recvd(sock, buflen)
        return d

    # -- timers ------------------------------------------------------------------------

    def add_timer(self, delay: float, fn: Callable[[], None]) -> Timer:
        t = Timer(self.clock.now() + delay, fn)
        heapq.heappush(self._timers, (t.when, next(self._timer_seq), t))
        return t

    def next_deadline(self) -> float | None:
        while self._timers and self._timers[0][2].cancelled:
            heapq.heappop(self._timers)
        return self._timers[0][0] if self._timers else None

    def run_timers(self) -> int:
        """Run every timer that is due by the clock; returns how many ran."""
        n = 0
        now = self.clock.now()
        while self._timers and self._timers[0][0] <= now:
            _, _, t = heapq.heappop(self._timers)
            if not t.cancelled:
                t.cancelled = True
                t.fn()
                n += 1
        return n

    def advance(self, seconds: float) -> int:
        """Move the clock forward, running each timer at its own due time and in order
        (tests, ``xfrmd ctl clock advance``)."""
        target = self.clock.now() + seconds
        n = 0
        while True:
            due = self.next_deadline()
            if due is None or due > target:
                break
            if due > self.clock.now():
                self.clock.advance(due - self.clock.now())
            n += self.run_timers()
        if target > self.clock.now():
            self.clock.advance(target - self.clock.now())
        return n
