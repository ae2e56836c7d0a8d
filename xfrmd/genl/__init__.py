"""NETLINK_GENERIC (net/netlink/genetlink.c): a registry of families by id, ``genl_rcv_msg``
(family lookup, header length, command lookup, permissions, do/dump) and the nlctrl
family that resolves names to ids (``core.py``). Families: nlctrl (``ctrl.py``),
ethtool (``ethtool.py``, with its SIOCETHTOOL ioctl in xfrmd/rtnl/ethtool.py) and wireguard
(``wireguard.py``: the family without the link kind). A family is
a :class:`GenlFamily` declaration: name, id, version, operations with their flags,
multicast groups."""
from __future__ import annotations

from typing import TYPE_CHECKING

from ..ioctl import SIOCETHTOOL
from ..notifier import NETDEV_PRI_ETHTOOL
from ..rtnl.ethtool import siocethtool
from . import ctrl, ethtool, services, wireguard
from .core import FamilyMaker, Genetlink, GenlFamily, GenlOp, GenlRequest

if TYPE_CHECKING:
    from ..kernel import Kernel

__all__ = ["Genetlink", "GenlFamily", "GenlOp", "GenlRequest", "init"]

# genl_init's families, in registration order (nlctrl first)
FAMILIES: tuple[FamilyMaker, ...] = (ctrl.family, ethtool.family, wireguard.family)


def init(kernel: "Kernel") -> None:
    """``genl_init`` and ``ethnl_init``: the NETLINK_GENERIC family with nlctrl and ethtool,
    ethtool's netdevice notifier (FEATURES_NTF), its ioctl (SIOCETHTOOL) and the
    genetlink service op."""
    kernel.netlink_kernel_create(Genetlink(kernel, FAMILIES))
    kernel.netdev_chain.register(ethtool.ethnl_netdev_event, NETDEV_PRI_ETHTOOL)
    kernel.ioctls[SIOCETHTOOL] = siocethtool
    kernel.services.update(services.SERVICES)
