"""The XFRM subsystem: xfrm_user (netlink), the SAD and SPD, lifetimes and events."""
from __future__ import annotations

from typing import TYPE_CHECKING

from ..notifier import NETDEV_PRI_XFRM_DEV
from .globals import KEY, XfrmGlobals
from .offload import xfrm_dev_event
from .services import SERVICES
from .user import XfrmUser

if TYPE_CHECKING:
    from ..kernel import Kernel


def init(kernel: Kernel) -> None:
    """``xfrm_init`` + ``xfrm_user_init``: the NETLINK_XFRM family (whose ``init_net`` makes
    each namespace's SAD and SPD), ``xfrm_dev_init`` (the netdevice notifier that flushes
    what a device going down had offloaded) and the subsystem's service ops."""
    kernel.drivers[KEY] = XfrmGlobals()
    kernel.netlink_kernel_create(XfrmUser(kernel))
    kernel.netdev_chain.register(xfrm_dev_event, NETDEV_PRI_XFRM_DEV)
    kernel.services.update(SERVICES)
