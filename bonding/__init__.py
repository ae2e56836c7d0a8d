"""The bonding driver (drivers/net/bonding/) and the LAG IPsec offload models."""
from __future__ import annotations

from typing import TYPE_CHECKING

from xfrmd.notifier import NETDEV_PRI_BOND

from . import services as bond_services
from .bond import bond_netdev_event
from .rtnl import BOND_LINK_OPS

if TYPE_CHECKING:
    from xfrmd.kernel import Kernel


def init(kernel: Kernel) -> None:
    """``bonding_init``: the bond link kind, its netdevice notifier, service ops and files."""
    kernel.rtnl_link_register(BOND_LINK_OPS)
    kernel.netdev_chain.register(bond_netdev_event, NETDEV_PRI_BOND)
    bond_services.register(kernel)
