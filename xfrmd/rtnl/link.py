"""Links: RTM_NEWLINK / DELLINK / GETLINK / SETLINK (net/core/rtnetlink.c ``rtnl_newlink``,
``do_setlink``, ``rtnl_dellink``, ``rtnl_getlink``, ``rtnl_dump_ifinfo``, ``rtnl_fill_ifinfo``)
and the RTNLGRP_LINK notifications every change sends.

Each kind that can be created has a :class:`RtnlLinkOps` table registered with
``kernel.rtnl_link_register`` (``rtnl_link_register``) by the package that owns it: dummy and
veth (a pair, also across namespaces: netns.py) here, bridge in br_netlink.py, xfrm
interfaces in xfrmi.py, bond in bonding/. This module looks kinds up in ``kernel.link_ops``
and a device's ``rtnl_link_ops``; it imports no driver."""
from __future__ import annotations

import errno as E
import os
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, cast

from devices.features import NetdevFeatures
from devices.netstats import stats32_bytes, stats64_bytes
from devices.netdev import (IFF_BROADCAST, IFF_MULTICAST, IFF_NOARP, IFF_UP, NET_NAME_ENUM,
                            NET_NAME_RENAMED, NET_NAME_USER, LinkTable,
                            NetDevice, call_netdevice_notifiers)
from netlink_codec.netlink import (NETLINK_ROUTE, NLM_F_MULTI, RawAttr, encode_msg,
                                   kernel_attrs, nla, nla_string, nla_u8, nla_u16, nla_u32)

from .. import kconfig
from ..errors import KernelError
from ..netlink.core import Reply
from ..netlink.nlattr import NlaPolicy, parse_attrs
from .addr import netdev_down, netdev_unregister, netdev_up
from .linkdata import AF_SPEC_ETHER, AF_SPEC_LO

# link.py and netns.py call each other (rtnetlink.c/dev.c and net_namespace.c): a module
# import, resolved at call time
import xfrmd.rtnl.netns as netns  # noqa: E402,I001

if TYPE_CHECKING:
    from ..kernel import Kernel, NetNamespace
    from ..netlink.core import Request

RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK, RTM_SETLINK = 16, 17, 18, 19
IFINFOMSG = struct.Struct("=BxHiII")
(IFLA_ADDRESS, IFLA_BROADCAST, IFLA_IFNAME, IFLA_MTU, IFLA_LINK, IFLA_QDISC, IFLA_STATS,
 IFLA_MASTER, IFLA_PROTINFO, IFLA_TXQLEN, IFLA_MAP, IFLA_OPERSTATE, IFLA_LINKMODE,
 IFLA_LINKINFO, IFLA_NET_NS_PID, IFLA_IFALIAS, IFLA_STATS64, IFLA_AF_SPEC, IFLA_GROUP,
 IFLA_NET_NS_FD, IFLA_EXT_MASK, IFLA_PROMISCUITY, IFLA_NUM_TX_QUEUES, IFLA_NUM_RX_QUEUES,
 IFLA_CARRIER, IFLA_CARRIER_CHANGES, IFLA_PROTO_DOWN, IFLA_GSO_MAX_SEGS, IFLA_GSO_MAX_SIZE,
 IFLA_XDP, IFLA_CARRIER_UP_COUNT, IFLA_CARRIER_DOWN_COUNT, IFLA_MIN_MTU, IFLA_MAX_MTU,
 IFLA_GRO_MAX_SIZE, IFLA_TSO_MAX_SIZE, IFLA_TSO_MAX_SEGS, IFLA_ALLMULTI, IFLA_DEVLINK_PORT,
 IFLA_GSO_IPV4_MAX_SIZE, IFLA_GRO_IPV4_MAX_SIZE, IFLA_DPLL_PIN,
 IFLA_MAX_PACING_OFFLOAD_HORIZON, IFLA_NETNS_IMMUTABLE, IFLA_HEADROOM, IFLA_TAILROOM) = (
    1, 2, 3, 4, 5, 6, 7, 10, 12, 13, 14, 16, 17, 18, 19, 20, 23, 26, 27, 28, 29, 30, 31, 32, 33,
    35, 39, 40, 41, 43, 47, 48, 50, 51, 58, 59, 60, 61, 62, 63, 64, 65, 66, 67, 68, 69)
IFLA_MAX = 69
IFALIASZ = 256
# __dev_change_flags: the flags a request may set directly (UP, PROMISC and ALLMULTI have
# their own paths): IFF_DEBUG, IFF_NOTRAILERS, IFF_NOARP, IFF_DYNAMIC, IFF_MULTICAST,
# IFF_PORTSEL, IFF_AUTOMEDIA
IFF_CHANGEABLE = 0x4 | 0x20 | 0x80 | 0x8000 | 0x1000 | 0x2000 | 0x4000
IFLA_LINK_NETNSID, IFLA_NEW_NETNSID, IFLA_TARGET_NETNSID, IFLA_NEW_IFINDEX = 37, 45, 46, 49
IFLA_INFO_KIND, IFLA_INFO_DATA, IFLA_INFO_SLAVE_KIND, IFLA_INFO_SLAVE_DATA = 1, 2, 4, 5
VETH_INFO_PEER = 1
IFLA_XDP_ATTACHED = 2
NLA_F_NESTED = 0x8000
NLM_F_REPLACE, NLM_F_EXCL, NLM_F_CREATE = 0x100, 0x200, 0x400
RTNLGRP_LINK = 1
# netdevsim registers link ops whose only callback is a validate that refuses every
# RTM_NEWLINK (nsim_validate): its ports come from sysfs (devices/services.py)
NSIM_KIND = "netdevsim"
NSIM_VALIDATE_MSG = ('netdevsim: Please use: echo "[ID] [PORT_COUNT] [NUM_QUEUES]" > '
                     '/sys/bus/netdevsim/new_device')
IFNAMSIZ = 16
MAX_ADDR_LEN = 32

# ifla_policy, the part requests use (rtnetlink.c)
IFLA_POLICY = {
    IFLA_IFNAME: NlaPolicy("string", len=IFNAMSIZ - 1), IFLA_ADDRESS: NlaPolicy("binary"),
    IFLA_BROADCAST: NlaPolicy("binary"), IFLA_MTU: NlaPolicy("u32"),
    IFLA_LINK: NlaPolicy("u32"), IFLA_MASTER: NlaPolicy("u32"),
    IFLA_CARRIER: NlaPolicy("u8"), IFLA_TXQLEN: NlaPolicy("u32"),
    15: NlaPolicy("u32"), IFLA_OPERSTATE: NlaPolicy("u8"),
    IFLA_LINKMODE: NlaPolicy("u8"), IFLA_LINKINFO: NlaPolicy("nested"),
    IFLA_NET_NS_PID: NlaPolicy("u32"), IFLA_NET_NS_FD: NlaPolicy("u32"),
    IFLA_GROUP: NlaPolicy("u32"), IFLA_EXT_MASK: NlaPolicy("u32"),
    IFLA_PROMISCUITY: NlaPolicy("u32"), IFLA_NUM_TX_QUEUES: NlaPolicy("u32"),
    IFLA_NUM_RX_QUEUES: NlaPolicy("u32"), IFLA_PROTO_DOWN: NlaPolicy("u8"),
    IFLA_GSO_MAX_SEGS: NlaPolicy("u32"), IFLA_GSO_MAX_SIZE: NlaPolicy("u32"),
    IFLA_LINK_NETNSID: NlaPolicy("s32"), IFLA_TARGET_NETNSID: NlaPolicy("s32"),
    IFLA_NEW_IFINDEX: NlaPolicy("s32"),
}


