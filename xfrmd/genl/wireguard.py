"""The wireguard generic-netlink family (drivers/net/wireguard/netlink.c) without the
wireguard link kind: the family resolves (``genl_ctrl`` finds "wireguard", as on a kernel
with CONFIG_WIREGUARD, whose module is autoloaded by the family lookup) and its two
commands look the device up as ``lookup_interface`` does. No device is ever of kind
wireguard here (``ip link add … type wireguard`` is "Unknown device type"), so a request
naming an existing device is EOPNOTSUPP, as Linux answers for a device of another kind.

Clients that open a WireGuard socket at start-up (pyroute2's test fixtures) work; anything
that configures a wireguard device fails there, with the kernel's error."""
from __future__ import annotations

import errno as E
import struct
from typing import TYPE_CHECKING, Any

from netlink_codec.genl import GENL_UNS_ADMIN_PERM

from ..errors import KernelError
from .core import GenlFamily, GenlOp, GenlRequest

if TYPE_CHECKING:
    from devices.netdev import NetDevice

    from ..kernel import Kernel
    from .core import Genetlink

WG_GENL_NAME = "wireguard"
WG_GENL_VERSION = 1
WG_CMD_GET_DEVICE = 0
WG_CMD_SET_DEVICE = 1
WGDEVICE_A_IFINDEX = 1
WGDEVICE_A_IFNAME = 2
WGDEVICE_A_MAX = 8                 # WGDEVICE_A_PEERS
WG_GENL_ID = 22                    # the next dynamic id after ethtool's (genl_register_family)
IFNAMSIZ = 16


def lookup_interface(info: GenlRequest) -> "NetDevice":
    """``lookup_interface``: by WGDEVICE_A_IFINDEX or WGDEVICE_A_IFNAME (neither or both is
    EBADR), no such device ENODEV, a device of another kind EOPNOTSUPP."""
    buf = info.req.buf
    links = info.req.netns.links
    idx = info.attrs.get(WGDEVICE_A_IFINDEX)
    name = info.attrs.get(WGDEVICE_A_IFNAME)
    if idx is not None and idx.end - idx.start != 4:
        # device_policy's NLA_U32, checked strictly by genetlink before the op runs
        raise KernelError(E.EINVAL, "invalid attribute length", offset=info.offset_of(idx))
    if (idx is None) == (name is None):
        raise KernelError(E.EBADR)
    if idx is not None:
        dev = links.by_index(struct.unpack_from("=I", buf, idx.start)[0])
    else:
        assert name is not None
        raw = bytes(buf[name.start:name.end]).split(b"\0", 1)[0][:IFNAMSIZ - 1]
        dev = links.by_name(raw.decode("utf-8", "replace"))
    if dev is None:
        raise KernelError(E.ENODEV)
    # dev->rtnl_link_ops != &link_ops: the wireguard link kind is not modelled, so every
    # device is of another kind
    raise KernelError(E.EOPNOTSUPP)


def family(kernel: "Kernel", genl: "Genetlink") -> GenlFamily:
    def get_device_start(info: GenlRequest) -> Any:
        """``wg_get_device_start`` (the dump's start) → ``lookup_interface``."""
        return lookup_interface(info)

    def set_device(info: GenlRequest) -> Any:
        """``wg_set_device`` → ``lookup_interface``."""
        return lookup_interface(info)

    return GenlFamily(WG_GENL_NAME, WG_GENL_ID, WG_GENL_VERSION, maxattr=WGDEVICE_A_MAX,
                      ops={WG_CMD_GET_DEVICE: GenlOp(WG_CMD_GET_DEVICE, None, get_device_start,
                                                     flags=GENL_UNS_ADMIN_PERM),
                           WG_CMD_SET_DEVICE: GenlOp(WG_CMD_SET_DEVICE, set_device,
                                                     flags=GENL_UNS_ADMIN_PERM)})
