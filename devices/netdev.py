"""Net devices (``struct net_device``) and each namespace's link table.

The interface the other subsystems use (agreed in the team briefs): ``ns.links`` is a
:class:`LinkTable` (``by_index``, ``by_name``, iteration in ifindex order); a
:class:`NetDevice` carries index, name, kind, flags, MTU, MAC, operstate/carrier, master,
driver facts, ``features`` and ``xfrmdev_ops``; :func:`register_netdevice_notifier` tells
subsystems about NETDEV_* events."""
from __future__ import annotations

from typing import Callable

IFF_UP, IFF_BROADCAST, IFF_LOOPBACK, IFF_POINTOPOINT = 0x1, 0x2, 0x8, 0x10
IFF_RUNNING, IFF_NOARP, IFF_MULTICAST = 0x40, 0x80, 0x1000
IFF_MASTER, IFF_SLAVE, IFF_LOWER_UP, IFF_DORMANT = 0x400, 0x800, 0x10000, 0x20000
IF_OPER_UNKNOWN, IF_OPER_DOWN, IF_OPER_LOWERLAYERDOWN, IF_OPER_UP = 0, 2, 3, 6
ARPHRD_ETHER, ARPHRD_LOOPBACK = 1, 772

_NOTIFIERS: list[Callable] = []   # transitional: modules not yet on kernel.netdev_chain


def register_netdevice_notifier(fn: Callable) -> None:
    """Transitional (use ``kernel.netdev_chain.register`` in an init call):
    ``fn(event, dev, **info)`` for NETDEV_REGISTER, _UNREGISTER, _UP, _DOWN, _CHANGE
    (carrier), _FEAT_CHANGE, _CHANGEUPPER, _CHANGENAME."""
    if fn not in _NOTIFIERS:
        _NOTIFIERS.append(fn)


def call_netdevice_notifiers(event: str, dev: "NetDevice", **info) -> None:
    """``call_netdevice_notifiers``: the device's kernel's netdevice chain."""
    if dev.netns is not None:
        dev.netns.kernel.netdev_chain.call(event, dev, **info)
    for fn in list(_NOTIFIERS):
        fn(event, dev, **info)


class NetDevice:
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
        self.master: NetDevice | None = None
        self.driver = driver or kind
        self.bus_info = bus_info
        self.features = None          # devices.features.NetdevFeatures when that lands
        self.xfrmdev_ops = None       # the driver's offload ops, if it has any
        self.port = None              # driver-private
        self.addresses: list = []     # xfrmd.rtnl.addr.IfAddr
        self.ever_up = False          # qdisc noop until the first open, then noqueue/mq
        self.promiscuity = 0
        self.allmulti = 0
        self.carrier_changes = 0      # IFLA_CARRIER_CHANGES = up count + down count
        self.carrier_up_count = 0
        self.carrier_down_count = 0
        self.num_tx_queues = self.num_rx_queues = 1
        self.tso_max_size = 524280
        self.peer: NetDevice | None = None   # veth: the other end (IFLA_LINK)
        self.rtnl_kind = None         # rtnl_link_ops kind when created through RTM_NEWLINK
        self.addr_random = False      # NET_ADDR_RANDOM: a bond takes its first slave's MAC

    @property
    def up(self) -> bool:
        return bool(self.flags & IFF_UP)

    @property
    def operstate(self) -> int:
        """RFC 2863 state as the kernel reports it: loopback UNKNOWN when up."""
        if not self.up:
            return IF_OPER_DOWN
        if getattr(self, "linkwatch_pending", False):
            # opened with the carrier just on: linkwatch has not run yet, the operstate is
            # still the one of a carrier-less veth (rtnl_fill_ifinfo reads dev->operstate)
            return IF_OPER_LOWERLAYERDOWN
        if self.kind in ("loopback", "dummy"):     # never report a carrier event
            return IF_OPER_UNKNOWN
        if self.carrier:
            return IF_OPER_UP
        # default_operstate: a device stacked on another (iflink != ifindex) is
        # LOWERLAYERDOWN without carrier
        return IF_OPER_LOWERLAYERDOWN if self.kind == "veth" else IF_OPER_DOWN

    def set_carrier(self, on: bool) -> bool:
        """``netif_carrier_on/off``: True when it changed (and the counters moved)."""
        if self.carrier == on:
            return False
        self.carrier = on
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
        if self.up and (self.carrier or self.kind in ("loopback", "dummy")):
            f |= IFF_RUNNING | IFF_LOWER_UP
            if getattr(self, "linkwatch_pending", False):
                f &= ~IFF_RUNNING               # netif_oper_up() is false until linkwatch
        return f

    def __repr__(self):
        return f"<{self.kind} {self.name} #{self.ifindex}>"


class LinkTable:
    """One namespace's devices; ifindexes are handed out as ``dev_new_index`` does (the next
    number after the last one given out in this namespace)."""

    def __init__(self, ns):
        self.ns = ns
        self._by_index: dict[int, NetDevice] = {}
        self._by_name: dict[str, NetDevice] = {}
        self.last_index = 0

    def __iter__(self):
        return iter(sorted(self._by_index.values(), key=lambda d: d.ifindex))

    def __len__(self):
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
    from .features import NetdevFeatures
    dev = NetDevice("lo", "loopback", mtu=65536, flags=IFF_LOOPBACK, type=ARPHRD_LOOPBACK,
                    driver="")
    dev.features = NetdevFeatures(kind="loopback")
    return dev