# ---------------------------------------------------------------------------------------
# struct rtnl_link_ops


@dataclass(frozen=True, eq=False)
class RtnlLinkOps:
    """``struct rtnl_link_ops`` of a device kind, with the few ``net_device_ops`` this
    module calls for it (``open``/``stop``, ``set_mac_address``, ``uninit``,
    ``add_slave``/``del_slave``) and the port hooks of an upper device. A None callback is
    one the kind does not have; the caller then does what the kernel does without it."""
    kind: str
    driver: str = ""                 # the ethtool driver name (``drvinfo.driver``)
    setup: Callable[[NetDevice], None] | None = None            # ops->setup at alloc
    # the kind's parameters checked before rtnl_create_link applies the common attributes
    validate: Callable[[NetNamespace, NetDevice, Any, RawAttr | None], None] | None = None
    # ops->newlink: registers the device (with register_netdevice below) and what comes
    # with it; None: register_netdevice alone
    newlink: Callable[[NewLink], None] | None = None
    changelink: Callable[[Request, NetDevice, LinkMsg, RawAttr], None] | None = None
    # ops->policy / ops->maxtype: how newlink and changelink parse IFLA_INFO_DATA
    # (LinkMsg.parse_data)
    policy: dict[int, NlaPolicy] | None = None
    maxtype: int = 0
    fill_info: Callable[[NetDevice, bool], bytes | None] | None = None
    slave_kind: str | None = None    # IFLA_INFO_SLAVE_KIND of a lower device
    fill_slave_info: Callable[[NetDevice, NetDevice], bytes | None] | None = None
    # ops->slave_changelink: a lower device's IFLA_INFO_SLAVE_DATA (type → payload)
    slave_changelink: Callable[[NetDevice, NetDevice, dict[int, bytes]], None] | None = None
    add_slave: Callable[[NetDevice, NetDevice], None] | None = None   # ndo_add_slave
    del_slave: Callable[[NetDevice, NetDevice], None] | None = None   # ndo_del_slave
    netns_immutable: bool = False    # dev->netns_immutable (bond_setup, br_dev_setup)
    get_iflink: Callable[[NetDevice], int | None] | None = None       # ndo_get_iflink
    get_link_net: Callable[[NetDevice], Any] | None = None           # ops->get_link_net
    # ndo_open: returns the devices whose carrier came on (linkwatch announces them)
    open: Callable[[NetDevice], list[NetDevice]] | None = None
    stop: Callable[[NetDevice], None] | None = None                   # ndo_stop
    set_mac_address: Callable[[NetDevice, bytes], None] | None = None
    uninit: Callable[[NetDevice], None] | None = None   # ndo_uninit: let the lower devices go
    # an upper device told of a lower device's carrier change (br_port_carrier_check)
    port_carrier_check: Callable[[NetDevice], None] | None = None
    # an upper device told of netdev_state_change's NETDEV_CHANGE on a lower device whose
    # carrier stayed (br_device_event: br_ifinfo_notify)
    port_state_change: Callable[[NetDevice], None] | None = None
    # an upper device told that a lower device went up or down through do_setlink
    lower_updown: Callable[[NetDevice], None] | None = None
    # the device itself went up or down through do_setlink (bond_set_carrier)
    updown: Callable[[NetDevice], None] | None = None


@dataclass
class NewLink:
    """What ``ops->newlink`` gets: the request, the namespace the device is made in, the
    allocated device, the parsed message and its IFLA_INFO_DATA, and ``created``, where it
    appends each device it registered (undone in reverse if a later step fails)."""
    req: Request
    net: NetNamespace
    dev: NetDevice
    m: LinkMsg
    data: RawAttr | None
    created: list[NetDevice]


def link_ops(dev: NetDevice) -> RtnlLinkOps | None:
    """``dev->rtnl_link_ops``: set on devices made through RTM_NEWLINK or a topology."""
    ops: RtnlLinkOps | None = getattr(dev, "rtnl_link_ops", None)
    return ops


def dev_net(dev: NetDevice) -> NetNamespace:
    """``dev_net``: the namespace of a registered device."""
    ns = dev.netns
    assert ns is not None, f"{dev!r} is in no namespace"
    return ns


def netns_immutable(dev: NetDevice) -> bool:
    """``dev->netns_immutable``: lo, and the kinds whose setup sets it."""
    ops = link_ops(dev)
    return dev.kind == "loopback" or (ops is not None and ops.netns_immutable)


def _possible_cpus() -> int:
    """veth_get_num_queues: num_possible_cpus() of the machine."""
    try:
        text = open("/sys/devices/system/cpu/possible").read().strip()
        n = 0
        for part in text.split(","):
            lo, _, hi = part.partition("-")
            n += int(hi or lo) - int(lo) + 1
        return n
    except (OSError, ValueError):
        return os.cpu_count() or 1


VETH_QUEUES = _possible_cpus()


def _qdisc(dev: NetDevice) -> str:
    """The devices with link ops here are IFF_NO_QUEUE (noqueue), as is lo; the hardware
    ports are multiqueue (mq)."""
    if not dev.ever_up and not dev.up:
        return "noop"
    return "mq" if link_ops(dev) is None and dev.kind != "loopback" else "noqueue"


def _af_spec(dev: NetDevice) -> bytes:
    if dev.kind == "loopback":
        return AF_SPEC_LO
    # AF_INET6's IFLA_INET6_CONF[DEVCONF_MTU6] follows the device MTU
    return AF_SPEC_ETHER[:184] + struct.pack("=i", dev.mtu) + AF_SPEC_ETHER[188:]


def _linkinfo(dev: NetDevice, cap_net_admin: bool) -> bytes | None:
    """``rtnl_link_fill``: kind and data of the device's own ops, then its master's slave data."""
    parts = []
    ops = link_ops(dev)
    if ops is not None:
        parts.append(nla_string(IFLA_INFO_KIND, ops.kind))
        data = ops.fill_info(dev, cap_net_admin) if ops.fill_info is not None else None
        if data is not None:
            parts.append(nla(IFLA_INFO_DATA, data))
    master = dev.master
    mops = link_ops(master) if master is not None else None
    if master is not None and mops is not None and mops.fill_slave_info is not None \
            and mops.slave_kind is not None:
        data = mops.fill_slave_info(master, dev)
        if data is not None:
            parts.append(nla_string(IFLA_INFO_SLAVE_KIND, mops.slave_kind))
            parts.append(nla(IFLA_INFO_SLAVE_DATA, data))
    if not parts:
        return None
    return nla(IFLA_LINKINFO, b"".join(parts))


