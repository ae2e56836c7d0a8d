"""The bridge link kind (net/bridge/br_netlink.c ``br_link_ops``, ``br_fill_info``,
``br_port_fill_attrs``; br_if.c ``br_add_if`` / ``br_del_if``; br_stp_if.c's bridge id): a
bare bridge with no STP and no VLANs, whose ports carry their ``bridge_slave`` data and
the settings ``br_setport`` changes (xfrmd/rtnl/bridge.py, the PF_BRIDGE messages)."""
from __future__ import annotations

import errno as E
import struct
from typing import TYPE_CHECKING, Any

from devices.features import netdev_update_features
from devices.netdev import NetDevice, call_netdevice_notifiers
from netlink_codec.netlink import (NETLINK_ROUTE, NLA_F_NESTED, RawAttr, encode_msg, nla,
                                   nla_string, nla_u8, nla_u16, nla_u32, nla_u64)

from ..errors import KernelError
from .br_fdb import br_fdb_delete_by_port, br_fdb_flush
from .ethtool import link_speed
from .link import IFINFOMSG, RTNLGRP_LINK, LinkMsg, RtnlLinkOps, dev_net, rtmsg_ifinfo
from .linkdata import BRIDGE_INFO_DATA

if TYPE_CHECKING:
    from ..netlink.core import Request

# IFLA_BR_BRIDGE_ID / IFLA_BR_ROOT_ID in the captured br_fill_info: 8-byte ifla_bridge_id
_BR_ID_AT = [BRIDGE_INFO_DATA.index(bytes.fromhex(h)) + 4
             for h in ("0c000b008000", "0c000a008000")]

AF_BRIDGE, RTM_NEWLINK = 7, 16
IFLA_ADDRESS, IFLA_IFNAME, IFLA_MTU, IFLA_LINK, IFLA_MASTER = 1, 3, 4, 5, 10
IFLA_PROTINFO, IFLA_OPERSTATE = 12, 16

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
BR_MAX_PATH_COST, BR_MAX_PORT_PRIORITY, BR_STATE_BLOCKING = 65535, 63, 4
MDB_RTR_TYPE_TEMP = 3

# the port flags br_setport sets from IFLA_BRPORT_* u8 attributes, with new_nbp's defaults
BRPORT_FLAG_DEFAULTS = {
    BRPORT_MODE: 0, BRPORT_GUARD: 0, BRPORT_PROTECT: 0, BRPORT_FAST_LEAVE: 0,
    BRPORT_MCAST_TO_UCAST: 0, BRPORT_LEARNING: 1, BRPORT_UNICAST_FLOOD: 1,
    BRPORT_MCAST_FLOOD: 1, BRPORT_BCAST_FLOOD: 1, BRPORT_PROXYARP: 0, BRPORT_PROXYARP_WIFI: 0,
    BRPORT_VLAN_TUNNEL: 0, BRPORT_NEIGH_SUPPRESS: 0, BRPORT_ISOLATED: 0, BRPORT_LOCKED: 0,
    BRPORT_MAB: 0, BRPORT_NEIGH_VLAN_SUPPRESS: 0}


def _bridge_id(br: NetDevice) -> bytes:
    """``br->bridge_id``: priority 0x8000, then the address br_stp_recalculate_bridge_id
    chose (zero until a port came or an address was set)."""
    return b"\x80\x00" + getattr(br, "bridge_id", bytes(6))


def br_fill_info(br: NetDevice, cap_net_admin: bool = True) -> bytes:
    """``br_fill_info`` of a bare bridge (STP off, defaults) with its bridge id; the timers
    read 0."""
    data = bytearray(BRIDGE_INFO_DATA)
    for at in _BR_ID_AT:
        data[at:at + 8] = _bridge_id(br)
    return bytes(data)


def brport(p: NetDevice) -> dict[Any, int]:
    """The port's settings (flags, priority, multicast router type), created on first use."""
    d: dict[Any, int] | None = getattr(p, "brport", None)
    if d is None:
        d = {**BRPORT_FLAG_DEFAULTS, "priority": 0x20, "mcast_router": 1}
        p.brport = d
    return d


def br_port_fill_attrs(br: NetDevice, p: NetDevice) -> bytes:
    """``br_port_fill_attrs`` for a port of a bare bridge: STP off, so a running port of a
    running bridge forwards and any other is disabled; the flags, cost, priority and
    multicast router type as set (``bridge link set``); timers and multicast group counts
    read 0."""
    state = BR_STATE_FORWARDING if br.up and p.up and p.carrier else BR_STATE_DISABLED
    no = getattr(p, "br_port_no", 0) or 1
    cfg = brport(p)
    port_id = (cfg["priority"] << 10) | no       # br_make_port_id(priority, no)
    bid = _bridge_id(br)
    u8 = nla_u8

    def flag(t: int) -> bytes:
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


def _u(v: bytes, fmt: str) -> int:
    n = struct.calcsize(fmt)
    if len(v) < n:
        raise KernelError(E.ERANGE)                  # br_port_policy: too short
    value: int = struct.unpack_from(fmt, v)[0]
    return value


