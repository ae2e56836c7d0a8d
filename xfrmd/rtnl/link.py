"""Links: RTM_NEWLINK / DELLINK / GETLINK / SETLINK (net/core/rtnetlink.c ``rtnl_newlink``,
``do_setlink``, ``rtnl_dellink``, ``rtnl_getlink``, ``rtnl_dump_ifinfo``, ``rtnl_fill_ifinfo``)
and the RTNLGRP_LINK notifications every change sends.

Kinds that can be created: dummy, veth (a pair, also across namespaces: netns.py), bridge (bare: no STP, no VLANs,
ports with their bridge_slave data) and bond (options through IFLA_INFO_DATA, bonding/rtnl.py)."""
from __future__ import annotations

import errno as E
import os
import struct

from netlink_codec.netlink import (NETLINK_ROUTE, NLM_F_MULTI, encode_msg, iter_attrs,
                                   kernel_attrs, nla, nla_nested, nla_string, nla_u8, nla_u16,
                                   nla_u32)

from .. import kconfig
from ..netlink.core import Reply
from ..netlink.nlattr import NlaPolicy, parse_attrs
from . import rtnl_handler
from .linkdata import AF_SPEC_ETHER, AF_SPEC_LO, BRIDGE_INFO_DATA

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
HARDWARE_KINDS = ("netdevsim", "mlx5", "airoha-soe")
RTNL_KINDS = ("dummy", "veth", "bridge", "bond", "xfrm")      # kinds with rtnl_link_ops here
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


def _qdisc(dev) -> str:
    if not dev.ever_up and not dev.up:
        return "noop"
    return "mq" if dev.kind in HARDWARE_KINDS else "noqueue"


def _af_spec(dev) -> bytes:
    if dev.kind == "loopback":
        return AF_SPEC_LO
    # AF_INET6's IFLA_INET6_CONF[DEVCONF_MTU6] follows the device MTU
    return AF_SPEC_ETHER[:184] + struct.pack("=i", dev.mtu) + AF_SPEC_ETHER[188:]


def _linkinfo(dev, cap_net_admin: bool) -> bytes | None:
    """``rtnl_link_fill``: kind and data of the device's own ops, then its master's slave data."""
    parts = []
    kind = dev.kind if dev.kind not in ("loopback",) + HARDWARE_KINDS else None
    if kind is not None:
        parts.append(nla_string(IFLA_INFO_KIND, kind))
        if kind == "bond" and getattr(dev, "bond", None) is not None:
            from bonding.rtnl import bond_fill_info
            parts.append(nla(IFLA_INFO_DATA, bond_fill_info(dev.bond, cap_net_admin)))
        elif kind == "bridge":
            parts.append(nla(IFLA_INFO_DATA, br_fill_info(dev)))
        elif kind == "xfrm":
            from .xfrmi import xfrmi_fill_info
            parts.append(nla(IFLA_INFO_DATA, xfrmi_fill_info(dev)))
    master = dev.master
    if master is not None and getattr(master, "bond", None) is not None:
        from bonding.rtnl import bond_fill_slave_info
        parts.append(nla_string(IFLA_INFO_SLAVE_KIND, "bond"))
        parts.append(nla(IFLA_INFO_SLAVE_DATA, bond_fill_slave_info(master.bond, dev)))
    elif master is not None and master.kind == "bridge":
        parts.append(nla_string(IFLA_INFO_SLAVE_KIND, "bridge"))
        parts.append(nla(IFLA_INFO_SLAVE_DATA, br_port_fill_attrs(master, dev)))
    if not parts:
        return None
    return nla(IFLA_LINKINFO, b"".join(parts))


# IFLA_BR_BRIDGE_ID / IFLA_BR_ROOT_ID in the captured br_fill_info: 8-byte ifla_bridge_id
_BR_ID_AT = [BRIDGE_INFO_DATA.index(bytes.fromhex(h)) + 4
             for h in ("0c000b008000", "0c000a008000")]


def _bridge_id(br) -> bytes:
    """``br->bridge_id``: priority 0x8000, then the address br_stp_recalculate_bridge_id
    chose (zero until a port came or an address was set)."""
    return b"\x80\x00" + getattr(br, "bridge_id", bytes(6))


def br_fill_info(br) -> bytes:
    """``br_fill_info`` of a bare bridge (STP off, defaults) with its bridge id; the timers
    read 0."""
    data = bytearray(BRIDGE_INFO_DATA)
    for at in _BR_ID_AT:
        data[at:at + 8] = _bridge_id(br)
    return bytes(data)


# IFLA_BRPORT_* (if_link.h)
(BRPORT_STATE, BRPORT_PRIORITY, BRPORT_COST, BRPORT_MODE, BRPORT_GUARD, BRPORT_PROTECT,
 BRPORT_FAST_LEAVE, BRPORT_LEARNING, BRPORT_UNICAST_FLOOD, BRPORT_PROXYARP,
 BRPORT_PROXYARP_WIFI, BRPORT_ROOT_ID, BRPORT_BRIDGE_ID, BRPORT_DESIGNATED_PORT,
 BRPORT_DESIGNATED_COST, BRPORT_ID, BRPORT_NO, BRPORT_TOPOLOGY_CHANGE_ACK,
 BRPORT_CONFIG_PENDING, BRPORT_MESSAGE_AGE_TIMER, BRPORT_FORWARD_DELAY_TIMER,
 BRPORT_HOLD_TIMER, BRPORT_MULTICAST_ROUTER, BRPORT_MCAST_FLOOD, BRPORT_MCAST_TO_UCAST,
 BRPORT_VLAN_TUNNEL, BRPORT_BCAST_FLOOD, BRPORT_GROUP_FWD_MASK, BRPORT_NEIGH_SUPPRESS,
 BRPORT_ISOLATED, BRPORT_MRP_RING_OPEN, BRPORT_MRP_IN_OPEN, BRPORT_MCAST_EHT_HOSTS_LIMIT,
 BRPORT_MCAST_EHT_HOSTS_CNT, BRPORT_LOCKED, BRPORT_MAB, BRPORT_MCAST_N_GROUPS,
 BRPORT_MCAST_MAX_GROUPS, BRPORT_NEIGH_VLAN_SUPPRESS) = (
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 25, 27, 28,
    29, 30, 31, 32, 33, 35, 36, 37, 38, 39, 40, 41, 42, 43)