def fill_ifinfo(dev: NetDevice, msg_type: int, seq: int, portid: int, flags: int = 0, *,
                change: int = 0, cap_net_admin: bool = True, new_nsid: int | None = None,
                new_ifindex: int = 0) -> bytes:
    """``rtnl_fill_ifinfo`` with the attributes and order of a 6.18 kernel. ``new_nsid`` /
    ``new_ifindex``: the RTM_DELLINK of a device leaving for another namespace
    (``rtmsg_ifinfo_newnet``)."""
    body = [IFINFOMSG.pack(0, dev.type, dev.ifindex, dev.dev_flags(), change),
            nla_string(IFLA_IFNAME, dev.name), nla_u32(IFLA_TXQLEN, dev.txqlen),
            nla_u8(IFLA_OPERSTATE, dev.operstate), nla_u8(IFLA_LINKMODE, 0),
            nla_u8(IFLA_NETNS_IMMUTABLE, 1 if netns_immutable(dev) else 0),
            nla_u32(IFLA_MTU, dev.mtu), nla_u32(IFLA_MIN_MTU, dev.min_mtu),
            nla_u32(IFLA_MAX_MTU, dev.max_mtu), nla_u32(IFLA_GROUP, dev.group),
            nla_u32(IFLA_PROMISCUITY, dev.promiscuity), nla_u32(IFLA_ALLMULTI, dev.allmulti),
            nla_u32(IFLA_NUM_TX_QUEUES, dev.num_tx_queues), nla_u32(IFLA_GSO_MAX_SEGS, 65535),
            nla_u32(IFLA_GSO_MAX_SIZE, 65536), nla_u32(IFLA_GRO_MAX_SIZE, 65536),
            nla_u32(IFLA_GSO_IPV4_MAX_SIZE, 65536), nla_u32(IFLA_GRO_IPV4_MAX_SIZE, 65536),
            nla_u32(IFLA_TSO_MAX_SIZE, dev.tso_max_size), nla_u32(IFLA_TSO_MAX_SEGS, 65535),
            nla_u32(IFLA_MAX_PACING_OFFLOAD_HORIZON, 0),
            nla_u32(IFLA_NUM_RX_QUEUES, dev.num_rx_queues)]
    if dev.master is not None:
        body.append(nla_u32(IFLA_MASTER, dev.master.ifindex))
    body.append(nla_u8(IFLA_CARRIER, int(dev.carrier)))
    if getattr(dev, "ifalias", ""):                # nla_put_ifalias
        body.append(nla_string(IFLA_IFALIAS, dev.ifalias))
    body += [nla_u32(IFLA_CARRIER_CHANGES, dev.carrier_changes),
             nla_u32(IFLA_CARRIER_UP_COUNT, dev.carrier_up_count),
             nla_u32(IFLA_CARRIER_DOWN_COUNT, dev.carrier_down_count),
             nla_u16(IFLA_HEADROOM, 0), nla_u16(IFLA_TAILROOM, 0),
             nla_u8(IFLA_PROTO_DOWN, 0)]
    if dev.address:                                 # only with an addr_len
        body += [nla(IFLA_ADDRESS, dev.address), nla(IFLA_BROADCAST, dev.broadcast)]
    body += [nla(IFLA_STATS64, stats64_bytes(dev)), nla(IFLA_STATS, stats32_bytes(dev)),
             nla(IFLA_XDP, nla_u8(IFLA_XDP_ATTACHED, 0))]
    li = _linkinfo(dev, cap_net_admin)
    if li is not None:
        body.append(li)
    if new_nsid is not None:
        body.append(nla(IFLA_NEW_NETNSID, struct.pack("=i", new_nsid)))
    if new_ifindex:
        body.append(nla(IFLA_NEW_IFINDEX, struct.pack("=i", new_ifindex)))
    ops = link_ops(dev)
    if ops is not None and ops.get_link_net is not None:
        # rtnl_fill_link_netnsid: the link's namespace when it differs from the device's
        link_net = ops.get_link_net(dev)
        if link_net is not None and dev.netns is not None and link_net is not dev.netns:
            body.append(nla(IFLA_LINK_NETNSID,
                            struct.pack("=i", netns.peernet2id_alloc(dev.netns, link_net))))
    iflink = ops.get_iflink(dev) if ops is not None and ops.get_iflink is not None else None
    if iflink is not None:
        body.append(nla_u32(IFLA_LINK, iflink))     # nla_put_iflink
    body += [nla_string(IFLA_QDISC, _qdisc(dev)), nla(IFLA_AF_SPEC, _af_spec(dev)),
             nla(IFLA_MAP, bytes(32)), nla(IFLA_DEVLINK_PORT | NLA_F_NESTED),
             nla(IFLA_DPLL_PIN | NLA_F_NESTED)]
    return encode_msg(msg_type, flags, seq, portid, b"".join(body))


def rtmsg_ifinfo(dev: NetDevice, msg_type: int = RTM_NEWLINK, change: int = 0, seq: int = 0,
                 portid: int = 0) -> None:
    """``rtmsg_ifinfo``: the link as it is now to RTNLGRP_LINK (seq 0, pid 0 unless a
    request's, as ``rtnl_configure_link`` passes them)."""
    ns = dev.netns
    if ns is None:
        return
    ns.kernel.multicast(ns, NETLINK_ROUTE, RTNLGRP_LINK, fill_ifinfo(dev, msg_type, seq, portid,
                                                                     change=change))


def rtnetlink_event(event: str, dev: NetDevice, **info: Any) -> None:
    """``rtnetlink_event``: the netdevice events rtnetlink announces itself. The model's
    other changes send their RTM_NEWLINK where they happen; a bond's failover
    (NETDEV_BONDING_FAILOVER) reaches rtnetlink only through this notifier."""
    if event == "NETDEV_BONDING_FAILOVER":
        rtmsg_ifinfo(dev)


# ---------------------------------------------------------------------------------------
# GETLINK


def _find(req: Request) -> NetDevice | None:
    """The device a request names: ifi_index, else IFLA_IFNAME."""
    off = req.payload_offset
    if req.hdr.len - 16 < IFINFOMSG.size:
        raise KernelError(E.EINVAL, "Invalid header for link request")
    _, _, ifindex, _, _ = IFINFOMSG.unpack_from(req.buf, off)
    name = None
    for ra in kernel_attrs(req.buf, off + IFINFOMSG.size, req.end)[0]:
        if ra.type == IFLA_IFNAME:
            name = _str(req.buf, ra)
    links: LinkTable = req.netns.links
    if ifindex > 0:
        return links.by_index(ifindex)
    if name:
        return links.by_name(name)
    return None


