"""802.1Q / 802.1ad VLAN devices (net/8021q, link kind ``vlan``): ``ip link add link LOWER
name NAME type vlan id N [protocol 802.1ad]`` validated as ``vlan_validate`` /
``vlan_newlink`` / ``vlan_check_real_dev`` do (with their extack), the device
``vlan_dev_init`` makes of its lower one (its MAC, broadcast and multicast flags, MTU and TSO
limit; IFLA_LINK names the lower device), ``vlan_fill_info``'s attributes (protocol, id,
flags: ``ip -d link`` prints ``vlan protocol 802.1Q id N <REORDER_HDR>``), and
``vlan_device_event``: the lower device's carrier and operstate are the VLAN device's
(``vlan_stacked_transfer_operstate``), its going down closes it, its unregistration takes it
along. Nothing is tagged: no packet goes through a VLAN device here; QoS maps and changes
(``vlan_changelink``) are EOPNOTSUPP ``xfrmd: …``."""
from __future__ import annotations

import errno as E
import struct
from dataclasses import dataclass
from typing import Any

from devices.netdev import IFF_UP, NetDevice
from netlink_codec.netlink import kernel_attrs, nla

from ..errors import KernelError
from .link import (IFLA_LINK, NewLink, RtnlLinkOps, dev_close, register_netdevice, rtmsg_ifinfo,
                   unregister_many)

IFLA_VLAN_ID, IFLA_VLAN_FLAGS, IFLA_VLAN_EGRESS_QOS, IFLA_VLAN_INGRESS_QOS = 1, 2, 3, 4
IFLA_VLAN_PROTOCOL = 5
ETH_P_8021Q, ETH_P_8021AD = 0x8100, 0x88A8
VLAN_VID_MASK = 0x0FFF
VLAN_FLAG_REORDER_HDR, VLAN_FLAG_GVRP, VLAN_FLAG_LOOSE_BINDING = 0x1, 0x2, 0x4
VLAN_FLAG_MVRP, VLAN_FLAG_BRIDGE_BINDING = 0x8, 0x10
IFF_PROMISC, IFF_ALLMULTI, IFF_MASTER, IFF_SLAVE = 0x100, 0x200, 0x400, 0x800
ETH_MAX_MTU = 0xFFFF


@dataclass
class VlanDev:
    """``struct vlan_dev_priv``."""
    proto: int
    vid: int
    real_dev: NetDevice
    flags: int = VLAN_FLAG_REORDER_HDR


def vlan_setup(dev: NetDevice) -> None:
    """``vlan_setup``: an Ethernet device without a queue, any MTU up to 65535."""
    dev.min_mtu, dev.max_mtu = 0, ETH_MAX_MTU


def _data(nl: NewLink) -> dict[int, bytes]:
    if nl.data is None:
        raise KernelError(E.EINVAL, "8021q: VLAN properties not specified")
    return {ra.type & 0x3FFF: bytes(nl.m.buf[ra.start:ra.end])
            for ra in kernel_attrs(nl.m.buf, nl.data.start, nl.data.end)[0]}


