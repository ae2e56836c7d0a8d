"""The link side of rtnetlink's start-up: the link kinds rtnetlink provides itself (dummy,
veth, bridge, xfrm, vxlan, vlan; ``rtnl_link_register`` in each driver's module_init), the handler
rows of links, PF_BRIDGE ports and namespace ids, and ``rtnetlink_event`` on the
netdevice chain (``rtnetlink_dev_notifier``). Other packages register their own kinds
(bonding: the bond)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from .br_netlink import BRIDGE_LINK_OPS
from .bridge import RTNL_MSG_HANDLERS as BRIDGE_MSG_HANDLERS
from .link import DUMMY_LINK_OPS, RTNL_MSG_HANDLERS as LINK_MSG_HANDLERS, VETH_LINK_OPS
from .link import rtnetlink_event
from .netns import RTNL_MSG_HANDLERS as NETNS_MSG_HANDLERS
from .vlan import VLAN_LINK_OPS, vlan_device_event
from .vxlan import VXLAN_LINK_OPS
from .xfrmi import XFRMI_LINK_OPS

if TYPE_CHECKING:
    from ..kernel import Kernel

LINK_KINDS = (DUMMY_LINK_OPS, VETH_LINK_OPS, BRIDGE_LINK_OPS, XFRMI_LINK_OPS, VXLAN_LINK_OPS,
              VLAN_LINK_OPS)
RTNL_MSG_HANDLERS = LINK_MSG_HANDLERS + BRIDGE_MSG_HANDLERS + NETNS_MSG_HANDLERS


def links_init(kernel: Kernel) -> None:
    """The link kinds, then rtnetlink's netdevice notifier (priority 0, as the kernel's)."""
    for ops in LINK_KINDS:
        kernel.rtnl_link_register(ops)
    kernel.netdev_chain.register(rtnetlink_event)
    kernel.netdev_chain.register(vlan_device_event)     # vlan_notifier_block