def _str(buf: Any, ra: RawAttr) -> str:
    return bytes(buf[ra.start:ra.end]).split(b"\0", 1)[0].decode(errors="replace")


def rtnl_getlink(req: Request) -> Reply:
    dev = _find(req)
    if dev is None:
        raise KernelError(E.ENODEV)
    req.unicast(fill_ifinfo(dev, RTM_NEWLINK, req.hdr.seq, req.sock.portid,
                            cap_net_admin=req.sock.cap_net_admin))
    return Reply()


def rtnl_dump_ifinfo(req: Request) -> object:
    seq, portid, admin = req.hdr.seq, req.sock.portid, req.sock.cap_net_admin
    return req.start_dump(fill_ifinfo(d, RTM_NEWLINK, seq, portid, NLM_F_MULTI,
                                      cap_net_admin=admin)
                          for d in list(req.netns.links))


# ---------------------------------------------------------------------------------------
# device state changes, each with the notifications the kernel sends


def dev_open(dev: NetDevice, gchanges: int = 0) -> None:
    """``__dev_open`` + ``__dev_notify_flags``: IFF_UP, carrier follow-ups, NEWLINK change=1
    (with ``gchanges``, the other flags the same request changed), loopback's 127.0.0.1/8
    and ::1 (inetdev_event / addrconf_notify on NETDEV_UP)."""
    if dev.up:
        return
    dev.flags |= IFF_UP
    dev.ever_up = True
    ops = link_ops(dev)
    linkwatch = ops.open(dev) if ops is not None and ops.open is not None else []
    # __dev_notify_flags announces the device before linkwatch has seen its new carrier
    # (netif_carrier_on only queues the event): no RUNNING yet, the old operstate
    dev.linkwatch_pending = dev in linkwatch
    try:
        rtmsg_ifinfo(dev, change=IFF_UP | gchanges)
    finally:
        dev.linkwatch_pending = False
    for d in linkwatch:                         # linkwatch_do_dev → netdev_state_change
        rtmsg_ifinfo(d)
    for d in linkwatch:                         # … → br_device_event: br_port_carrier_check
        if d is not dev:
            port_carrier_check(d)
    call_netdevice_notifiers("NETDEV_UP", dev)
    netdev_up(dev)
    # linkwatch_do_dev → netdev_state_change: NETDEV_CHANGE for a peer in another namespace
    # (addrconf_notify starts its DAD there; one in this namespace took it from NETDEV_UP's
    # carrier sync, xfrmd/rtnl/fib.py ``sync_carrier``)
    for d in linkwatch:
        if d is not dev and d.netns is not dev.netns:
            call_netdevice_notifiers("NETDEV_CHANGE", d)


def dev_close(dev: NetDevice, gchanges: int = 0) -> None:
    if not dev.up:
        return
    dev.flags &= ~IFF_UP
    ops = link_ops(dev)
    if ops is not None and ops.stop is not None:
        ops.stop(dev)
    rtmsg_ifinfo(dev, change=IFF_UP | gchanges)
    call_netdevice_notifiers("NETDEV_DOWN", dev)
    netdev_down(dev)


def port_carrier_check(dev: NetDevice) -> None:
    """A lower device's carrier changed (its veth peer came up or went down, a cable): its
    upper device hears of it (``br_port_carrier_check`` for a bridge port)."""
    master = dev.master
    mops = link_ops(master) if master is not None else None
    if master is not None and mops is not None and mops.port_carrier_check is not None:
        mops.port_carrier_check(master)


br_port_carrier_check = port_carrier_check     # the name rtnl's services use


def dev_set_mtu(dev: NetDevice, mtu: int, offset: int | None = None) -> None:
    """``dev_validate_mtu``; NETDEV_CHANGEMTU → NEWLINK. The kernel's MTU is an int: a u32
    of 2**31 or more is negative there, hence less than any device's minimum."""
    if mtu >= 1 << 31:
        mtu -= 1 << 32
    # NL_SET_ERR_MSG: no attribute offset (checked against the host kernel)
    if mtu < dev.min_mtu:
        raise KernelError(E.EINVAL, "mtu less than device minimum")
    if dev.max_mtu and mtu > dev.max_mtu:
        raise KernelError(E.EINVAL, "mtu greater than device maximum")
    if mtu == dev.mtu:
        return
    dev.mtu = mtu
    rtmsg_ifinfo(dev)
    call_netdevice_notifiers("NETDEV_CHANGEMTU", dev)


def dev_change_flags(dev: NetDevice, flags: int, change: int = 0xFFFFFFFF) -> None:
    """``dev_change_flags`` for the bits in ``change``. ``__dev_change_flags``: the plain
    flags first (IFF_NOARP: `ip link set arp off`), then open or close;
    ``__dev_notify_flags`` announces all that changed in one message."""
    mask = change & IFF_CHANGEABLE
    old = dev.flags
    dev.flags = (old & ~mask) | (flags & mask)
    gchanges = old ^ dev.flags
    if change & IFF_UP and bool(flags & IFF_UP) != dev.up:
        if flags & IFF_UP:
            dev_open(dev, gchanges)
        else:
            dev_close(dev, gchanges)
    elif gchanges:
        rtmsg_ifinfo(dev, change=gchanges)
    if change & IFF_UP:
        master = dev.master
        mops = link_ops(master) if master is not None else None
        if master is not None and mops is not None and mops.lower_updown is not None:
            mops.lower_updown(master)
        ops = link_ops(dev)
        if ops is not None and ops.updown is not None:
            ops.updown(dev)


def dev_change_carrier(dev: NetDevice, on: bool) -> None:
    """``dev_change_carrier``: only a driver with ``ndo_change_carrier`` (dummy:
    ``dummy_change_carrier`` → netif_carrier_on/off) takes it, others EOPNOTSUPP. The
    change reaches linkwatch (``linkwatch_do_dev``): the operstate is worked out again and,
    while the device is up, ``netdev_state_change`` sends NETDEV_CHANGE and RTM_NEWLINK."""
    if dev.kind != "dummy":
        raise KernelError(E.EOPNOTSUPP)
    if not dev.set_carrier(on):
        return
    if not on:
        dev.linkwatch_operstate()
    if dev.up:
        call_netdevice_notifiers("NETDEV_CHANGE", dev)
        netdev_state_change(dev)
        port_carrier_check(dev)


def dev_change_tx_queue_len(dev: NetDevice, new_len: int) -> None:
    """``dev_change_tx_queue_len``: ERANGE beyond an unsigned int; a change goes out as
    NETDEV_CHANGE_TX_QUEUE_LEN, which ``rtnetlink_event`` turns into RTM_NEWLINK."""
    if not 0 <= new_len <= 0xFFFFFFFF:
        raise KernelError(E.ERANGE)
    if new_len == dev.txqlen:
        return
    dev.txqlen = new_len
    rtmsg_ifinfo(dev)