def vlan_newlink(nl: NewLink) -> None:
    """``vlan_validate`` then ``vlan_newlink`` / ``register_vlan_dev``."""
    tb, dev, m = _data(nl), nl.dev, nl.m
    proto, vid = ETH_P_8021Q, 0
    if IFLA_VLAN_PROTOCOL in tb:
        proto = int.from_bytes(tb[IFLA_VLAN_PROTOCOL][:2], "big")
        if proto not in (ETH_P_8021Q, ETH_P_8021AD):
            raise KernelError(E.EPROTONOSUPPORT, "8021q: Invalid VLAN protocol")
    if IFLA_VLAN_ID in tb:
        vid = struct.unpack_from("=H", tb[IFLA_VLAN_ID].ljust(2, b"\0"))[0]
        if vid >= VLAN_VID_MASK:
            raise KernelError(E.ERANGE, "8021q: Invalid VLAN id")
    flags = VLAN_FLAG_REORDER_HDR
    if IFLA_VLAN_FLAGS in tb:
        fl, mask = struct.unpack_from("=II", tb[IFLA_VLAN_FLAGS].ljust(8, b"\0"))
        if fl & mask & ~(VLAN_FLAG_REORDER_HDR | VLAN_FLAG_GVRP | VLAN_FLAG_LOOSE_BINDING
                         | VLAN_FLAG_MVRP | VLAN_FLAG_BRIDGE_BINDING):
            raise KernelError(E.EINVAL, "8021q: Invalid VLAN flags")
        if fl & mask & ~VLAN_FLAG_REORDER_HDR:
            raise KernelError(E.EOPNOTSUPP, "xfrmd: VLAN flags other than reorder_hdr are not "
                              "modelled")
        flags = (flags & ~mask) | (fl & mask)
    if IFLA_VLAN_EGRESS_QOS in tb or IFLA_VLAN_INGRESS_QOS in tb:
        raise KernelError(E.EOPNOTSUPP, "xfrmd: VLAN QoS maps are not modelled")
    if IFLA_VLAN_ID not in tb:
        raise KernelError(E.EINVAL, "8021q: VLAN id not specified")
    if IFLA_LINK not in m.tb:
        raise KernelError(E.EINVAL, "8021q: link not specified")
    real = nl.net.links.by_index(m.u32(IFLA_LINK))
    if real is None:
        raise KernelError(E.ENODEV, "8021q: link does not exist")
    if real.kind == "loopback":                        # NETIF_F_VLAN_CHALLENGED
        raise KernelError(E.EOPNOTSUPP, "8021q: VLANs not supported on device")
    if any(isinstance(d.priv, VlanDev) and d.priv.real_dev is real and d.priv.proto == proto
           and d.priv.vid == vid for d in nl.net.links):
        raise KernelError(E.EEXIST, "8021q: VLAN device already exists")
    if not getattr(dev, "mtu_set", False):
        dev.mtu = real.mtu
    elif dev.mtu > real.mtu:
        raise KernelError(E.EINVAL)
    # vlan_dev_init: the lower device's address (unless one was given), broadcast address,
    # flags but IFF_UP/PROMISC/ALLMULTI/MASTER/SLAVE, TSO limit; stacked: no carrier until
    # the lower device's is transferred
    if not getattr(dev, "mac_set", False):
        dev.address = bytes(real.address)
        dev.addr_random = False
    dev.broadcast = bytes(real.broadcast)
    dev.flags = real.flags & ~(IFF_UP | IFF_PROMISC | IFF_ALLMULTI | IFF_MASTER | IFF_SLAVE)
    dev.tso_max_size = real.tso_max_size
    dev.set_carrier(bool(real.carrier))
    dev.priv = VlanDev(proto, vid, real, flags)
    register_netdevice(nl.net.links, dev, m.index)


def vlan_fill_info(dev: NetDevice, cap_net_admin: bool = True) -> bytes:
    v: VlanDev = dev.priv
    body = nla(IFLA_VLAN_PROTOCOL, v.proto.to_bytes(2, "big"))
    body += nla(IFLA_VLAN_ID, struct.pack("=H", v.vid))
    if v.flags:
        body += nla(IFLA_VLAN_FLAGS, struct.pack("=II", v.flags, 0xFFFFFFFF))
    return body


def vlan_get_iflink(dev: NetDevice) -> int | None:
    """``vlan_dev_get_iflink``: the lower device's index."""
    v: VlanDev = dev.priv
    return v.real_dev.ifindex


def vlan_dev_open(dev: NetDevice) -> list[NetDevice]:
    """``vlan_dev_open``: refused while the lower device is down (no loose binding)."""
    v: VlanDev = dev.priv
    if not v.real_dev.up:
        dev.flags &= ~IFF_UP
        raise KernelError(E.ENETDOWN)
    return []


def _vlans_of(real: NetDevice) -> list[NetDevice]:
    ns = real.netns
    return [d for d in (ns.links if ns is not None else ())
            if isinstance(d.priv, VlanDev) and d.priv.real_dev is real]


def vlan_device_event(event: str, dev: Any, **info: Any) -> None:
    """``vlan_device_event`` for a device with VLANs on it: a carrier change reaches them
    (``vlan_stacked_transfer_operstate``), going down closes them, going away takes them."""
    if not isinstance(dev, NetDevice) or dev.netns is None:
        return
    vlans = _vlans_of(dev)
    if not vlans:
        return
    if event in ("NETDEV_CHANGE", "NETDEV_UP"):
        for v in vlans:
            if v.set_carrier(bool(dev.carrier)):
                rtmsg_ifinfo(v)
    elif event == "NETDEV_DOWN":
        for v in vlans:
            dev_close(v)
    elif event == "NETDEV_UNREGISTER":
        unregister_many(vlans)


VLAN_LINK_OPS = RtnlLinkOps(kind="vlan", driver="802.1Q VLAN Support", setup=vlan_setup,
                            newlink=vlan_newlink, fill_info=vlan_fill_info,
                            get_iflink=vlan_get_iflink, open=vlan_dev_open)
