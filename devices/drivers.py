"""The drivers' module_init (:func:`init`, one of xfrmd/initcalls.py's init calls): the
notifier callbacks, service ops and virtual files the emulated drivers register with the
kernel. Kept out of the package init, which the net core's importers load."""
from __future__ import annotations

from typing import TYPE_CHECKING

from xfrmd.notifier import NETDEV_PRI_BOND_FEATURES, NETDEV_PRI_DRIVER

from . import airoha_soe, features, services

if TYPE_CHECKING:
    from xfrmd.kernel import Kernel


def init(kernel: "Kernel") -> None:
    """The drivers' module_init calls, in link order: the bond's features recomputation and
    the Airoha SOE's flush on the netdevice chain, netdevsim's sysfs/debugfs files, the
    offload service ops."""
    kernel.netdev_chain.register(features.bond_features_netdev_event, NETDEV_PRI_BOND_FEATURES)
    kernel.netdev_chain.register(airoha_soe.soe_netdev_event, NETDEV_PRI_DRIVER)
    for pattern, lister in services.DIRS:
        kernel.vfs.register_dir(pattern, lister)
    for pattern, read, write in services.FILES:
        kernel.vfs.register(pattern, read, write, services.MODES.get(pattern))
    kernel.services.update(services.SERVICES)