def dev_set_group(dev: NetDevice, group: int) -> None:
    """``dev_set_group``: the number alone, no notification."""
    dev.group = group & 0xFFFFFFFF


def valid_name(name: str) -> bool:
    """``dev_valid_name``."""
    return (0 < len(name) < IFNAMSIZ and name not in (".", "..")
            and not any(c in name for c in "/: \t\n"))


def dev_change_name(dev: NetDevice, name: str) -> None:
    if name == dev.name:
        return
    if not valid_name(name):
        raise KernelError(E.EINVAL)
    links: LinkTable = dev_net(dev).links
    if links.by_name(name) is not None:
        raise KernelError(E.EEXIST)
    links.rename(dev, name)
    dev.name_assign_type = NET_NAME_RENAMED
    rtmsg_ifinfo(dev)


def dev_set_mac_address(dev: NetDevice, mac: bytes, offset: int | None = None) -> None:
    """``dev_set_mac_address_user`` → ``eth_mac_addr``: a unicast, non-zero address."""
    if len(mac) < len(dev.address):
        raise KernelError(E.EINVAL, None, offset=offset)
    mac = mac[:len(dev.address)]
    if dev.kind != "loopback" and (mac[0] & 1 or mac == bytes(6)):
        raise KernelError(E.EADDRNOTAVAIL)
    if mac == dev.address:
        return
    dev.address = mac
    dev.addr_random = False
    ops = link_ops(dev)
    if ops is not None and ops.set_mac_address is not None:
        ops.set_mac_address(dev, mac)
    rtmsg_ifinfo(dev)
    call_netdevice_notifiers("NETDEV_CHANGEADDR", dev)


def do_set_master(dev: NetDevice, ifindex: int) -> None:
    """``do_set_master``: leave the current master (unless it is the same), join the new one
    (``ndo_add_slave`` of the upper device's ops)."""
    upper = dev.master
    if upper is not None:
        if upper.ifindex == ifindex:
            return
        del_slave(upper, dev)
    if ifindex:
        upper = dev_net(dev).links.by_index(ifindex)
        if upper is None:
            raise KernelError(E.EINVAL)
        ops = link_ops(upper)
        if ops is None or ops.add_slave is None:
            raise KernelError(E.EOPNOTSUPP)
        ops.add_slave(upper, dev)


def del_slave(upper: NetDevice, dev: NetDevice) -> None:
    """``ndo_del_slave`` of the upper device; EOPNOTSUPP when it has none."""
    ops = link_ops(upper)
    if ops is None or ops.del_slave is None:
        raise KernelError(E.EOPNOTSUPP)
    ops.del_slave(upper, dev)


def unregister_many(devs: list[NetDevice], seq: int = 0, portid: int = 0) -> None:
    """``unregister_netdevice_many_notify``: close the running ones, let the subsystems let
    go (addresses, SAs, bond/bridge membership), then RTM_DELLINK for each (with the seq
    and port of the RTM_DELLINK request that asked, if one did)."""
    for dev in devs:
        # veth_dellink forgets the pair before unregistering it: the close and DELLINK
        # messages already read IFLA_LINK 0, and no carrier change is announced
        if dev.kind == "veth" and dev.peer is not None and dev.peer in devs:
            dev.peer.peer = None
            dev.peer = None
    for dev in devs:
        dev_close(dev)
    for dev in devs:
        if dev.master is not None:
            try:
                del_slave(dev.master, dev)
            except KernelError:
                dev.master = None
        ops = link_ops(dev)
        if ops is not None and ops.uninit is not None:
            ops.uninit(dev)
        netdev_unregister(dev)
    nss: list[Any] = []
    for dev in devs:
        ns = dev_net(dev)
        nss.append(ns)
        ns.links.unregister(dev)
        dev.netns = None
    for dev, ns in zip(devs, nss):      # a veth end's IFLA_LINK reads 0 once both are gone
        dev.ever_up = False             # dev_shutdown: noop qdisc in the DELLINK
        ns.kernel.multicast(ns, NETLINK_ROUTE, RTNLGRP_LINK,
                            fill_ifinfo(dev, RTM_DELLINK, seq, portid, change=0xFFFFFFFF))


# ---------------------------------------------------------------------------------------
# RTM_NEWLINK / RTM_SETLINK / RTM_DELLINK

IFLA_INFO_POLICY = {IFLA_INFO_KIND: NlaPolicy("string"), IFLA_INFO_DATA: NlaPolicy("nested"),
                    IFLA_INFO_SLAVE_KIND: NlaPolicy("string"),
                    IFLA_INFO_SLAVE_DATA: NlaPolicy("nested")}


def _raise(err: Reply) -> None:
    """A policy error the attribute parser answered with, raised as the kernel error it is."""
    ext = err.ext._asdict() if err.ext is not None else {}
    raise KernelError(err.error, **{k: v for k, v in ext.items() if v is not None})


class LinkMsg:
    """A parsed ifinfomsg request: header fields and ``tb`` (type → RawAttr); a policy
    error raises KernelError."""

    def __init__(self, req: Request, off: int, end: int, hdr_offset: int):
        self.buf = req.buf
        self.hdr_offset = hdr_offset
        (self.family, self.type, self.index, self.flags,
         self.change) = IFINFOMSG.unpack_from(req.buf, off)
        tb, err, _ = parse_attrs(req.buf, off + IFINFOMSG.size, end, IFLA_POLICY, IFLA_MAX,
                                 hdr_offset=hdr_offset)
        if err is not None:
            _raise(err)
        self.tb = tb

    def u32(self, t: int) -> int:
        v: int = struct.unpack_from("=I", self.buf, self.tb[t].start)[0]
        return v

    def u8(self, t: int) -> int:
        v: int = self.buf[self.tb[t].start]
        return v

    def raw(self, t: int) -> bytes:
        ra = self.tb[t]
        return bytes(self.buf[ra.start:ra.end])

    def name(self) -> str | None:
        return _str(self.buf, self.tb[IFLA_IFNAME]) if IFLA_IFNAME in self.tb else None

    def off(self, t: int) -> int:
        v: int = self.tb[t].offset - self.hdr_offset
        return v

    def parse_data(self, data: RawAttr, policy: dict[int, NlaPolicy],
                   maxtype: int) -> dict[int, RawAttr]:
        """IFLA_INFO_DATA with the kind's policy (``nla_parse_nested_deprecated``)."""
        tb, err, _ = parse_attrs(self.buf, data.start, data.end, policy, maxtype,
                                 hdr_offset=self.hdr_offset)
        if err is not None:
            _raise(err)
        return tb


