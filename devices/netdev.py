"""Net devices (``struct net_device``) and each namespace's link table.

The interface the other subsystems use: ``ns.links`` is a :class:`LinkTable` (``by_index``,
``by_name``, iteration in ifindex order); a :class:`NetDevice` declares every field the model
keeps on a device (index, name, kind, flags, MTU, MAC, operstate/carrier, master, driver
facts, ``features``, ``xfrmdev_ops``, the bridge-port and bond-slave fields, the driver's
``priv``); :func:`call_netdevice_notifiers` runs the kernel's netdevice notifier chain
(``kernel.netdev_chain``) for NETDEV_* events."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Iterator

from .features import NetdevFeatures
from .linkgen import link_changed

if TYPE_CHECKING:
    from xfrmd.kernel import NetNamespace

    from .xfrmdev import XfrmDevOps

IFF_UP, IFF_BROADCAST, IFF_LOOPBACK, IFF_POINTOPOINT = 0x1, 0x2, 0x8, 0x10
IFF_RUNNING, IFF_NOARP, IFF_MULTICAST = 0x40, 0x80, 0x1000
IFF_MASTER, IFF_SLAVE, IFF_LOWER_UP, IFF_DORMANT = 0x400, 0x800, 0x10000, 0x20000
IF_OPER_UNKNOWN, IF_OPER_DOWN, IF_OPER_LOWERLAYERDOWN, IF_OPER_UP = 0, 2, 3, 6
ARPHRD_ETHER, ARPHRD_LOOPBACK = 1, 772

NetdevNotifier = Callable[..., None]
# ndo_fix_features(dev, features) -> features; ndo_set_features(dev, features) -> errno
FixFeatures = Callable[["NetDevice", int], int]
SetFeatures = Callable[["NetDevice", int], int]

def call_netdevice_notifiers(event: str, dev: "NetDevice", **info: Any) -> None:
    """``call_netdevice_notifiers``: the device's kernel's netdevice chain. Every event
    moves the link generation (the shim's cached if_nametoindex / GFEATURES answers)."""
    link_changed()
    if dev.netns is not None:           # a device in no namespace has no kernel to tell
        dev.netns.kernel.netdev_chain.call(event, dev, **info)


# include/uapi/linux/netdevice.h: how a device's name was given (name_assign_type)
NET_NAME_UNKNOWN, NET_NAME_ENUM, NET_NAME_PREDICTABLE, NET_NAME_USER, NET_NAME_RENAMED = range(5)


class NetDevice:
    """``struct net_device``: every field the model keeps on a device is declared here
    (``__slots__``), with its default; a driver keeps its own state in ``priv``
    (``netdev_priv``), a bond's is ``bond``."""
    __slots__ = (
        "ifindex", "name", "kind", "netns", "flags", "mtu", "min_mtu", "max_mtu", "address",
        "broadcast", "type", "txqlen", "carrier", "master", "driver", "bus_info", "features",
        "xfrmdev_ops", "priv", "addresses", "ever_up", "promiscuity", "allmulti",
        "carrier_changes", "carrier_up_count", "carrier_down_count", "num_tx_queues",
        "num_rx_queues", "tso_max_size", "peer", "rtnl_kind", "rtnl_link_ops", "addr_random",
        "ifalias", "stats64", "nic", "options", "mac_set", "mtu_set", "linkwatch_pending",
        "defer_peer_carrier", "fix_features_hook", "set_features_hook", "notifier_ctx",
        "bond", "perm_hwaddr", "original_mtu", "bond_queue_id", "bond_prio", "nsim", "xfrmi", "bridge_id", "br_port_no",
        "br_port_cost", "brport", "ip_devconf", "mc_solicit", "oper_nocarrier", "uc_list",
        "group", "gro_flush_timeout", "napi_defer_hard_irqs", "name_assign_type")

    ifindex: int
    name: str
    kind: str
    netns: "NetNamespace | None"
    flags: int                      # IFF_* as set (dev_get_flags adds RUNNING/LOWER_UP/…)
    mtu: int
    min_mtu: int
    max_mtu: int
    address: bytes
    broadcast: bytes
    type: int                       # ARPHRD_*
    txqlen: int
    carrier: bool
    oper_nocarrier: "int | None"    # the operstate linkwatch worked out without carrier
    uc_list: "list[bytes]"          # dev->uc: unicast addresses added (`bridge fdb … self`)
    master: "NetDevice | None"
    driver: str
    bus_info: str
    features: NetdevFeatures | None
    xfrmdev_ops: "XfrmDevOps | None"    # the driver's offload ops, if it has any
    priv: Any                       # netdev_priv: the driver's own state
    addresses: list[Any]            # xfrmd.rtnl.addr.IfAddr
    ever_up: bool                   # qdisc noop until the first open, then noqueue/mq
    promiscuity: int
    allmulti: int
    carrier_changes: int            # IFLA_CARRIER_CHANGES = up count + down count
    carrier_up_count: int
    carrier_down_count: int
    num_tx_queues: int
    num_rx_queues: int
    tso_max_size: int
    peer: "NetDevice | None"        # veth: the other end (IFLA_LINK)
    rtnl_kind: str | None           # the link kind when created through RTM_NEWLINK
    rtnl_link_ops: Any              # struct rtnl_link_ops of that kind
    addr_random: bool               # NET_ADDR_RANDOM: a bond takes its first slave's MAC
    ifalias: str                    # IFLA_IFALIAS ("" = none)
    stats64: tuple[int, ...] | None     # rtnl_link_stats64 (None: all zero)
    nic: str                        # the topology's NIC name of a hardware port
    options: dict[str, Any] | None  # the topology file's settings of the device
    mac_set: bool                   # an address was set by the user (a bridge keeps it)
    mtu_set: bool                   # an MTU was set by the user (a bridge keeps it)
    linkwatch_pending: bool         # carrier on, linkwatch not run yet (operstate still down)
    defer_peer_carrier: bool        # veth moving namespaces: the peer's carrier waits
    fix_features_hook: FixFeatures | None   # ndo_fix_features
    set_features_hook: SetFeatures | None   # ndo_set_features (errno; 0 = accepted)
    notifier_ctx: bool              # bond->notifier_ctx: its own features change is running
    bond: Any                       # netdev_priv of a bond (bonding.bond.Bond)
    perm_hwaddr: bytes | None       # a bond slave's own address, restored on release
    original_mtu: int | None        # a bond slave's own MTU, restored on release
    bond_queue_id: int              # a bond slave's slave->queue_id (IFLA_BOND_SLAVE_QUEUE_ID)
    bond_prio: int                  # a bond slave's slave->prio (IFLA_BOND_SLAVE_PRIO)
    nsim: tuple[int, int] | None    # netdevsim (device id, port index)
    xfrmi: Any                      # an xfrm interface's parameters (xfrmd.rtnl.xfrmi)
    bridge_id: bytes                # a bridge's br->bridge_id address part
    br_port_no: int                 # a bridge port's number (0: not made by br_add_if)
    br_port_cost: int               # a bridge port's path cost
    brport: dict[int, int] | None   # a bridge port's flags, priority, multicast router
    ip_devconf: dict[str, dict[str, Any]] | None    # /proc/sys/net/ipv{4,6}/conf/<dev>
    mc_solicit: list[bytes]         # IPv6 solicited-node groups joined (addrconf_join_solict)

    def __init__(self, name: str, kind: str, *, mtu: int = 1500, address: bytes = bytes(6),
                 driver: str = "", bus_info: str = "", flags: int = IFF_BROADCAST | IFF_MULTICAST,
                 type: int = ARPHRD_ETHER, txqlen: int = 1000):
        self.ifindex = 0
        self.name = name
        self.kind = kind
        self.netns = None
        self.flags = flags
        self.mtu = mtu
        self.min_mtu, self.max_mtu = (68, 65535) if kind != "loopback" else (0, 0)
        self.address = address
        self.broadcast = b"\xff" * 6 if type == ARPHRD_ETHER else bytes(6)
        self.type = type
        self.txqlen = txqlen
        self.carrier = True
        self.master = None
        self.driver = driver or kind
        self.bus_info = bus_info
        self.features = None
        self.xfrmdev_ops = None
        self.priv = None
        self.addresses = []
        self.ever_up = False
        self.promiscuity = 0
        self.allmulti = 0
        self.carrier_changes = 0
        self.carrier_up_count = 0
        self.carrier_down_count = 0
        self.num_tx_queues = self.num_rx_queues = 1
        self.tso_max_size = 524280
        self.peer = None
        self.oper_nocarrier = None       # default_operstate without carrier, as kept
        self.uc_list = []                 # secondary unicast addresses (dev_uc_add)
        self.rtnl_kind = None
        self.rtnl_link_ops = None
        self.addr_random = False
        self.ifalias = ""
        self.group = 0                    # IFLA_GROUP (dev_set_group)
        self.gro_flush_timeout = 0        # net-sysfs gro_flush_timeout (ns)
        self.napi_defer_hard_irqs = 0
        # NET_NAME_*: how the name came (alloc_netdev's argument; an "eth%d" driver ENUM)
        self.name_assign_type = NET_NAME_ENUM
        self.stats64 = None
        self.nic = ""
        self.options = None
        self.mac_set = False
        self.mtu_set = False
        self.linkwatch_pending = False
        self.defer_peer_carrier = False
        self.fix_features_hook = None
        self.set_features_hook = None
        self.notifier_ctx = False
        self.bond = None
        self.perm_hwaddr = None
        self.original_mtu = None
        self.bond_queue_id = 0
        self.bond_prio = 0
        self.nsim = None
        self.xfrmi = None
        self.bridge_id = bytes(6)
        self.br_port_no = 0
        self.br_port_cost = 100
        self.brport = None
        self.ip_devconf = None
        self.mc_solicit = []

    @property
    def up(self) -> bool:
        return bool(self.flags & IFF_UP)

    @property
    def operstate(self) -> int:
        """RFC 2863 state as the kernel reports it: loopback UNKNOWN when up."""
        if not self.up:
            return IF_OPER_DOWN
        if self.linkwatch_pending:
            # opened with the carrier just on: linkwatch has not run yet, the operstate is
            # still the one of a carrier-less veth (rtnl_fill_ifinfo reads dev->operstate)
            return self._kept_operstate()
        if self.kind in ("loopback", "vxlan") or self.kind == "dummy" and not self.carrier_changes:
            return IF_OPER_UNKNOWN          # never a carrier event (a dummy's: sysfs carrier)
        if self.carrier:
            return IF_OPER_UP
        return self._kept_operstate()

    def _kept_operstate(self) -> int:
        if self.oper_nocarrier is None:      # linkwatch's run after the carrier went off
            self.linkwatch_operstate()
        assert self.oper_nocarrier is not None
        return self.oper_nocarrier

    def linkwatch_operstate(self) -> None:
        """``linkwatch_do_dev`` → ``rfc2863_policy``: the operstate is worked out when
        linkwatch handles a carrier event and kept until the next one (a veth's peer moving
        to another namespace does not change it)."""
        self.oper_nocarrier = self._no_carrier_operstate()

    def _no_carrier_operstate(self) -> int:
        """``default_operstate`` without carrier: LOWERLAYERDOWN for a device stacked on
        another (a veth's iflink is its peer's index) when a device of that index exists in
        this device's own namespace — for a peer in another namespace that is usually not
        the case (or the index is this device's own), and the state is DOWN."""
        if self.kind == "vlan":              # stacked on a device of its own namespace
            return IF_OPER_LOWERLAYERDOWN
        peer = self.peer if self.kind == "veth" else None
        if peer is None or peer.netns is None or peer.ifindex == self.ifindex:
            return IF_OPER_DOWN
        ns = self.netns
        if ns is not None and ns is not peer.netns and ns.links.by_index(peer.ifindex) is None:
            return IF_OPER_DOWN
        return IF_OPER_LOWERLAYERDOWN

    def set_carrier(self, on: bool) -> bool:
        """``netif_carrier_on/off``: True when it changed (and the counters moved)."""
        if self.carrier == on:
            return False
        self.carrier = on
        if not on:
            self.oper_nocarrier = None
        self.carrier_changes += 1
        if on:
            self.carrier_up_count += 1
        else:
            self.carrier_down_count += 1
        return True

    def dev_flags(self) -> int:
        """``dev_get_flags``: RUNNING and LOWER_UP follow carrier while up."""
        f = self.flags
        if self.kind == "bond":                 # bond_setup: IFF_MASTER; bond_enslave: IFF_SLAVE
            f |= IFF_MASTER
        if self.master is not None and self.master.kind == "bond":
            f |= IFF_SLAVE
        if self.up and (self.carrier or self.kind == "loopback"):
            f |= IFF_RUNNING | IFF_LOWER_UP
            if self.linkwatch_pending:
                f &= ~IFF_RUNNING               # netif_oper_up() is false until linkwatch
        return f

    def call_netdevice_notifiers(self, event: str, **info: Any) -> None:
        """:func:`call_netdevice_notifiers` for this device (for the feature code, which
        sits below this module)."""
        call_netdevice_notifiers(event, self, **info)

    def __repr__(self) -> str:
        return f"<{self.kind} {self.name} #{self.ifindex}>"


class LinkTable:
    """One namespace's devices; ifindexes are handed out as ``dev_new_index`` does (the next
    number after the last one given out in this namespace)."""

    def __init__(self, ns: "NetNamespace"):
        self.ns = ns
        self._by_index: dict[int, NetDevice] = {}
        self._by_name: dict[str, NetDevice] = {}
        self.last_index = 0

    def __iter__(self) -> Iterator[NetDevice]:
        return iter(sorted(self._by_index.values(), key=lambda d: d.ifindex))

    def __len__(self) -> int:
        return len(self._by_index)

    def by_index(self, ifindex: int) -> NetDevice | None:
        return self._by_index.get(ifindex)

    def by_name(self, name: str) -> NetDevice | None:
        return self._by_name.get(name)

    def register(self, dev: NetDevice, ifindex: int = 0, *, reserve: bool = False) -> NetDevice:
        """``register_netdevice``. ``reserve``: the given index is taken as
        ``dev_index_reserve`` takes a chosen one (xa_insert), without moving the cyclic
        counter later devices are numbered from (a device moved in from another namespace)."""
        if dev.name in self._by_name:
            raise ValueError(f"device {dev.name!r} exists")
        if not ifindex:
            ifindex = self.last_index + 1
            while ifindex in self._by_index:
                ifindex += 1
        dev.ifindex = ifindex
        if not reserve:
            self.last_index = max(self.last_index, ifindex)
        dev.netns = self.ns
        self._by_index[ifindex] = dev
        self._by_name[dev.name] = dev
        call_netdevice_notifiers("NETDEV_REGISTER", dev)
        return dev

    def unregister(self, dev: NetDevice) -> None:
        call_netdevice_notifiers("NETDEV_UNREGISTER", dev)
        self._by_index.pop(dev.ifindex, None)
        self._by_name.pop(dev.name, None)

    def rename(self, dev: NetDevice, name: str) -> None:
        del self._by_name[dev.name]
        dev.name = name
        self._by_name[name] = dev
        call_netdevice_notifiers("NETDEV_CHANGENAME", dev)


def loopback() -> NetDevice:
    dev = NetDevice("lo", "loopback", mtu=65536, flags=IFF_LOOPBACK, type=ARPHRD_LOOPBACK,
                    driver="")
    dev.features = NetdevFeatures(kind="loopback")
    dev.name_assign_type = NET_NAME_PREDICTABLE       # loopback_net_init
    return dev