def br_setport(dev: NetDevice, tb: dict[int, bytes]) -> None:
    """``br_setport``: the flags first (kept even when a later attribute fails, as the
    kernel keeps them), then path cost, priority, state and multicast router type."""
    cfg = brport(dev)
    for t in BRPORT_FLAG_DEFAULTS:
        if t in tb:
            cfg[t] = 1 if _u(tb[t], "=B") else 0
    if cfg[BRPORT_MAB] and not cfg[BRPORT_LEARNING]:
        raise KernelError(E.EINVAL, "Cannot enable MAB on a port with learning disabled")
    if cfg[BRPORT_MAB] and not cfg[BRPORT_LOCKED]:
        raise KernelError(E.EINVAL, "Cannot enable MAB on an unlocked port")
    if BRPORT_COST in tb:                           # br_stp_set_path_cost
        cost = _u(tb[BRPORT_COST], "=I")
        if cost < 1 or cost > BR_MAX_PATH_COST:
            raise KernelError(E.ERANGE)
        dev.br_port_cost = cost
    if BRPORT_PRIORITY in tb:                       # br_stp_set_port_priority
        prio = _u(tb[BRPORT_PRIORITY], "=H")
        if prio > BR_MAX_PORT_PRIORITY:
            raise KernelError(E.ERANGE)
        cfg["priority"] = prio
    if BRPORT_STATE in tb:                          # br_set_port_state
        state = _u(tb[BRPORT_STATE], "=B")
        if state > BR_STATE_BLOCKING:
            raise KernelError(E.EINVAL)
        if not dev.up or (not dev.carrier and state != 0):
            raise KernelError(E.ENETDOWN)
        raise KernelError(E.EOPNOTSUPP, "xfrmd: setting a bridge port's STP state is not "
                          "modelled (STP is off: a running port forwards)")
    if BRPORT_MULTICAST_ROUTER in tb:               # br_multicast_set_port_router
        rtr = _u(tb[BRPORT_MULTICAST_ROUTER], "=B")
        if rtr > MDB_RTR_TYPE_TEMP:
            raise KernelError(E.EINVAL)
        cfg["mcast_router"] = rtr
    known = set(BRPORT_FLAG_DEFAULTS) | {BRPORT_COST, BRPORT_PRIORITY, BRPORT_STATE,
                                         BRPORT_MULTICAST_ROUTER}
    other = sorted(set(tb) - known)
    if other:
        raise KernelError(E.EOPNOTSUPP, f"xfrmd: bridge port attribute {other[0]} is not "
                          "modelled")


def is_port(dev: NetDevice) -> bool:
    """``br_port_exists``: the device's master is a bridge."""
    return dev.master is not None and dev.master.kind == "bridge"


def br_fill_ifinfo(dev: NetDevice, seq: int, portid: int, flags: int) -> bytes:
    """``br_fill_ifinfo``: the device in AF_BRIDGE form; a port with its IFLA_PROTINFO."""
    br = dev.master if dev.master is not None and is_port(dev) else dev
    body = IFINFOMSG.pack(AF_BRIDGE, dev.type, dev.ifindex, dev.dev_flags(), 0)
    body += nla_string(IFLA_IFNAME, dev.name) + nla_u32(IFLA_MASTER, br.ifindex)
    body += nla_u32(IFLA_MTU, dev.mtu) + nla_u8(IFLA_OPERSTATE, dev.operstate)
    if dev.address:
        body += nla(IFLA_ADDRESS, dev.address)
    if dev.kind == "veth" and dev.peer is not None and dev.peer.netns is not None:
        body += nla_u32(IFLA_LINK, dev.peer.ifindex)     # dev_get_iflink differs
    if br is not dev:
        body += nla(IFLA_PROTINFO | NLA_F_NESTED, br_port_fill_attrs(br, dev))
    return encode_msg(RTM_NEWLINK, flags, seq, portid, body)


def br_ifinfo_notify(dev: NetDevice) -> None:
    """``br_ifinfo_notify(RTM_NEWLINK, NULL, p)``: the port to RTNLGRP_LINK."""
    ns = dev_net(dev)
    ns.kernel.multicast(ns, NETLINK_ROUTE, RTNLGRP_LINK, br_fill_ifinfo(dev, 0, 0, 0))


def br_port_slave_changelink(br: NetDevice, dev: NetDevice, tb: dict[int, bytes]) -> None:
    """``br_port_slave_changelink``: IFLA_INFO_SLAVE_DATA of an RTM_NEWLINK on a port
    (`ip link set D type bridge_slave cost 200`, pyroute2's ``brport('set')``) goes to
    ``br_setport`` as IFLA_PROTINFO does; rtnl_newlink announces the port afterwards."""
    br_setport(dev, tb)


def br_fill_slave_info(br: NetDevice, p: NetDevice) -> bytes:
    """``br_port_fill_slave_info``: the port's IFLA_INFO_SLAVE_DATA."""
    return br_port_fill_attrs(br, p)