def _linkinfo_parse(m: LinkMsg) -> tuple[str | None, RawAttr | None]:
    """(kind, data RawAttr) of IFLA_LINKINFO."""
    if IFLA_LINKINFO not in m.tb:
        return None, None
    ra = m.tb[IFLA_LINKINFO]
    linfo = m.parse_data(ra, IFLA_INFO_POLICY, 5)
    kind = _str(m.buf, linfo[IFLA_INFO_KIND]) if IFLA_INFO_KIND in linfo else None
    return kind, linfo.get(IFLA_INFO_DATA)


def _random_mac() -> bytes:
    """``eth_hw_addr_random``: locally administered unicast."""
    b = bytearray(os.urandom(6))
    b[0] = (b[0] & 0xFE) | 0x02
    return bytes(b)


def alloc_name(links: Any, pattern: str) -> str:
    """``dev_alloc_name``: the lowest free %d."""
    i = 0
    while links.by_name(pattern % i) is not None:
        i += 1
    return pattern % i


def _new_device(ops: RtnlLinkOps, name: str) -> NetDevice:
    """``rtnl_create_link`` → ``alloc_netdev``: a device of the kind, set up by its ops."""
    dev = NetDevice(name, ops.kind, address=_random_mac(), driver=ops.driver or ops.kind,
                    flags=IFF_BROADCAST | IFF_MULTICAST)
    dev.rtnl_kind = ops.kind
    dev.rtnl_link_ops = ops
    dev.addr_random = True
    if ops.setup is not None:
        ops.setup(dev)
    return dev


def _apply_create_attrs(dev: NetDevice, m: LinkMsg) -> None:
    """``rtnl_create_link``: MTU (validated), address, txqlen, group, queues."""
    if IFLA_MTU in m.tb:
        mtu = m.u32(IFLA_MTU)
        if mtu >= 1 << 31:
            mtu -= 1 << 32                        # an int in dev_validate_mtu
        if mtu < dev.min_mtu:
            raise KernelError(E.EINVAL, "mtu less than device minimum", offset=m.off(IFLA_MTU))
        if dev.max_mtu and mtu > dev.max_mtu:
            raise KernelError(E.EINVAL, "mtu greater than device maximum",
                              offset=m.off(IFLA_MTU))
        dev.mtu = mtu
    if IFLA_ADDRESS in m.tb:
        mac = m.raw(IFLA_ADDRESS)
        if len(mac) != 6:
            raise KernelError(E.EINVAL)
        if mac[0] & 1 or mac == bytes(6):
            raise KernelError(E.EADDRNOTAVAIL)
        dev.address = mac
        dev.addr_random = False
        dev.mac_set = True
    if IFLA_TXQLEN in m.tb:
        dev.txqlen = m.u32(IFLA_TXQLEN)
    if IFLA_GROUP in m.tb:
        dev_set_group(dev, m.u32(IFLA_GROUP))
    for t, what in ((IFLA_NUM_TX_QUEUES, "transmit"), (IFLA_NUM_RX_QUEUES, "receive")):
        if t in m.tb:
            n = m.u32(t)
            if n < 1 or n > 4096:
                raise KernelError(E.EINVAL, f"Invalid number of {what} queues")
            if t == IFLA_NUM_TX_QUEUES:
                dev.num_tx_queues = n
            else:
                dev.num_rx_queues = n


def register_netdevice(links: Any, dev: NetDevice, ifindex: int = 0) -> None:
    """``register_netdevice`` of a device made through rtnetlink: the name and a chosen
    index must be free; a kind whose newlink gave it no features gets its kind's."""
    if links.by_name(dev.name) is not None:
        raise KernelError(E.EEXIST)
    if ifindex and links.by_index(ifindex) is not None:
        raise KernelError(E.EBUSY)
    links.register(dev, ifindex, reserve=bool(ifindex))   # dev_index_reserve: xa_insert
    if dev.features is None:
        dev.features = NetdevFeatures(kind=dev.kind)


def rtnl_newlink_create(req: Request, m: LinkMsg, ops: RtnlLinkOps,
                        data_ra: RawAttr | None) -> Reply:
    # `ip link add … netns PID`: made in that namespace
    dest = target_net(req, m) or req.netns
    links = dest.links
    name = m.name()
    if name is not None and not valid_name(name):
        raise KernelError(E.EINVAL)
    if m.index and links.by_index(m.index) is not None:
        raise KernelError(E.EBUSY)
    name = name or alloc_name(links, ops.kind + "%d")
    dev = _new_device(ops, name)
    # rtnl_create_link: NET_NAME_USER for a given IFLA_IFNAME, else NET_NAME_ENUM
    dev.name_assign_type = NET_NAME_USER if m.name() is not None else NET_NAME_ENUM
    created: list[NetDevice] = []
    if ops.validate is not None:
        ops.validate(dest, dev, m.buf, data_ra)
    try:
        _apply_create_attrs(dev, m)
        if ops.newlink is not None:
            ops.newlink(NewLink(req, dest, dev, m, data_ra, created))
        else:
            register_netdevice(links, dev, m.index)
        created.append(dev)
        # rtnl_configure_link: with the request's seq and port (echoed under NLM_F_ECHO)
        rtmsg_ifinfo(dev, change=0xFFFFFFFF, seq=req.hdr.seq, portid=req.sock.portid)
        if m.flags & 1 and (m.change & 1 or m.change == 0):
            dev_open(dev)
        if IFLA_MASTER in m.tb:
            do_set_master(dev, m.u32(IFLA_MASTER))
    except KernelError:
        if created:
            unregister_many(created[::-1] if len(created) == 2 else created)
        raise
    return Reply()


def target_net(req: Request, m: LinkMsg | None) -> NetNamespace | None:
    """``rtnl_link_get_net_ifla``: the namespace IFLA_NET_NS_PID names (that of the process's
    netlink sockets), None without one. A namespace fd (``netns NAME``) names a real
    namespace, which is none of the emulated ones."""
    if m is None:
        return None
    if IFLA_NET_NS_PID in m.tb:
        ns = netns.get_net_ns_by_pid(req.kernel, m.u32(IFLA_NET_NS_PID))
        if ns is None:
            raise KernelError(E.ESRCH)
        return ns
    if IFLA_NET_NS_FD in m.tb:
        ns = netns.get_net_ns_by_fd(req, m.u32(IFLA_NET_NS_FD))
        if ns is None:
            raise KernelError(E.EOPNOTSUPP, "xfrmd: this namespace file names no emulated "
                              "namespace (a real one, or opened without the shim): use netns "
                              "NAME of an emulated namespace under the shim, netns PID, or "
                              "xfrmd ctl link DEV netns NS")
        return ns
    if IFLA_TARGET_NETNSID in m.tb:
        raise KernelError(E.EOPNOTSUPP, "xfrmd: IFLA_TARGET_NETNSID is not modelled")
    return None


def netdev_state_change(dev: NetDevice) -> None:
    """``netdev_state_change`` of a running device: NETDEV_CHANGE (the master's port hook:
    a bridge announces its port in AF_BRIDGE form first), then RTM_NEWLINK."""
    master = dev.master
    mops = link_ops(master) if master is not None else None
    if mops is not None and mops.port_state_change is not None:
        mops.port_state_change(dev)
    rtmsg_ifinfo(dev)


