"""Notifier chains (include/linux/notifier.h): a kernel-owned list of callbacks called in
order of priority, highest first; callbacks of equal priority run in registration order,
which the kernel's explicit start-up (xfrmd/initcalls.py) makes fixed.

Chains of a kernel: ``netdev_chain`` (``register_netdevice_notifier``: NETDEV_* events
with the device), ``inetaddr_chain`` (``register_inetaddr_notifier``: NETDEV_UP/DOWN with
an IPv4 or IPv6 address, ``inet6addr_chain`` folded in)."""
from __future__ import annotations

from typing import Any, Callable

NotifierFn = Callable[..., Any]

# Netdevice notifier priorities: the kernel registers most at 0 and relies on init order;
# these keep the order the model's behaviour was built and tested with (the FIB and the
# neighbour table react before the bond recomputes its features, ethtool notifications
# come after both, the drivers' own callbacks last).
NETDEV_PRI_XFRM_DEV = 50        # xfrm_dev_notifier: flush offloaded states of a device
NETDEV_PRI_NEIGH = 40           # neigh_netdev_notifier
NETDEV_PRI_PROCFS = 30          # /proc/net/dev, /proc/sys/net/*/conf/<dev>
NETDEV_PRI_FIB = 20             # fib_netdev_notifier / fib6 (routes, addresses)
NETDEV_PRI_BOND_FEATURES = 10   # a bond recomputes its features from its slaves
NETDEV_PRI_ETHTOOL = 0          # ethnl_netdev_notifier
NETDEV_PRI_BOND = -10           # bond_netdev_notifier
NETDEV_PRI_DRIVER = -20         # a driver's own callback (airoha SOE)


class NotifierChain:
    """``struct raw_notifier_head``: ``call(event, obj, **info)`` runs every callback."""
    __slots__ = ("name", "_entries", "_seq")

    def __init__(self, name: str):
        self.name = name
        self._entries: list[tuple[int, int, NotifierFn]] = []
        self._seq = 0

    def register(self, fn: NotifierFn, priority: int = 0) -> None:
        """``notifier_chain_register``: registering the same callback twice is a no-op."""
        if any(f is fn for _, _, f in self._entries):
            return
        self._seq += 1
        self._entries.append((-priority, self._seq, fn))
        self._entries.sort(key=lambda e: (e[0], e[1]))

    def unregister(self, fn: NotifierFn) -> None:
        self._entries = [e for e in self._entries if e[2] is not fn]

    def call(self, event: str, obj: Any, **info: Any) -> None:
        """``raw_notifier_call_chain``: every callback, in order (a callback registered
        while the chain runs takes effect from the next event)."""
        for _, _, fn in list(self._entries):
            fn(event, obj, **info)

    def __iter__(self):
        return (fn for _, _, fn in self._entries)

    def __len__(self) -> int:
        return len(self._entries)