# port_cost: speed in Mb/s → STP path cost (any other speed: 1 above 10G, else 100)
_PORT_COSTS = {10000: 2, 5000: 3, 2500: 4, 1000: 4, 100: 19, 10: 100, 0xFFFFFFFF: 100}


def _port_cost(dev: NetDevice) -> int:
    """``port_cost``: from the ethtool speed (10G: 2, faster: 1, unknown or none: 100)."""
    speed = link_speed(dev)
    if speed is None:
        return 100
    if speed in _PORT_COSTS:
        return _PORT_COSTS[speed]
    return 1 if speed > 10000 else 100


def _ports(br: NetDevice) -> list[NetDevice]:
    return [d for d in dev_net(br).links if d.master is br]


def bridge_carrier(br: NetDevice, notify: bool = True) -> None:
    """``br_port_carrier_check``: a bridge has carrier while one of its ports runs."""
    on = any(p.up and p.carrier for p in _ports(br))
    if br.set_carrier(on) and notify:
        rtmsg_ifinfo(br)


def br_dev_open(br: NetDevice) -> list[NetDevice]:
    """``br_dev_open``: the carrier its ports give it, without a message of its own."""
    bridge_carrier(br, notify=False)
    return []


def br_set_mac_address(br: NetDevice, mac: bytes) -> None:
    """``br_set_mac_address`` → ``br_stp_change_bridge_id``."""
    br.bridge_id = mac


def br_add_if(br: NetDevice, dev: NetDevice) -> None:
    """``br_add_if`` (bare): the port goes promiscuous and the bridge takes the lowest port
    MAC unless one was set."""
    if dev.kind == "loopback":
        raise KernelError(E.EINVAL)
    if dev.kind == "bridge":                    # also the bridge itself
        raise KernelError(E.ELOOP, "Can not enslave a bridge to a bridge")
    if dev.master is not None:
        raise KernelError(E.EBUSY, "Device is already enslaved")   # rx_handler busy
    used = {getattr(d, "br_port_no", 0) for d in _ports(br)}
    no = 1
    while no in used:                           # find_portno: the lowest free number
        no += 1
    dev.br_port_no = no
    dev.br_port_cost = _port_cost(dev)          # new_nbp → port_cost
    dev.brport = None                           # new_nbp: default flags and priority
    dev.master = br
    dev.promiscuity += 1
    dev.allmulti += 1
    _br_ports_changed(br, dev, linking=True)


def _br_ports_changed(br: NetDevice, dev: NetDevice, linking: bool) -> None:
    """What br_add_if and br_del_if both do after the port list changed: the port's new
    flags, the bridge's GSO limit, address/MTU and carrier, then NETDEV_CHANGEUPPER."""
    rtmsg_ifinfo(dev)
    _br_set_gso_limits(br)
    if br.features is not None:                 # br_add_if / br_del_if
        netdev_update_features(br)
    _bridge_mac(br)
    bridge_carrier(br)
    call_netdevice_notifiers("NETDEV_CHANGEUPPER", dev, upper=br, linking=linking)


def _br_set_gso_limits(br: NetDevice) -> None:
    """``br_set_gso_limits``: the smallest tso_max_size of the ports (TSO_MAX_SIZE without)."""
    br.tso_max_size = min([524280] + [p.tso_max_size for p in _ports(br)])


def br_del_if(br: NetDevice, dev: NetDevice) -> None:
    br_fdb_delete_by_port(br, dev)
    dev.master = None
    dev.promiscuity = max(0, dev.promiscuity - 1)
    dev.allmulti = max(0, dev.allmulti - 1)
    _br_ports_changed(br, dev, linking=False)


def br_dev_delete(br: NetDevice) -> None:
    """``br_dev_delete``: every port leaves before the bridge goes."""
    for p in _ports(br):
        br_del_if(br, p)
    br_fdb_flush(br)


def _bridge_mac(br: NetDevice) -> None:
    """``br_stp_recalculate_bridge_id``: the lowest port address; none left → zero."""
    ports = _ports(br)
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


def br_dev_setup(br: NetDevice) -> None:
    br.tso_max_size = 65536


def br_changelink(req: Request, br: NetDevice, m: LinkMsg, data: RawAttr) -> None:
    raise KernelError(E.EOPNOTSUPP, "xfrmd: bridge options are not modelled")


BRIDGE_LINK_OPS = RtnlLinkOps(
    kind="bridge", driver="bridge", setup=br_dev_setup, changelink=br_changelink,
    fill_info=br_fill_info, slave_kind="bridge", fill_slave_info=br_fill_slave_info,
    slave_changelink=br_port_slave_changelink,
    add_slave=br_add_if, del_slave=br_del_if, netns_immutable=True, open=br_dev_open,
    set_mac_address=br_set_mac_address, uninit=br_dev_delete,
    port_carrier_check=bridge_carrier, port_state_change=br_ifinfo_notify,
    lower_updown=bridge_carrier)