def do_setlink(req: Request, dev: NetDevice, m: LinkMsg, notify: bool = False) -> None:
    """``do_setlink`` in the kernel's order (raises KernelError); ``notify``: the caller's
    DO_SETLINK_NOTIFY status (a slave changelink before it)."""
    tgt_net = target_net(req, m)
    if tgt_net is not None:
        new_ifindex = struct.unpack_from("=i", m.buf, m.tb[IFLA_NEW_IFINDEX].start)[0] \
            if IFLA_NEW_IFINDEX in m.tb else 0
        netns.dev_change_net_namespace(dev, tgt_net, m.name() if IFLA_IFNAME in m.tb else None,
                                       new_ifindex)
    if IFLA_ADDRESS in m.tb:
        if len(m.raw(IFLA_ADDRESS)) < len(dev.address):
            raise KernelError(E.EINVAL)             # validate_linkmsg: no message
        dev_set_mac_address(dev, m.raw(IFLA_ADDRESS), m.off(IFLA_ADDRESS))
        dev.mac_set = True
    if IFLA_MTU in m.tb:
        dev_set_mtu(dev, m.u32(IFLA_MTU), m.off(IFLA_MTU))
        dev.mtu_set = True
    state_change = False
    if IFLA_GROUP in m.tb:                          # netif_set_group, DO_SETLINK_NOTIFY
        dev_set_group(dev, m.u32(IFLA_GROUP))
        state_change = True
    if m.index > 0 and IFLA_IFNAME in m.tb:
        dev_change_name(dev, m.name() or "")
    if IFLA_IFALIAS in m.tb:                        # dev_set_alias; an empty one clears it
        alias = _str(m.buf, m.tb[IFLA_IFALIAS])
        if len(alias.encode()) >= IFALIASZ:         # ifla_policy: .len = IFALIASZ - 1
            raise KernelError(E.ERANGE, "Attribute failed policy validation",
                              offset=m.off(IFLA_IFALIAS))
        dev.ifalias = alias
        state_change = True
    if m.flags or m.change:
        dev_change_flags(dev, m.flags, m.change or 0xFFFFFFFF)   # rtnl_dev_combine_flags
    if IFLA_MASTER in m.tb:
        do_set_master(dev, m.u32(IFLA_MASTER))
    if IFLA_CARRIER in m.tb:
        dev_change_carrier(dev, bool(m.u8(IFLA_CARRIER)))
    if IFLA_TXQLEN in m.tb:
        q = m.u32(IFLA_TXQLEN)
        if q != dev.txqlen:
            if q > 0x7FFFFFFF:
                raise KernelError(E.ERANGE)
            dev_change_tx_queue_len(dev, q)
    if (state_change or notify) and dev.up:
        netdev_state_change(dev)                   # DO_SETLINK_NOTIFY


def _changelink(req: Request, dev: NetDevice, m: LinkMsg, kind: str | None,
                data_ra: RawAttr | None) -> None:
    """``rtnl_changelink``: IFLA_INFO_DATA for an existing device of that kind."""
    if data_ra is None:
        return
    ops = link_ops(dev)
    if ops is None or kind != ops.kind or ops.changelink is None:
        raise KernelError(E.EOPNOTSUPP)             # rtnl_changelink: no ops->changelink
    ops.changelink(req, dev, m, data_ra)


class SlaveData(dict[int, bytes]):
    """IFLA_INFO_SLAVE_DATA as ``slave_changelink`` gets it: type → payload, and in
    ``offsets`` each attribute's offset from the nlmsghdr (for NL_SET_ERR_MSG_ATTR)."""
    offsets: dict[int, int] = {}


def _slave_changelink(dev: NetDevice, m: LinkMsg) -> bool:
    """``rtnl_changelink``'s IFLA_INFO_SLAVE_DATA: to the master's ``slave_changelink``
    (whatever IFLA_INFO_KIND says); no master or none of it → EOPNOTSUPP. True: changed."""
    if IFLA_LINKINFO not in m.tb:
        return False
    linfo = m.parse_data(m.tb[IFLA_LINKINFO], IFLA_INFO_POLICY, 5)
    ra = linfo.get(IFLA_INFO_SLAVE_DATA)
    if ra is None:
        return False
    master = dev.master
    mops = link_ops(master) if master is not None else None
    if master is None or mops is None:
        raise KernelError(E.EOPNOTSUPP)             # no master: no m_ops
    if mops.slave_changelink is None:
        raise KernelError(E.EOPNOTSUPP, f"xfrmd: {mops.kind} port options "
                          "(IFLA_INFO_SLAVE_DATA) are not modelled")
    # nla_parse_nested_deprecated: liberal, a repeated attribute's last copy counts
    attrs = kernel_attrs(m.buf, ra.start, ra.end)[0]
    tb = SlaveData({a.type: bytes(m.buf[a.start:a.end]) for a in attrs})
    tb.offsets = {a.type: a.offset - m.hdr_offset for a in attrs}
    mops.slave_changelink(master, dev, tb)
    return True


def _ifinfomsg(req: Request) -> LinkMsg:
    """The ifinfomsg header and attributes of a NEWLINK/SETLINK/DELLINK; a short header or
    an attribute the policy rejects raises KernelError."""
    if req.hdr.len - 16 < IFINFOMSG.size:
        raise KernelError(E.EINVAL, "Invalid header length")
    return LinkMsg(req, req.payload_offset, req.end, req.hdr.offset)


def _kind_ops(kernel: Kernel, kind: str | None) -> RtnlLinkOps | None:
    """``rtnl_link_ops_get``: a kind the kernel was built without has no ops."""
    if kind is None or not kconfig.link_kind_built(kernel, kind):
        return None
    return cast("RtnlLinkOps | None", kernel.link_ops.get(kind))


def rtnl_newlink(req: Request) -> Reply:
    m = _ifinfomsg(req)
    links = req.netns.links
    if m.index > 0:
        dev = links.by_index(m.index)
    elif m.index < 0:
        raise KernelError(E.EINVAL, "ifindex can't be negative")
    elif IFLA_IFNAME in m.tb:
        dev = links.by_name(m.name())
    else:
        dev = None
    kind, data_ra = _linkinfo_parse(m)
    kernel = req.netns.kernel
    if kind == NSIM_KIND and kconfig.link_kind_built(kernel, kind):
        # nsim_link_ops.validate, run before the device lookup: ports come from sysfs only
        raise KernelError(E.EOPNOTSUPP, NSIM_VALIDATE_MSG)
    ops = _kind_ops(kernel, kind)
    if dev is not None:
        if req.hdr.flags & NLM_F_EXCL:
            raise KernelError(E.EEXIST)
        if req.hdr.flags & NLM_F_REPLACE:
            raise KernelError(E.EOPNOTSUPP)
        if kind is not None and ops is None and data_ra is not None:
            raise KernelError(E.EOPNOTSUPP)
        _changelink(req, dev, m, kind, data_ra)
        do_setlink(req, dev, m, _slave_changelink(dev, m))
        return Reply()
    if not req.hdr.flags & NLM_F_CREATE:
        raise KernelError(E.ENODEV)                  # also the empty probe ip sends
    if IFLA_MAP in m.tb or IFLA_PROTINFO in m.tb:
        raise KernelError(E.EOPNOTSUPP)
    if ops is None:
        raise KernelError(E.EOPNOTSUPP, "Unknown device type")
    return rtnl_newlink_create(req, m, ops, data_ra)