BR_STATE_DISABLED, BR_STATE_FORWARDING = 0, 3


def _port_cost(dev) -> int:
    """``port_cost``: from the ethtool speed (10G: 2, faster: 1, unknown or none: 100)."""
    from xfrmd.genl.ethtool import _LINK_KSETTINGS, _bond_speed
    ks = _LINK_KSETTINGS.get(dev.kind)
    if ks is None:
        return 100
    speed = _bond_speed(dev)[0] if dev.kind == "bond" else ks[1]
    table = {10000: 2, 5000: 3, 2500: 4, 1000: 4, 100: 19, 10: 100, 0xFFFFFFFF: 100}
    if speed in table:
        return table[speed]
    return 1 if speed > 10000 else 100


# the port flags br_setport sets from IFLA_BRPORT_* u8 attributes, with new_nbp's defaults
BRPORT_FLAG_DEFAULTS = {
    BRPORT_MODE: 0, BRPORT_GUARD: 0, BRPORT_PROTECT: 0, BRPORT_FAST_LEAVE: 0,
    BRPORT_MCAST_TO_UCAST: 0, BRPORT_LEARNING: 1, BRPORT_UNICAST_FLOOD: 1,
    BRPORT_MCAST_FLOOD: 1, BRPORT_BCAST_FLOOD: 1, BRPORT_PROXYARP: 0, BRPORT_PROXYARP_WIFI: 0,
    BRPORT_VLAN_TUNNEL: 0, BRPORT_NEIGH_SUPPRESS: 0, BRPORT_ISOLATED: 0, BRPORT_LOCKED: 0,
    BRPORT_MAB: 0, BRPORT_NEIGH_VLAN_SUPPRESS: 0}


def brport(p) -> dict:
    """The port's settings (flags, priority, multicast router type), created on first use."""
    d = p.__dict__.get("brport")
    if d is None:
        d = p.__dict__["brport"] = dict(BRPORT_FLAG_DEFAULTS, priority=0x20, mcast_router=1)
    return d


def br_port_fill_attrs(br, p) -> bytes:
    """``br_port_fill_attrs`` for a port of a bare bridge: STP off, so a running port of a
    running bridge forwards and any other is disabled; the flags, cost, priority and
    multicast router type as set (``bridge link set``); timers and multicast group counts
    read 0."""
    from netlink_codec.netlink import nla_u64
    state = BR_STATE_FORWARDING if br.up and p.up and p.carrier else BR_STATE_DISABLED
    no = getattr(p, "br_port_no", 1)
    cfg = brport(p)
    port_id = (cfg["priority"] << 10) | no       # br_make_port_id(priority, no)
    bid = _bridge_id(br)
    u8 = nla_u8

    def flag(t):
        return u8(t, cfg[t])
    return b"".join([
        u8(BRPORT_STATE, state), nla_u16(BRPORT_PRIORITY, cfg["priority"]),
        nla_u32(BRPORT_COST, getattr(p, "br_port_cost", 100)),
        flag(BRPORT_MODE), flag(BRPORT_GUARD), flag(BRPORT_PROTECT), flag(BRPORT_FAST_LEAVE),
        flag(BRPORT_MCAST_TO_UCAST), flag(BRPORT_LEARNING), flag(BRPORT_UNICAST_FLOOD),
        flag(BRPORT_MCAST_FLOOD), flag(BRPORT_BCAST_FLOOD), flag(BRPORT_PROXYARP),
        flag(BRPORT_PROXYARP_WIFI),
        nla(BRPORT_ROOT_ID, bid), nla(BRPORT_BRIDGE_ID, bid),
        nla_u16(BRPORT_DESIGNATED_PORT, port_id), nla_u16(BRPORT_DESIGNATED_COST, 0),
        nla_u16(BRPORT_ID, port_id), nla_u16(BRPORT_NO, no),
        u8(BRPORT_TOPOLOGY_CHANGE_ACK, 0), u8(BRPORT_CONFIG_PENDING, 0),
        flag(BRPORT_VLAN_TUNNEL), nla_u16(BRPORT_GROUP_FWD_MASK, 0),
        flag(BRPORT_NEIGH_SUPPRESS), u8(BRPORT_MRP_RING_OPEN, 0), u8(BRPORT_MRP_IN_OPEN, 0),
        flag(BRPORT_ISOLATED), flag(BRPORT_LOCKED), flag(BRPORT_MAB),
        flag(BRPORT_NEIGH_VLAN_SUPPRESS),
        nla_u64(BRPORT_MESSAGE_AGE_TIMER, 0), nla_u64(BRPORT_FORWARD_DELAY_TIMER, 0),
        nla_u64(BRPORT_HOLD_TIMER, 0), u8(BRPORT_MULTICAST_ROUTER, cfg["mcast_router"]),
        nla_u32(BRPORT_MCAST_EHT_HOSTS_LIMIT, 512), nla_u32(BRPORT_MCAST_EHT_HOSTS_CNT, 0),
        nla_u32(BRPORT_MCAST_N_GROUPS, 0), nla_u32(BRPORT_MCAST_MAX_GROUPS, 0)])