def _by_msg(req: Request, m: LinkMsg) -> NetDevice | None:
    """The device of a SETLINK/DELLINK: by index, else by name; neither → EINVAL."""
    links: LinkTable = req.netns.links
    if m.index > 0:
        return links.by_index(m.index)
    if IFLA_IFNAME in m.tb:
        return links.by_name(m.name() or "")
    raise KernelError(E.EINVAL)


def rtnl_setlink(req: Request) -> Reply:
    m = _ifinfomsg(req)
    dev = _by_msg(req, m)
    if dev is None:
        raise KernelError(E.ENODEV)
    do_setlink(req, dev, m)
    return Reply()


def rtnl_dellink(req: Request) -> Reply:
    """``rtnl_dellink``: by index or name; devices without rtnl_link_ops (lo, hardware ports)
    → EOPNOTSUPP; a veth takes its peer along; a bond releases its slaves first. Offloaded
    SAs do not block it: NETDEV_UNREGISTER flushes them (xfrm_dev_event)."""
    m = _ifinfomsg(req)
    if m.index < 0:
        raise KernelError(E.EINVAL, "ifindex can't be negative")
    dev = _by_msg(req, m)
    if dev is None:
        raise KernelError(E.ENODEV)
    if link_ops(dev) is None:
        raise KernelError(E.EOPNOTSUPP)
    devs = [dev]
    if dev.kind == "veth" and dev.peer is not None and dev.peer.netns is not None:
        devs.append(dev.peer)
    unregister_many(devs, req.hdr.seq, req.sock.portid)
    return Reply()


# ---------------------------------------------------------------------------------------
# dummy and veth (drivers/net/dummy.c, drivers/net/veth.c)


def dummy_setup(dev: NetDevice) -> None:
    """``dummy_setup``: NOARP, no multicast, no MTU limits."""
    dev.flags = IFF_BROADCAST | IFF_NOARP
    dev.min_mtu = dev.max_mtu = 0


def veth_setup(dev: NetDevice) -> None:
    dev.num_tx_queues = dev.num_rx_queues = VETH_QUEUES
    dev.set_carrier(False)                      # veth_newlink: netif_carrier_off


def veth_newlink(nl: NewLink) -> None:
    """``veth_newlink``: the peer (IFLA_INFO_DATA's VETH_INFO_PEER, its own ifinfomsg and
    attributes, possibly another namespace) is registered first and announced with
    IFLA_LINK still 0, then the device."""
    req, m, dev = nl.req, nl.m, nl.dev
    peer_name, peer_m = None, None
    if nl.data is not None:
        for ra in kernel_attrs(m.buf, nl.data.start, nl.data.end)[0]:
            if ra.type == VETH_INFO_PEER and ra.end - ra.start >= IFINFOMSG.size:
                peer_m = LinkMsg(req, ra.start, ra.end, m.hdr_offset)
                peer_name = peer_m.name()
    if peer_name is not None and not valid_name(peer_name):
        raise KernelError(E.EINVAL)
    # the peer's own IFLA_NET_NS_PID puts it in another namespace
    peer_net = target_net(req, peer_m) or req.netns
    peer_links = peer_net.links
    peer = _new_device(VETH_LINK_OPS, peer_name or alloc_name(peer_links, "veth%d"))
    peer.name_assign_type = NET_NAME_USER if peer_name is not None else NET_NAME_ENUM  # veth_newlink
    if peer_m is not None:
        _apply_create_attrs(peer, peer_m)
    dev.peer, peer.peer = peer, dev
    # rtnl_newlink_peer: the peer's ifi_index counts only when the device's does
    register_netdevice(peer_links, peer, peer_m.index if peer_m is not None and m.index else 0)
    nl.created.append(peer)
    rtmsg_ifinfo(peer, change=0xFFFFFFFF)
    register_netdevice(nl.net.links, dev, m.index)
    # the carrier-off events of veth_newlink reach linkwatch once both ends are registered
    dev.linkwatch_operstate()
    peer.linkwatch_operstate()


def veth_open(dev: NetDevice) -> list[NetDevice]:
    """``veth_open``: carrier on both ends only once the peer is up too."""
    linkwatch = []
    peer = dev.peer
    if peer is not None and peer.up:
        if dev.set_carrier(True):
            linkwatch.append(dev)
        if peer.set_carrier(True):
            linkwatch.append(peer)
    return linkwatch


def veth_close(dev: NetDevice) -> None:
    """``veth_close``: both ends lose carrier (a device leaving for another namespace has
    linkwatch tell of the peer afterwards)."""
    dev.set_carrier(False)
    peer = dev.peer
    if peer is not None and not getattr(dev, "defer_peer_carrier", False) \
            and peer.set_carrier(False):
        rtmsg_ifinfo(peer)
        port_carrier_check(peer)
        if peer.netns is not dev.netns:         # its routes' RTNH_F_LINKDOWN there
            call_netdevice_notifiers("NETDEV_CHANGE", peer)


def veth_get_link_net(dev: NetDevice) -> NetNamespace | None:
    """``veth_get_link_net``: the peer's namespace while it lives."""
    peer = dev.peer
    return peer.netns if peer is not None and peer.netns is not None else None


def veth_get_iflink(dev: NetDevice) -> int:
    """``veth_get_iflink``: the peer's index, also in another namespace; 0 once it is gone."""
    peer = dev.peer
    return peer.ifindex if peer is not None and peer.netns is not None else 0


DUMMY_LINK_OPS = RtnlLinkOps(kind="dummy", driver="dummy", setup=dummy_setup)
VETH_LINK_OPS = RtnlLinkOps(kind="veth", driver="veth", setup=veth_setup, newlink=veth_newlink,
                            open=veth_open, stop=veth_close, get_link_net=veth_get_link_net,
                            get_iflink=veth_get_iflink)


# rtnetlink_init's link rows: (family, msgtype, doit, dumpit)
RTNL_MSG_HANDLERS = (
    (0, RTM_GETLINK, rtnl_getlink, rtnl_dump_ifinfo),
    (0, RTM_NEWLINK, rtnl_newlink, None),
    (0, RTM_SETLINK, rtnl_setlink, None),
    (0, RTM_DELLINK, rtnl_dellink, None),
)