def fill_ifinfo(dev, msg_type: int, seq: int, portid: int, flags: int = 0, *, change: int = 0,
                cap_net_admin: bool = True, new_nsid: int | None = None,
                new_ifindex: int = 0) -> bytes:
    """``rtnl_fill_ifinfo`` with the attributes and order of a 6.18 kernel. ``new_nsid`` /
    ``new_ifindex``: the RTM_DELLINK of a device leaving for another namespace
    (``rtmsg_ifinfo_newnet``)."""
    body = [IFINFOMSG.pack(0, dev.type, dev.ifindex, dev.dev_flags(), change),
            nla_string(IFLA_IFNAME, dev.name), nla_u32(IFLA_TXQLEN, dev.txqlen),
            nla_u8(IFLA_OPERSTATE, dev.operstate), nla_u8(IFLA_LINKMODE, 0),
            # netns_local devices: lo, bridges, bonds (bond_setup)
            nla_u8(IFLA_NETNS_IMMUTABLE, 1 if dev.kind in ("loopback", "bridge", "bond") else 0),
            nla_u32(IFLA_MTU, dev.mtu), nla_u32(IFLA_MIN_MTU, dev.min_mtu),
            nla_u32(IFLA_MAX_MTU, dev.max_mtu), nla_u32(IFLA_GROUP, 0),
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
    body += [nla(IFLA_STATS64, bytes(200)), nla(IFLA_STATS, bytes(96)),
             nla(IFLA_XDP, nla_u8(IFLA_XDP_ATTACHED, 0))]
    li = _linkinfo(dev, cap_net_admin)
    if li is not None:
        body.append(li)
    if new_nsid is not None:
        body.append(nla(IFLA_NEW_NETNSID, struct.pack("=i", new_nsid)))
    if new_ifindex:
        body.append(nla(IFLA_NEW_IFINDEX, struct.pack("=i", new_ifindex)))
    if dev.kind == "veth":
        # veth_get_iflink: the peer's index, also in another namespace; 0 once it is gone
        peer = dev.peer
        alive = peer is not None and peer.netns is not None
        if alive and dev.netns is not None and peer.netns is not dev.netns:
            # rtnl_fill_link_netnsid: veth_get_link_net differs → the peer's nsid here
            from .netns import peernet2id_alloc
            body.append(nla(IFLA_LINK_NETNSID,
                            struct.pack("=i", peernet2id_alloc(dev.netns, peer.netns))))
        body.append(nla_u32(IFLA_LINK, peer.ifindex if alive else 0))
    elif getattr(dev, "xfrmi", None) is not None and dev.xfrmi.link:
        body.append(nla_u32(IFLA_LINK, dev.xfrmi.link))      # xfrmi_get_iflink
    body += [nla_string(IFLA_QDISC, _qdisc(dev)), nla(IFLA_AF_SPEC, _af_spec(dev)),
             nla(IFLA_MAP, bytes(32)), nla(IFLA_DEVLINK_PORT | NLA_F_NESTED),
             nla(IFLA_DPLL_PIN | NLA_F_NESTED)]
    return encode_msg(msg_type, flags, seq, portid, b"".join(body))


def rtmsg_ifinfo(dev, msg_type: int = RTM_NEWLINK, change: int = 0, seq: int = 0,
                 portid: int = 0) -> None:
    """``rtmsg_ifinfo``: the link as it is now to RTNLGRP_LINK (seq 0, pid 0 unless a
    request's, as ``rtnl_configure_link`` passes them)."""
    ns = dev.netns
    if ns is None:
        return
    ns.kernel.multicast(ns, NETLINK_ROUTE, RTNLGRP_LINK, fill_ifinfo(dev, msg_type, seq, portid,
                                                                     change=change))


# ---------------------------------------------------------------------------------------
# GETLINK


def _find(req):
    """The device a request names: ifi_index, else IFLA_IFNAME."""
    off = req.payload_offset
    if req.hdr.len - 16 < IFINFOMSG.size:
        return None, Reply(-E.EINVAL, "Invalid header for link request")
    _, _, ifindex, _, _ = IFINFOMSG.unpack_from(req.buf, off)
    name = None
    for ra in kernel_attrs(req.buf, off + IFINFOMSG.size, req.end)[0]:
        if ra.type == IFLA_IFNAME:
            name = _str(req.buf, ra)
    links = req.netns.links
    if ifindex > 0:
        return links.by_index(ifindex), None
    if name:
        return links.by_name(name), None
    return None, None


def _str(buf, ra) -> str:
    return bytes(buf[ra.start:ra.end]).split(b"\0", 1)[0].decode(errors="replace")


@rtnl_handler(RTM_GETLINK)
def rtnl_getlink(req):
    dev, bad = _find(req)
    if bad is not None:
        return bad
    if dev is None:
        return Reply(-E.ENODEV)
    req.unicast(fill_ifinfo(dev, RTM_NEWLINK, req.hdr.seq, req.sock.portid,
                            cap_net_admin=req.sock.cap_net_admin))
    return Reply()


@rtnl_handler(RTM_GETLINK, dump=True)
def rtnl_dump_ifinfo(req):
    seq, portid, admin = req.hdr.seq, req.sock.portid, req.sock.cap_net_admin
    return req.start_dump(fill_ifinfo(d, RTM_NEWLINK, seq, portid, NLM_F_MULTI,
                                      cap_net_admin=admin)
                          for d in list(req.netns.links))


# ---------------------------------------------------------------------------------------
# device state changes, each with the notifications the kernel sends


class LinkError(Exception):
    def __init__(self, errno: int, msg: str | None = None, offset: int | None = None):
        super().__init__(msg)
        self.errno, self.msg, self.offset = errno, msg, offset

    def reply(self) -> Reply:
        kw = {"offset": self.offset} if self.offset is not None else {}
        return Reply(self.errno, self.msg, **kw)


def _notifiers(event: str, dev, **info) -> None:
    from devices.netdev import call_netdevice_notifiers
    call_netdevice_notifiers(event, dev, **info)


def dev_open(dev, gchanges: int = 0) -> None:
    """``__dev_open`` + ``__dev_notify_flags``: IFF_UP, carrier follow-ups, NEWLINK change=1
    (with ``gchanges``, the other flags the same request changed), loopback's 127.0.0.1/8
    and ::1 (inetdev_event / addrconf_notify on NETDEV_UP)."""
    from devices.netdev import IFF_UP
    if dev.up:
        return
    dev.flags |= IFF_UP
    dev.ever_up = True
    linkwatch = []
    if dev.kind == "veth":                      # veth_open: carrier only with the peer up
        peer = dev.peer
        if peer is not None and peer.up:
            if dev.set_carrier(True):
                linkwatch.append(dev)
            if peer.set_carrier(True):
                linkwatch.append(peer)
    elif dev.kind == "bridge":
        _bridge_carrier(dev, notify=False)
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
            br_port_carrier_check(d)
    _notifiers("NETDEV_UP", dev)
    from . import addr
    addr.netdev_up(dev)


def dev_close(dev, gchanges: int = 0) -> None:
    from devices.netdev import IFF_UP
    if not dev.up:
        return
    dev.flags &= ~IFF_UP
    if dev.kind == "veth":
        dev.set_carrier(False)
        peer = dev.peer
        # (a device leaving for another namespace has linkwatch tell of the peer afterwards)
        if peer is not None and not getattr(dev, "defer_peer_carrier", False) \
                and peer.set_carrier(False):
            rtmsg_ifinfo(peer)
            br_port_carrier_check(peer)
    rtmsg_ifinfo(dev, change=IFF_UP | gchanges)
    _notifiers("NETDEV_DOWN", dev)
    from . import addr
    addr.netdev_down(dev)


def br_port_carrier_check(dev) -> None:
    """``br_port_carrier_check``: a bridge port's carrier changed (its veth peer came up or
    went down, a cable): the bridge has carrier while one of its ports runs. (The port's
    own up/down is handled where it is opened or closed.)"""
    if dev.master is not None and dev.master.kind == "bridge":
        _bridge_carrier(dev.master)


def _bridge_carrier(br, notify: bool = True) -> None:
    """``br_port_carrier_check``: a bridge has carrier while one of its ports runs."""
    ports = [d for d in br.netns.links if d.master is br]
    on = any(p.up and p.carrier for p in ports)
    if br.set_carrier(on) and notify:
        rtmsg_ifinfo(br)


def dev_set_mtu(dev, mtu: int, offset=None) -> None:
    """``dev_validate_mtu``; NETDEV_CHANGEMTU → NEWLINK. The kernel's MTU is an int: a u32
    of 2**31 or more is negative there, hence less than any device's minimum."""
    if mtu >= 1 << 31:
        mtu -= 1 << 32
    # NL_SET_ERR_MSG: no attribute offset (checked against the host kernel)
    if mtu < dev.min_mtu:
        raise LinkError(-E.EINVAL, "mtu less than device minimum")
    if dev.max_mtu and mtu > dev.max_mtu:
        raise LinkError(-E.EINVAL, "mtu greater than device maximum")
    if mtu == dev.mtu:
        return
    dev.mtu = mtu
    rtmsg_ifinfo(dev)
    _notifiers("NETDEV_CHANGEMTU", dev)


def _valid_name(name: str) -> bool:
    """``dev_valid_name``."""
    return (0 < len(name) < IFNAMSIZ and name not in (".", "..")
            and not any(c in name for c in "/: \t\n"))


def dev_change_name(dev, name: str) -> None:
    if name == dev.name:
        return
    if not _valid_name(name):
        raise LinkError(-E.EINVAL)
    if dev.netns.links.by_name(name) is not None:
        raise LinkError(-E.EEXIST)
    dev.netns.links.rename(dev, name)
    rtmsg_ifinfo(dev)


def dev_set_mac_address(dev, mac: bytes, offset=None) -> None:
    """``dev_set_mac_address_user`` → ``eth_mac_addr``: a unicast, non-zero address."""
    if len(mac) < len(dev.address):
        raise LinkError(-E.EINVAL, None, offset)
    mac = mac[:len(dev.address)]
    if dev.kind != "loopback" and (mac[0] & 1 or mac == bytes(6)):
        raise LinkError(-E.EADDRNOTAVAIL)
    if mac == dev.address:
        return
    dev.address = mac
    dev.addr_random = False
    if dev.kind == "bridge":                    # br_set_mac_address → br_stp_change_bridge_id
        dev.bridge_id = mac
    rtmsg_ifinfo(dev)
    _notifiers("NETDEV_CHANGEADDR", dev)


def do_set_master(dev, ifindex: int) -> None:
    """``do_set_master``: leave the current master (unless it is the same), join the new one."""
    upper = dev.master
    if upper is not None:
        if upper.ifindex == ifindex:
            return
        del_slave(upper, dev)
    if ifindex:
        upper = dev.netns.links.by_index(ifindex)
        if upper is None:
            raise LinkError(-E.EINVAL)
        _upper_ops(upper)[0](upper, dev)


def del_slave(upper, dev) -> None:
    _upper_ops(upper)[1](upper, dev)


def _upper_ops(upper):
    """(ndo_add_slave, ndo_del_slave) of an upper device: bonds and bridges have them."""
    ops = {"bond": (bond_enslave, bond_release), "bridge": (br_add_if, br_del_if)}.get(upper.kind)
    if ops is None:
        raise LinkError(-E.EOPNOTSUPP)
    return ops


def bond_enslave(bond_dev, slave) -> None:
    """``bond_enslave``'s checks in the kernel's order, then: first slave gives the bond its
    MAC, the slave takes the bond's MTU and MAC, is opened, and joins the bond."""
    from devices.netdev import IFF_MASTER, IFF_SLAVE
    bond = bond_dev.bond
    if slave.flags & IFF_MASTER and slave.kind != "bond":
        raise LinkError(-E.EPERM, "Device type (master device) cannot be enslaved")
    if slave.master is not None:
        raise LinkError(-E.EBUSY, "Device is in use and cannot be enslaved")
    if slave is bond_dev:
        raise LinkError(-E.EPERM, "Cannot enslave bond to itself.")
    if slave.up:
        raise LinkError(-E.EPERM, "Device can not be enslaved while up")
    if bond.slaves and slave.type != bond_dev.type:
        raise LinkError(-E.EINVAL, "Device type is different from other slaves")
    upper = bond_dev
    while upper is not None:        # netdev_upper_dev_link: no loops
        if upper is slave:
            raise LinkError(-E.EBUSY)
        upper = upper.master
    if not bond.slaves and bond_dev.addr_random:
        bond_dev.address = slave.address
        bond_dev.addr_random = False
        rtmsg_ifinfo(bond_dev)
    slave.perm_hwaddr = slave.address
    slave.original_mtu = slave.mtu
    if slave.mtu != bond_dev.mtu:
        slave.mtu = bond_dev.mtu
        rtmsg_ifinfo(slave)
    slave.address = bond_dev.address
    slave.flags |= IFF_SLAVE
    dev_open(slave)
    bond.enslave(slave)
    slave.master = bond_dev
    rtmsg_ifinfo(slave)
    _notifiers("NETDEV_CHANGEUPPER", slave, upper=bond_dev, linking=True)
    _bond_set_carrier(bond_dev)


def bond_release(bond_dev, slave) -> None:
    """``__bond_release_one``: the slave leaves, gets its MTU and MAC back and is closed."""
    from devices.netdev import IFF_SLAVE
    bond = bond_dev.bond
    bond.release(slave)
    slave.master = None
    slave.flags &= ~IFF_SLAVE
    rtmsg_ifinfo(slave)
    _notifiers("NETDEV_CHANGEUPPER", slave, upper=bond_dev, linking=False)
    dev_close(slave)
    perm = getattr(slave, "perm_hwaddr", None)
    if perm is not None:
        slave.address = perm
    if getattr(slave, "original_mtu", None):
        slave.mtu = slave.original_mtu
    _bond_set_carrier(bond_dev)


def _bond_set_carrier(bond_dev) -> None:
    """``bond_set_carrier``: on while enough slaves run (802.3ad: min_links)."""
    from bonding.rtnl import params
    bond = bond_dev.bond
    usable = bond.usable_slaves()
    on = bool(usable) and bond_dev.up
    if bond.mode == "802.3ad":
        on = on and len(usable) >= max(1, params(bond).min_links)
    if bond_dev.set_carrier(on):
        rtmsg_ifinfo(bond_dev)
        _notifiers("NETDEV_CHANGE", bond_dev)     # linkwatch: addrconf, IPv6 linkdown


def br_add_if(br, dev) -> None:
    """``br_add_if`` (bare): the port goes promiscuous and the bridge takes the lowest port
    MAC unless one was set."""
    if dev.kind == "loopback":
        raise LinkError(-E.EINVAL)
    if dev.kind == "bridge":                    # also the bridge itself
        raise LinkError(-E.ELOOP, "Can not enslave a bridge to a bridge")
    if dev.master is not None:
        raise LinkError(-E.EBUSY, "Device is already enslaved")   # br_add_if: rx_handler busy
    used = {getattr(d, "br_port_no", 0) for d in br.netns.links if d.master is br}
    no = 1
    while no in used:                           # find_portno: the lowest free number
        no += 1
    dev.br_port_no = no
    dev.br_port_cost = _port_cost(dev)          # new_nbp → port_cost
    dev.__dict__.pop("brport", None)            # new_nbp: default flags and priority
    dev.master = br
    dev.promiscuity += 1
    dev.allmulti += 1
    _br_ports_changed(br, dev, linking=True)


def _br_ports_changed(br, dev, linking: bool) -> None:
    """What br_add_if and br_del_if both do after the port list changed: the port's new
    flags, the bridge's GSO limit, address/MTU and carrier, then NETDEV_CHANGEUPPER."""
    rtmsg_ifinfo(dev)
    _br_set_gso_limits(br)
    if br.features is not None:                 # br_add_if / br_del_if
        from devices.features import netdev_update_features
        netdev_update_features(br)
    _bridge_mac(br)
    _bridge_carrier(br)
    _notifiers("NETDEV_CHANGEUPPER", dev, upper=br, linking=linking)


def _br_set_gso_limits(br) -> None:
    """``br_set_gso_limits``: the smallest tso_max_size of the ports (TSO_MAX_SIZE without)."""
    ports = [d for d in br.netns.links if d.master is br]
    br.tso_max_size = min([524280] + [p.tso_max_size for p in ports])


def br_del_if(br, dev) -> None:
    dev.master = None
    dev.promiscuity = max(0, dev.promiscuity - 1)
    dev.allmulti = max(0, dev.allmulti - 1)
    _br_ports_changed(br, dev, linking=False)


def _bridge_mac(br) -> None:
    """``br_stp_recalculate_bridge_id``: the lowest port address; none left → zero."""
    ports = [d for d in br.netns.links if d.master is br]
    if not getattr(br, "mtu_set", False):
        # br_mtu_auto_adjust: the smallest port MTU, ETH_DATA_LEN without ports
        mtu = min(p.mtu for p in ports) if ports else 1500
        if mtu != br.mtu:
            br.mtu = mtu
            rtmsg_ifinfo(br)
    if getattr(br, "mac_set", False):
        br.bridge_id = br.address
        return
    new = min(p.address for p in ports) if ports else bytes(6)
    br.bridge_id = new
    if new != br.address:
        br.address = new
        rtmsg_ifinfo(br)


def unregister_many(devs: list, seq: int = 0, portid: int = 0) -> None:
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
            except LinkError:
                dev.master = None
        if getattr(dev, "bond", None) is not None:
            for s in list(dev.bond.slaves):
                bond_release(dev, s)
        if dev.kind == "bridge":
            for p in [d for d in dev.netns.links if d.master is dev]:
                br_del_if(dev, p)
        from . import addr
        addr.netdev_unregister(dev)
    nss = []
    for dev in devs:
        nss.append(dev.netns)
        dev.netns.links.unregister(dev)
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


class _Msg:
    """A parsed ifinfomsg request: header fields and ``tb`` (type → RawAttr)."""

    def __init__(self, req, off: int, end: int, hdr_offset: int):
        self.buf = req.buf
        self.hdr_offset = hdr_offset
        (self.family, self.type, self.index, self.flags,
         self.change) = IFINFOMSG.unpack_from(req.buf, off)
        tb, err, _ = parse_attrs(req.buf, off + IFINFOMSG.size, end, IFLA_POLICY, IFLA_MAX,
                                 hdr_offset=hdr_offset)
        self.error = err
        self.tb = tb

    def u32(self, t) -> int:
        return struct.unpack_from("=I", self.buf, self.tb[t].start)[0]

    def u8(self, t) -> int:
        return self.buf[self.tb[t].start]

    def raw(self, t) -> bytes:
        ra = self.tb[t]
        return bytes(self.buf[ra.start:ra.end])

    def name(self) -> str | None:
        return _str(self.buf, self.tb[IFLA_IFNAME]) if IFLA_IFNAME in self.tb else None

    def off(self, t) -> int:
        return self.tb[t].offset - self.hdr_offset


def _linkinfo_parse(m: _Msg):
    """(kind, data RawAttr, slave data RawAttr) or a Reply on a policy error."""
    if IFLA_LINKINFO not in m.tb:
        return None, None, None, None
    ra = m.tb[IFLA_LINKINFO]
    linfo, err, _ = parse_attrs(m.buf, ra.start, ra.end, IFLA_INFO_POLICY, 5,
                                hdr_offset=m.hdr_offset)
    if err is not None:
        return None, None, None, err
    kind = _str(m.buf, linfo[IFLA_INFO_KIND]) if IFLA_INFO_KIND in linfo else None
    return kind, linfo.get(IFLA_INFO_DATA), linfo.get(IFLA_INFO_SLAVE_DATA), None


def _bond_data(m: _Msg, data_ra):
    """Parse IFLA_INFO_DATA with bond_policy (nla_parse_nested_deprecated)."""
    from bonding.rtnl import IFLA_BOND_MAX, POLICY_TYPES
    pol = {t: NlaPolicy(v) for t, v in POLICY_TYPES.items()}
    pol[26] = NlaPolicy("binary", len=6)          # IFLA_BOND_AD_ACTOR_SYSTEM
    data, err, _ = parse_attrs(m.buf, data_ra.start, data_ra.end, pol, IFLA_BOND_MAX,
                               hdr_offset=m.hdr_offset)
    return data, err


def _random_mac() -> bytes:
    """``eth_hw_addr_random``: locally administered unicast."""
    b = bytearray(os.urandom(6))
    b[0] = (b[0] & 0xFE) | 0x02
    return bytes(b)


def _alloc_name(links, pattern: str) -> str:
    """``dev_alloc_name``: the lowest free %d."""
    i = 0
    while links.by_name(pattern % i) is not None:
        i += 1
    return pattern % i


def _new_device(kind: str, name: str):
    from devices.netdev import (IFF_BROADCAST, IFF_MASTER, IFF_MULTICAST, IFF_NOARP,
                                NetDevice)
    from xfrmd.topology import DRIVERS
    flags = IFF_BROADCAST | IFF_MULTICAST
    if kind == "dummy":
        flags = IFF_BROADCAST | IFF_NOARP
    elif kind == "bond":
        flags |= IFF_MASTER
    dev = NetDevice(name, kind, address=_random_mac(), driver=DRIVERS.get(kind, kind),
                    flags=flags)
    dev.rtnl_kind = kind
    dev.addr_random = True
    if kind == "dummy":
        dev.min_mtu = dev.max_mtu = 0
    elif kind == "veth":
        dev.num_tx_queues = dev.num_rx_queues = VETH_QUEUES
        dev.set_carrier(False)                      # veth_newlink: netif_carrier_off
    elif kind == "bridge":
        dev.tso_max_size = 65536
    elif kind == "bond":
        dev.num_tx_queues = dev.num_rx_queues = 16  # tx_queues module parameter
    elif kind == "xfrm":
        from .xfrmi import xfrmi_dev_setup
        xfrmi_dev_setup(dev)
    return dev


def _apply_create_attrs(dev, m: _Msg) -> None:
    """``rtnl_create_link``: MTU (validated), address, txqlen, queues."""
    if IFLA_MTU in m.tb:
        mtu = m.u32(IFLA_MTU)
        if mtu >= 1 << 31:
            mtu -= 1 << 32                        # an int in dev_validate_mtu
        if mtu < dev.min_mtu:
            raise LinkError(-E.EINVAL, "mtu less than device minimum", m.off(IFLA_MTU))
        if dev.max_mtu and mtu > dev.max_mtu:
            raise LinkError(-E.EINVAL, "mtu greater than device maximum", m.off(IFLA_MTU))
        dev.mtu = mtu
    if IFLA_ADDRESS in m.tb:
        mac = m.raw(IFLA_ADDRESS)
        if len(mac) != 6:
            raise LinkError(-E.EINVAL)
        if mac[0] & 1 or mac == bytes(6):
            raise LinkError(-E.EADDRNOTAVAIL)
        dev.address = mac
        dev.addr_random = False
        dev.mac_set = True
    if IFLA_TXQLEN in m.tb:
        dev.txqlen = m.u32(IFLA_TXQLEN)
    for t, what in ((IFLA_NUM_TX_QUEUES, "transmit"), (IFLA_NUM_RX_QUEUES, "receive")):
        if t in m.tb:
            n = m.u32(t)
            if n < 1 or n > 4096:
                raise LinkError(-E.EINVAL, f"Invalid number of {what} queues")
            if t == IFLA_NUM_TX_QUEUES:
                dev.num_tx_queues = n
            else:
                dev.num_rx_queues = n


def _register(links, dev, ifindex: int = 0) -> None:
    if links.by_name(dev.name) is not None:
        raise LinkError(-E.EEXIST)
    if ifindex and links.by_index(ifindex) is not None:
        raise LinkError(-E.EBUSY)
    links.register(dev, ifindex, reserve=bool(ifindex))   # dev_index_reserve: xa_insert
    if dev.kind != "bond":                      # bonds were set up before bond_changelink
        from devices import registry
        registry.setup_device(dev, {})


def rtnl_newlink_create(req, m: _Msg, kind: str, data_ra) -> Reply:
    try:                              # `ip link add … netns PID`: made in that namespace
        dest = target_net(req, m) or req.netns
    except LinkError as e:
        return e.reply()
    links = dest.links
    name = m.name()
    if name is not None and not _valid_name(name):
        return Reply(-E.EINVAL)
    if m.index and links.by_index(m.index) is not None:
        return Reply(-E.EBUSY)
    pattern = {"bridge": "bridge%d"}.get(kind, kind + "%d")
    name = name or _alloc_name(links, pattern)
    dev = _new_device(kind, name)
    created = []
    if kind == "xfrm":
        from .xfrmi import xfrmi_newlink
        bad = xfrmi_newlink(dest, dev, m.buf, data_ra)
        if bad is not None:
            return bad
    try:
        _apply_create_attrs(dev, m)
        if kind == "bond":
            from bonding.rtnl import OptError, bond_changelink
            from devices.registry import setup_device
            dev.netns = dest
            setup_device(dev, {"mode": "balance-rr"})
            if data_ra is not None:
                data, err = _bond_data(m, data_ra)
                if err is not None:
                    return err
                try:
                    bond_changelink(dev.bond, m.buf, data, links, m.hdr_offset)
                except OptError as e:
                    kw = {"offset": e.attr} if e.msg and e.attr is not None else {}
                    return Reply(e.errno, e.msg, **kw)
            dev.netns = None
        if kind == "veth":
            peer_name, peer_m = None, None
            if data_ra is not None:
                for ra in kernel_attrs(m.buf, data_ra.start, data_ra.end)[0]:
                    if ra.type == VETH_INFO_PEER and ra.end - ra.start >= IFINFOMSG.size:
                        peer_m = _Msg(req, ra.start, ra.end, m.hdr_offset)
                        if peer_m.error is not None:
                            return peer_m.error
                        peer_name = peer_m.name()
            if peer_name is not None and not _valid_name(peer_name):
                return Reply(-E.EINVAL)
            # the peer's own IFLA_NET_NS_PID puts it in another namespace (veth_newlink)
            peer_net = (target_net(req, peer_m) if peer_m is not None else None) or req.netns
            peer_links = peer_net.links
            peer = _new_device("veth", peer_name or _alloc_name(peer_links, "veth%d"))
            if peer_m is not None:
                _apply_create_attrs(peer, peer_m)
            # veth_newlink registers the peer first and announces it (IFLA_LINK still 0)
            dev.peer, peer.peer = peer, dev
            # rtnl_newlink_peer: the peer's ifi_index counts only when the device's does
            _register(peer_links, peer, peer_m.index if peer_m is not None and m.index else 0)
            created.append(peer)
            rtmsg_ifinfo(peer, change=0xFFFFFFFF)
        _register(links, dev, m.index)
        created.append(dev)
        if kind == "bond":
            dev.set_carrier(False)                  # bond_newlink: netif_carrier_off
        elif kind == "dummy":
            pass
        # rtnl_configure_link: with the request's seq and port (echoed under NLM_F_ECHO)
        rtmsg_ifinfo(dev, change=0xFFFFFFFF, seq=req.hdr.seq, portid=req.sock.portid)
        if m.flags & 1 and (m.change & 1 or m.change == 0):
            dev_open(dev)
        if IFLA_MASTER in m.tb:
            do_set_master(dev, m.u32(IFLA_MASTER))
    except LinkError as e:
        if created:
            unregister_many(created[::-1] if kind == "veth" and len(created) == 2 else created)
        return e.reply()
    return Reply()


def target_net(req, m: _Msg):
    """``rtnl_link_get_net_ifla``: the namespace IFLA_NET_NS_PID names (that of the process's
    netlink sockets), None without one. A namespace fd (``netns NAME``) names a real
    namespace, which is none of the emulated ones."""
    if IFLA_NET_NS_PID in m.tb:
        from .netns import get_net_ns_by_pid
        ns = get_net_ns_by_pid(req.kernel, m.u32(IFLA_NET_NS_PID))
        if ns is None:
            raise LinkError(-E.ESRCH)
        return ns
    if IFLA_NET_NS_FD in m.tb:
        from .netns import get_net_ns_by_fd
        ns = get_net_ns_by_fd(req, m.u32(IFLA_NET_NS_FD))
        if ns is None:
            raise LinkError(-E.EOPNOTSUPP, "xfrmd: this namespace file names no emulated "
                            "namespace (a real one, or opened without the shim): use netns NAME "
                            "of an emulated namespace under the shim, netns PID, or xfrmd ctl "
                            "link DEV netns NS")
        return ns
    if IFLA_TARGET_NETNSID in m.tb:
        raise LinkError(-E.EOPNOTSUPP, "xfrmd: IFLA_TARGET_NETNSID is not modelled")
    return None


def do_setlink(req, dev, m: _Msg) -> None:
    """``do_setlink`` in the kernel's order (raises LinkError)."""
    from devices.netdev import IFF_UP
    tgt_net = target_net(req, m)
    if tgt_net is not None:
        from .netns import NetnsError, dev_change_net_namespace
        new_ifindex = struct.unpack_from("=i", m.buf, m.tb[IFLA_NEW_IFINDEX].start)[0] \
            if IFLA_NEW_IFINDEX in m.tb else 0
        try:
            dev_change_net_namespace(dev, tgt_net, m.name() if IFLA_IFNAME in m.tb else None,
                                     new_ifindex)
        except NetnsError as e:
            raise LinkError(e.errno, e.msg) from None
    if IFLA_ADDRESS in m.tb:
        if len(m.raw(IFLA_ADDRESS)) < len(dev.address):
            raise LinkError(-E.EINVAL)              # validate_linkmsg: no message
        dev_set_mac_address(dev, m.raw(IFLA_ADDRESS), m.off(IFLA_ADDRESS))
        dev.mac_set = True
    if IFLA_MTU in m.tb:
        dev_set_mtu(dev, m.u32(IFLA_MTU), m.off(IFLA_MTU))
        dev.mtu_set = True
    if m.index > 0 and IFLA_IFNAME in m.tb:
        dev_change_name(dev, m.name())
    state_change = False
    if IFLA_IFALIAS in m.tb:                        # dev_set_alias; an empty one clears it
        alias = _str(m.buf, m.tb[IFLA_IFALIAS])
        if len(alias.encode()) >= IFALIASZ:         # ifla_policy: .len = IFALIASZ - 1
            raise LinkError(-E.ERANGE, "Attribute failed policy validation",
                            m.off(IFLA_IFALIAS))
        dev.ifalias = alias
        state_change = True
    if m.flags or m.change:
        change = m.change or 0xFFFFFFFF           # rtnl_dev_combine_flags
        # __dev_change_flags: the plain flags first (IFF_NOARP: `ip link set arp off`), then
        # open or close; __dev_notify_flags announces all that changed in one message
        mask = change & IFF_CHANGEABLE
        old = dev.flags
        dev.flags = (old & ~mask) | (m.flags & mask)
        gchanges = old ^ dev.flags
        if change & IFF_UP and bool(m.flags & IFF_UP) != dev.up:
            if m.flags & IFF_UP:
                dev_open(dev, gchanges)
            else:
                dev_close(dev, gchanges)
        elif gchanges:
            rtmsg_ifinfo(dev, change=gchanges)
        if change & IFF_UP:
            if dev.master is not None and getattr(dev.master, "bond", None) is not None:
                _bond_set_carrier(dev.master)
            elif dev.master is not None and dev.master.kind == "bridge":
                _bridge_carrier(dev.master)
            if dev.kind == "bond":
                _bond_set_carrier(dev)
    if IFLA_MASTER in m.tb:
        do_set_master(dev, m.u32(IFLA_MASTER))
    if IFLA_CARRIER in m.tb:
        raise LinkError(-E.EOPNOTSUPP)               # change_carrier: no ndo here
    if IFLA_TXQLEN in m.tb:
        q = m.u32(IFLA_TXQLEN)
        if q != dev.txqlen:
            if q > 0x7FFFFFFF:
                raise LinkError(-E.ERANGE)
            dev.txqlen = q
            rtmsg_ifinfo(dev)
    if state_change and dev.up:
        rtmsg_ifinfo(dev)                          # DO_SETLINK_NOTIFY: netdev_state_change


def _changelink(req, dev, m: _Msg, kind, data_ra) -> Reply | None:
    if data_ra is None:
        return None
    if kind != dev.kind or dev.rtnl_kind is None and dev.kind not in RTNL_KINDS:
        return Reply(-E.EOPNOTSUPP)
    if kind == "bond":
        from bonding.rtnl import OptError, bond_changelink
        data, err = _bond_data(m, data_ra)
        if err is not None:
            return err
        try:
            bond_changelink(dev.bond, m.buf, data, req.netns.links, m.hdr_offset)
        except OptError as e:
            kw = {"offset": e.attr} if e.msg and e.attr is not None else {}
            return Reply(e.errno, e.msg, **kw)
        finally:
            rtmsg_ifinfo(dev)
        return None
    if kind == "xfrm":
        from .xfrmi import xfrmi_changelink
        bad = xfrmi_changelink(req.netns, dev, m.buf, data_ra)
        if bad is None and dev.up:
            rtmsg_ifinfo(dev)                       # xfrmi_update: netdev_state_change
        return bad
    if kind in ("veth", "dummy"):
        return Reply(-E.EOPNOTSUPP)                 # rtnl_changelink: no ops->changelink
    return Reply(-E.EOPNOTSUPP, "xfrmd: bridge options are not modelled")


def _ifinfomsg(req):
    """The ifinfomsg header and attributes of a NEWLINK/SETLINK/DELLINK, or the Reply that
    refuses it (a short header, an attribute the policy rejects)."""
    if req.hdr.len - 16 < IFINFOMSG.size:
        return Reply(-E.EINVAL, "Invalid header length")
    m = _Msg(req, req.payload_offset, req.end, req.hdr.offset)
    return m.error if m.error is not None else m


@rtnl_handler(RTM_NEWLINK)
def rtnl_newlink(req):
    m = _ifinfomsg(req)
    if isinstance(m, Reply):
        return m
    links = req.netns.links
    if m.index > 0:
        dev, specified = links.by_index(m.index), True
    elif m.index < 0:
        return Reply(-E.EINVAL, "ifindex can't be negative")
    elif IFLA_IFNAME in m.tb:
        dev, specified = links.by_name(m.name()), True
    else:
        dev, specified = None, False
    kind, data_ra, _slave_ra, err = _linkinfo_parse(m)
    if err is not None:
        return err
    kernel = req.netns.kernel
    if kind == "netdevsim" and kconfig.link_kind_built(kernel, kind):
        # nsim_link_ops.validate, run before the device lookup: ports come from sysfs only
        return Reply(-E.EOPNOTSUPP, NSIM_VALIDATE_MSG)
    # rtnl_link_ops_get: a kind the kernel was built without has no ops
    known = kind in RTNL_KINDS and kconfig.link_kind_built(kernel, kind)
    if dev is not None:
        if req.hdr.flags & NLM_F_EXCL:
            return Reply(-E.EEXIST)
        if req.hdr.flags & NLM_F_REPLACE:
            return Reply(-E.EOPNOTSUPP)
        if kind is not None and not known and data_ra is not None:
            return Reply(-E.EOPNOTSUPP)
        bad = _changelink(req, dev, m, kind, data_ra)
        if bad is not None:
            return bad
        try:
            do_setlink(req, dev, m)
        except LinkError as e:
            return e.reply()
        return Reply()
    if not req.hdr.flags & NLM_F_CREATE:
        return Reply(-E.ENODEV)                      # also the empty probe ip sends
    if IFLA_MAP in m.tb or IFLA_PROTINFO in m.tb:
        return Reply(-E.EOPNOTSUPP)
    if not known:
        return Reply(-E.EOPNOTSUPP, "Unknown device type")
    return rtnl_newlink_create(req, m, kind, data_ra)


@rtnl_handler(RTM_SETLINK)
def rtnl_setlink(req):
    m = _ifinfomsg(req)
    if isinstance(m, Reply):
        return m
    links = req.netns.links
    if m.index > 0:
        dev = links.by_index(m.index)
    elif IFLA_IFNAME in m.tb:
        dev = links.by_name(m.name())
    else:
        return Reply(-E.EINVAL)                     # rtnl_setlink without a device
    if dev is None:
        return Reply(-E.ENODEV)
    try:
        do_setlink(req, dev, m)
    except LinkError as e:
        return e.reply()
    return Reply()


@rtnl_handler(RTM_DELLINK)
def rtnl_dellink(req):
    """``rtnl_dellink``: by index or name; devices without rtnl_link_ops (lo, hardware ports)
    → EOPNOTSUPP; a veth takes its peer along; a bond releases its slaves first. Offloaded
    SAs do not block it: NETDEV_UNREGISTER flushes them (xfrm_dev_event)."""
    m = _ifinfomsg(req)
    if isinstance(m, Reply):
        return m
    links = req.netns.links
    if m.index > 0:
        dev = links.by_index(m.index)
    elif m.index < 0:
        return Reply(-E.EINVAL, "ifindex can't be negative")
    elif IFLA_IFNAME in m.tb:
        dev = links.by_name(m.name())
    else:
        return Reply(-E.EINVAL)
    if dev is None:
        return Reply(-E.ENODEV)
    if dev.kind not in RTNL_KINDS:
        return Reply(-E.EOPNOTSUPP)
    devs = [dev]
    if dev.kind == "veth" and dev.peer is not None and dev.peer.netns is not None:
        devs.append(dev.peer)
    unregister_many(devs, req.hdr.seq, req.sock.portid)
    return Reply()
