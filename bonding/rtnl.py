"""The bond's rtnetlink side (drivers/net/bonding/bond_netlink.c, bond_options.c): the
IFLA_INFO_DATA options a bond takes on RTM_NEWLINK (``bond_changelink`` through
``__bond_opt_set``, with the kernel's errno and extack), and what ``bond_fill_info`` /
``bond_fill_slave_info`` put in IFLA_LINKINFO for ``ip -d link show``.

Bonding cannot be loaded on the machine the differential tests run on, so the attribute
order and defaults follow the kernel source (6.16+: COUPLED_CONTROL and BROADCAST_NEIGH are
emitted; iproute2 6.1 ignores them) and are cross-checked with pyroute2's decoder."""
from __future__ import annotations

import errno as E
import struct
from typing import TYPE_CHECKING, Any, Callable

from devices.netdev import IFF_MASTER, NetDevice
from netlink_codec.netlink import (RawAttr, kernel_attrs, nla, nla_s32, nla_u8, nla_u16,
                                   nla_u32)
from xfrmd.errors import KernelError
from xfrmd.netlink.nlattr import NlaPolicy
from xfrmd.rtnl.link import LinkMsg, NewLink, RtnlLinkOps, register_netdevice, rtmsg_ifinfo

from .bond import MODES, Bond, bond_create, params
from .enslave import bond_enslave, bond_release, bond_set_carrier, bond_uninit

if TYPE_CHECKING:
    from xfrmd.netlink.core import Request

RR, AB, XOR, BCAST, AD, TLB, ALB = range(7)
XMIT_HASH = ["layer2", "layer3+4", "layer2+3", "encap2+3", "encap3+4", "vlan+srcmac"]
BOND_DEFAULT_MIIMON = 100
INT_MAX = 0x7FFFFFFF

(IFLA_BOND_MODE, IFLA_BOND_ACTIVE_SLAVE, IFLA_BOND_MIIMON, IFLA_BOND_UPDELAY,
 IFLA_BOND_DOWNDELAY, IFLA_BOND_USE_CARRIER, IFLA_BOND_ARP_INTERVAL, IFLA_BOND_ARP_IP_TARGET,
 IFLA_BOND_ARP_VALIDATE, IFLA_BOND_ARP_ALL_TARGETS, IFLA_BOND_PRIMARY,
 IFLA_BOND_PRIMARY_RESELECT, IFLA_BOND_FAIL_OVER_MAC, IFLA_BOND_XMIT_HASH_POLICY,
 IFLA_BOND_RESEND_IGMP, IFLA_BOND_NUM_PEER_NOTIF, IFLA_BOND_ALL_SLAVES_ACTIVE,
 IFLA_BOND_MIN_LINKS, IFLA_BOND_LP_INTERVAL, IFLA_BOND_PACKETS_PER_SLAVE,
 IFLA_BOND_AD_LACP_RATE, IFLA_BOND_AD_SELECT, IFLA_BOND_AD_INFO, IFLA_BOND_AD_ACTOR_SYS_PRIO,
 IFLA_BOND_AD_USER_PORT_KEY, IFLA_BOND_AD_ACTOR_SYSTEM, IFLA_BOND_TLB_DYNAMIC_LB,
 IFLA_BOND_PEER_NOTIF_DELAY, IFLA_BOND_AD_LACP_ACTIVE, IFLA_BOND_MISSED_MAX,
 IFLA_BOND_NS_IP6_TARGET, IFLA_BOND_COUPLED_CONTROL, IFLA_BOND_BROADCAST_NEIGH) = range(1, 34)
IFLA_BOND_MAX = 33
(IFLA_BOND_AD_INFO_AGGREGATOR, IFLA_BOND_AD_INFO_NUM_PORTS, IFLA_BOND_AD_INFO_ACTOR_KEY,
 IFLA_BOND_AD_INFO_PARTNER_KEY, IFLA_BOND_AD_INFO_PARTNER_MAC) = range(1, 6)
(IFLA_BOND_SLAVE_STATE, IFLA_BOND_SLAVE_MII_STATUS, IFLA_BOND_SLAVE_LINK_FAILURE_COUNT,
 IFLA_BOND_SLAVE_PERM_HWADDR, IFLA_BOND_SLAVE_QUEUE_ID, IFLA_BOND_SLAVE_AD_AGGREGATOR_ID,
 IFLA_BOND_SLAVE_AD_ACTOR_OPER_PORT_STATE, IFLA_BOND_SLAVE_AD_PARTNER_OPER_PORT_STATE,
 IFLA_BOND_SLAVE_PRIO) = range(1, 10)

_ARP_MODES = {AD, TLB, ALB}             # modes where ARP monitoring is not supported


def _all_ex(*modes: int) -> set[int]:
    return set(range(7)) - set(modes)


def _opt_error(errno: int, msg: str | None, attr: int | None) -> KernelError:
    """A ``__bond_opt_set`` failure: errno, extack text (None: no message) and the
    attribute, whose offset the extack carries only with a message."""
    return KernelError(errno, msg, offset=attr if msg and attr is not None else None)


# option: (unsupported modes, flags, (min, max) or table of values)
NOSLAVES, IFDOWN = 1, 2
OPTS = {
    "mode": (set(), NOSLAVES | IFDOWN, (0, 6)),
    "packets_per_slave": (_all_ex(RR), 0, (0, 65535)),
    "xmit_hash_policy": (set(), 0, (0, 5)),
    "arp_validate": (_ARP_MODES, 0, (0, 6)),
    "arp_all_targets": (set(), 0, (0, 1)),
    "fail_over_mac": (set(), NOSLAVES, (0, 2)),
    "arp_interval": (_ARP_MODES, 0, (0, INT_MAX)),
    "arp_missed_max": (_ARP_MODES, 0, (1, 255)),
    "downdelay": (set(), 0, (0, INT_MAX)),
    "updelay": (set(), 0, (0, INT_MAX)),
    "lacp_active": (_all_ex(AD), IFDOWN, (0, 1)),
    "lacp_rate": (_all_ex(AD), IFDOWN, (0, 1)),
    "min_links": (set(), 0, (0, INT_MAX)),
    "ad_select": (set(), IFDOWN, (0, 2)),
    "num_unsol_na": (set(), 0, (0, 255)),
    "miimon": (set(), 0, (0, INT_MAX)),
    "primary": (_all_ex(AB, TLB, ALB), 0, None),
    "primary_reselect": (set(), 0, (0, 2)),
    "use_carrier": (set(), 0, (0, 1)),
    "active_slave": (_all_ex(AB, TLB, ALB), 0, None),
    "all_slaves_active": (set(), 0, (0, 1)),
    "resend_igmp": (set(), 0, (0, 255)),
    "lp_interval": (set(), 0, (1, INT_MAX)),
    "tlb_dynamic_lb": (_all_ex(TLB, ALB), IFDOWN, (0, 1)),
    "ad_actor_sys_prio": (_all_ex(AD), 0, (1, 65535)),
    "ad_actor_system": (_all_ex(AD), 0, None),
    "ad_user_port_key": (_all_ex(AD), IFDOWN, (0, 1023)),
    "peer_notif_delay": (set(), 0, (0, 300000)),
    "coupled_control": (_all_ex(AD), IFDOWN, (0, 1)),
    "broadcast_neighbor": (_all_ex(AD), 0, (0, 1)),
}


def bond_opt_set(bond: Bond, name: str, value: Any, attr: int | None = None) -> None:
    """``__bond_opt_set``: dependencies (mode, slaves, up), value range, then the setter.
    Raises KernelError with ``bond_opt_error_interpret``'s extack."""
    unsupp, flags, rng = OPTS[name]
    mode = MODES.index(bond.mode)
    if mode in unsupp:                                  # bond_opt_check_deps → -EACCES
        raise _opt_error(E.EACCES, "option not supported in mode", attr)
    if flags & NOSLAVES and bond.slaves:
        raise _opt_error(E.ENOTEMPTY,
                       "unable to set option because the bond device has slaves", attr)
    if flags & IFDOWN and bond.dev.up:
        raise _opt_error(E.EBUSY, "unable to set option because the bond is up", attr)
    if rng is not None and not (rng[0] <= value <= rng[1]):    # bond_opt_parse → -EINVAL
        raise _opt_error(E.EINVAL, "invalid option value", attr)
    _SETTERS.get(name, _plain(name))(bond, value, attr)


Setter = Callable[[Bond, Any, "int | None"], None]


def _plain(field_name: str) -> Setter:
    def set_(bond: Bond, value: Any, attr: int | None) -> None:
        setattr(params(bond), field_name, value)
    return set_


def _set_mode(bond: Bond, value: int, attr: int | None) -> None:
    """``bond_option_mode_set``: modes without ARP monitoring get miimon 100 if it was 0."""
    p = params(bond)
    if value in _ARP_MODES:
        p.arp_interval = 0
        if not p.miimon:
            p.miimon = BOND_DEFAULT_MIIMON
    if value == ALB:
        p.tlb_dynamic_lb = 1
    p.arp_validate = 0
    p.broadcast_neighbor = 0
    bond.set_mode(MODES[value])        # flushes LAG-offloaded SAs as the models require
    bond.miimon = p.miimon


def _set_miimon(bond: Bond, value: int, attr: int | None) -> None:
    p = params(bond)
    p.miimon = value
    bond.miimon = value
    if value and p.arp_interval:
        p.arp_interval = 0
        p.arp_validate = 0


def _delay(field_name: str) -> Setter:
    """``_bond_option_delay_set``: -EPERM without a message when miimon is off; stored as a
    multiple of miimon (rounded down)."""
    def set_(bond: Bond, value: int, attr: int | None) -> None:
        p = params(bond)
        if not p.miimon:
            raise _opt_error(E.EPERM, None, attr)
        setattr(p, field_name, value // p.miimon)
    return set_


def _set_arp_interval(bond: Bond, value: int, attr: int | None) -> None:
    p = params(bond)
    p.arp_interval = value
    if value and p.miimon:
        p.miimon = 0
        bond.miimon = 0


def _set_active_slave(bond: Bond, value: NetDevice | None, attr: int | None) -> None:
    """``bond_option_active_slave_set``: value is a device or None."""
    if value is None:
        bond.change_active(bond._select())
        return
    if value.master is None or getattr(value.master, "bond", None) is None:
        raise _opt_error(E.EINVAL, "invalid option value", attr)
    if value.master is not bond.dev:
        raise _opt_error(E.EINVAL, "invalid option value", attr)
    if value is bond.active:
        return
    if bond.active is not None and bond._usable(value):
        bond.change_active(value)
    else:
        raise _opt_error(E.EINVAL, "invalid option value", attr)


def _set_primary(bond: Bond, value: str, attr: int | None) -> None:
    params(bond).primary = value
    bond.primary = next((s for s in bond.slaves if s.name == value), None) if value else None


def _set_xmit_hash_policy(bond: Bond, value: int, attr: int | None) -> None:
    bond.set_xmit_hash_policy(XMIT_HASH[value])


_SETTERS: dict[str, Setter] = {
    "mode": _set_mode, "miimon": _set_miimon, "updelay": _delay("updelay"),
    "downdelay": _delay("downdelay"), "peer_notif_delay": _delay("peer_notif_delay"),
    "arp_interval": _set_arp_interval, "active_slave": _set_active_slave,
    "primary": _set_primary, "num_unsol_na": _plain("num_peer_notif"),
    "arp_missed_max": _plain("missed_max"), "lacp_rate": _plain("lacp_fast"),
    "ad_select": _plain("ad_select"), "broadcast_neighbor": _plain("broadcast_neighbor"),
    "xmit_hash_policy": _set_xmit_hash_policy,
}


# ---------------------------------------------------------------------------------------
# IFLA_INFO_DATA in: bond_changelink


# attribute → (option name, struct format)
_CHANGELINK = [
    (IFLA_BOND_MODE, "mode", "B"), (IFLA_BOND_ACTIVE_SLAVE, "active_slave", "I"),
    (IFLA_BOND_MIIMON, "miimon", "I"), (IFLA_BOND_UPDELAY, "updelay", "I"),
    (IFLA_BOND_DOWNDELAY, "downdelay", "I"), (IFLA_BOND_PEER_NOTIF_DELAY, "peer_notif_delay", "I"),
    (IFLA_BOND_USE_CARRIER, "use_carrier", "B"), (IFLA_BOND_ARP_INTERVAL, "arp_interval", "I"),
    (IFLA_BOND_ARP_IP_TARGET, "arp_ip_target", None),
    (IFLA_BOND_ARP_VALIDATE, "arp_validate", "I"),
    (IFLA_BOND_ARP_ALL_TARGETS, "arp_all_targets", "I"), (IFLA_BOND_PRIMARY, "primary", "I"),
    (IFLA_BOND_PRIMARY_RESELECT, "primary_reselect", "B"),
    (IFLA_BOND_FAIL_OVER_MAC, "fail_over_mac", "B"),
    (IFLA_BOND_XMIT_HASH_POLICY, "xmit_hash_policy", "B"),
    (IFLA_BOND_RESEND_IGMP, "resend_igmp", "I"), (IFLA_BOND_NUM_PEER_NOTIF, "num_unsol_na", "B"),
    (IFLA_BOND_ALL_SLAVES_ACTIVE, "all_slaves_active", "B"),
    (IFLA_BOND_MIN_LINKS, "min_links", "I"), (IFLA_BOND_LP_INTERVAL, "lp_interval", "I"),
    (IFLA_BOND_PACKETS_PER_SLAVE, "packets_per_slave", "I"),
    (IFLA_BOND_AD_LACP_ACTIVE, "lacp_active", "B"), (IFLA_BOND_AD_LACP_RATE, "lacp_rate", "B"),
    (IFLA_BOND_AD_SELECT, "ad_select", "B"), (IFLA_BOND_AD_ACTOR_SYS_PRIO, "ad_actor_sys_prio", "H"),
    (IFLA_BOND_AD_USER_PORT_KEY, "ad_user_port_key", "H"),
    (IFLA_BOND_AD_ACTOR_SYSTEM, "ad_actor_system", None),
    (IFLA_BOND_TLB_DYNAMIC_LB, "tlb_dynamic_lb", "B"), (IFLA_BOND_MISSED_MAX, "arp_missed_max", "B"),
    (IFLA_BOND_COUPLED_CONTROL, "coupled_control", "B"),
    (IFLA_BOND_BROADCAST_NEIGH, "broadcast_neighbor", "B"),
]
# bond_policy: NLA types by attribute (for the nested parse with nlattr.parse_attrs)
POLICY_TYPES = {a: {"B": "u8", "H": "u16", "I": "u32"}[f] for a, _, f in _CHANGELINK if f}
POLICY_TYPES[IFLA_BOND_ARP_IP_TARGET] = "nested"
POLICY_TYPES[IFLA_BOND_NS_IP6_TARGET] = "nested"
POLICY_TYPES[IFLA_BOND_AD_INFO] = "nested"


def bond_changelink(bond: Bond, buf: Any, data: dict[int, RawAttr], links: Any,
                    hdr_offset: int) -> None:
    """Apply the parsed IFLA_INFO_DATA attributes (``data``: type → RawAttr) in the
    kernel's order; raises KernelError on the first failure (earlier options stay set, as in
    the kernel)."""
    miimon = 0
    for atype, name, fmt in _CHANGELINK:
        ra = data.get(atype)
        if ra is None:
            continue
        off = ra.offset - hdr_offset
        if name == "arp_ip_target":
            p = params(bond)
            p.arp_targets = []
            for t in kernel_attrs(buf, ra.start, ra.end)[0]:
                if t.end - t.start < 4:
                    raise _opt_error(E.EINVAL, None, off)
                p.arp_targets.append(bytes(buf[t.start:t.start + 4]))
            continue
        if name == "ad_actor_system":
            if ra.end - ra.start != 6:
                raise _opt_error(E.EINVAL, None, off)
            mac = bytes(buf[ra.start:ra.end])
            unsupp, _, _ = OPTS[name]
            if MODES.index(bond.mode) in unsupp:
                raise _opt_error(E.EACCES, "option not supported in mode", off)
            if mac[0] & 1 or mac == bytes(6):        # bond_option_ad_actor_system_set
                raise _opt_error(E.EINVAL, "invalid option value", off)
            params(bond).ad_actor_system = mac
            continue
        assert fmt is not None                      # the two options without one went above
        (value,) = struct.unpack_from("=" + fmt, buf, ra.start)
        if name == "active_slave":
            dev = None
            if value:
                dev = links.by_index(value)
                if dev is None:
                    raise _opt_error(E.ENODEV, None, off)
            bond_opt_set(bond, name, dev, off)
            continue
        if name == "primary":
            dev = links.by_index(value)
            bond_opt_set(bond, name, dev.name if dev else "", off)
            continue
        if name == "miimon":
            miimon = value
        if name == "arp_interval" and value and miimon:
            raise _opt_error(E.EINVAL, "ARP monitoring cannot be used with MII monitoring", off)
        if name == "arp_validate" and value and miimon:
            raise _opt_error(E.EINVAL, "ARP validating cannot be used with MII monitoring", off)
        bond_opt_set(bond, name, value, off)


# ---------------------------------------------------------------------------------------
# IFLA_INFO_DATA out: bond_fill_info, bond_fill_slave_info


def _agg_slaves(bond: Bond) -> list[NetDevice]:
    return bond.usable_slaves()


def _speed_code(slave: NetDevice) -> int:
    """``__get_link_speed`` for the emulated ports (100G NICs; veth 10G; dummy unknown)."""
    return {"veth": 7, "dummy": 0, "loopback": 0, "bridge": 0, "bond": 0}.get(slave.kind, 14)


# what bond_fill_info puts after the primary, in its order: (put, attribute, the bond_params
# field; None: the bond's xmit hash policy)
_FILL_PARAMS: tuple[tuple[Callable[[int, int], bytes], int, str | None], ...] = (
    (nla_u8, IFLA_BOND_PRIMARY_RESELECT, "primary_reselect"),
    (nla_u8, IFLA_BOND_FAIL_OVER_MAC, "fail_over_mac"), (nla_u8, IFLA_BOND_XMIT_HASH_POLICY, None),
    (nla_u32, IFLA_BOND_RESEND_IGMP, "resend_igmp"),
    (nla_u8, IFLA_BOND_NUM_PEER_NOTIF, "num_peer_notif"),
    (nla_u8, IFLA_BOND_ALL_SLAVES_ACTIVE, "all_slaves_active"),
    (nla_u32, IFLA_BOND_MIN_LINKS, "min_links"), (nla_u32, IFLA_BOND_LP_INTERVAL, "lp_interval"),
    (nla_u32, IFLA_BOND_PACKETS_PER_SLAVE, "packets_per_slave"),
    (nla_u8, IFLA_BOND_AD_LACP_ACTIVE, "lacp_active"),
    (nla_u8, IFLA_BOND_AD_LACP_RATE, "lacp_fast"), (nla_u8, IFLA_BOND_AD_SELECT, "ad_select"),
    (nla_u8, IFLA_BOND_TLB_DYNAMIC_LB, "tlb_dynamic_lb"),
    (nla_u8, IFLA_BOND_MISSED_MAX, "missed_max"),
    (nla_u8, IFLA_BOND_COUPLED_CONTROL, "coupled_control"),
    (nla_u8, IFLA_BOND_BROADCAST_NEIGH, "broadcast_neighbor"))


def bond_fill_info(bond: Bond, cap_net_admin: bool = True) -> bytes:
    p = params(bond)
    mode = MODES.index(bond.mode)
    out = [nla_u8(IFLA_BOND_MODE, mode)]
    active = bond.active if mode in (AB, TLB, ALB) else None
    if active is not None:
        out.append(nla_u32(IFLA_BOND_ACTIVE_SLAVE, active.ifindex))
    out += [nla_u32(IFLA_BOND_MIIMON, p.miimon),
            nla_u32(IFLA_BOND_UPDELAY, p.updelay * p.miimon),
            nla_u32(IFLA_BOND_DOWNDELAY, p.downdelay * p.miimon),
            nla_u32(IFLA_BOND_PEER_NOTIF_DELAY, p.peer_notif_delay * p.miimon),
            nla_u8(IFLA_BOND_USE_CARRIER, p.use_carrier),
            nla_u32(IFLA_BOND_ARP_INTERVAL, p.arp_interval)]
    if p.arp_targets:           # nla_nest_start_noflag; cancelled when empty
        out.append(nla(IFLA_BOND_ARP_IP_TARGET,
                       b"".join(nla(i, t) for i, t in enumerate(p.arp_targets))))
    out += [nla_u32(IFLA_BOND_ARP_VALIDATE, p.arp_validate),
            nla_u32(IFLA_BOND_ARP_ALL_TARGETS, p.arp_all_targets)]
    if p.ns_targets:            # nla_nest_start (NLA_F_NESTED)
        out.append(nla(IFLA_BOND_NS_IP6_TARGET | 0x8000,
                       b"".join(nla(i, t) for i, t in enumerate(p.ns_targets))))
    primary = bond.primary
    if primary is not None and primary in bond.slaves:
        out.append(nla_u32(IFLA_BOND_PRIMARY, primary.ifindex))
    hash_no = XMIT_HASH.index(bond.xmit_hash_policy) if bond.xmit_hash_policy in XMIT_HASH else 0
    out += [put(t, hash_no if f is None else getattr(p, f)) for put, t, f in _FILL_PARAMS]
    if mode == AD:
        if cap_net_admin:
            out += [nla_u16(IFLA_BOND_AD_ACTOR_SYS_PRIO, p.ad_actor_sys_prio),
                    nla_u16(IFLA_BOND_AD_USER_PORT_KEY, p.ad_user_port_key),
                    nla(IFLA_BOND_AD_ACTOR_SYSTEM, p.ad_actor_system)]
        agg = _agg_slaves(bond)
        if agg:                 # bond_3ad_get_active_agg_info: only with an active aggregator
            speed = _speed_code(agg[0])      # no speed → no full duplex bit either
            key = (p.ad_user_port_key << 6) | (speed << 1) | (1 if speed else 0)
            out.append(nla(IFLA_BOND_AD_INFO,
                           nla_u16(IFLA_BOND_AD_INFO_AGGREGATOR, 1) +
                           nla_u16(IFLA_BOND_AD_INFO_NUM_PORTS, len(agg)) +
                           nla_u16(IFLA_BOND_AD_INFO_ACTOR_KEY, key) +
                           nla_u16(IFLA_BOND_AD_INFO_PARTNER_KEY, 1) +
                           nla(IFLA_BOND_AD_INFO_PARTNER_MAC, bytes(6))))
    return b"".join(out)


def bond_fill_slave_info(bond: Bond, slave: NetDevice) -> bytes:
    mode = MODES.index(bond.mode)
    usable = bond._usable(slave)
    if mode in (AB, TLB, ALB):
        backup = slave is not bond.active
    elif mode == AD:
        backup = not usable
    else:
        backup = False
    perm = getattr(slave, "perm_hwaddr", None) or slave.address
    out = [nla_u8(IFLA_BOND_SLAVE_STATE, 1 if backup else 0),
           nla_u8(IFLA_BOND_SLAVE_MII_STATUS, 0 if slave.carrier else 2),
           nla_u32(IFLA_BOND_SLAVE_LINK_FAILURE_COUNT, getattr(slave, "link_failure_count", 0)),
           nla(IFLA_BOND_SLAVE_PERM_HWADDR, perm),
           nla_u16(IFLA_BOND_SLAVE_QUEUE_ID, slave.bond_queue_id),
           nla_s32(IFLA_BOND_SLAVE_PRIO, slave.bond_prio)]
    if mode == AD:
        lacp_fast = params(bond).lacp_fast
        # activity | aggregation | sync | defaulted (no LACP partner), timeout bit = lacp_rate
        state = 0x4D | (0x02 if lacp_fast else 0)
        out += [nla_u16(IFLA_BOND_SLAVE_AD_AGGREGATOR_ID, 1 if usable else 2),
                nla_u8(IFLA_BOND_SLAVE_AD_ACTOR_OPER_PORT_STATE, state),
                nla_u16(IFLA_BOND_SLAVE_AD_PARTNER_OPER_PORT_STATE, 1)]
    return b"".join(out)


# ---------------------------------------------------------------------------------------
# IFLA_INFO_SLAVE_DATA in: bond_slave_changelink

# bond_slave_policy: QUEUE_ID NLA_U16, PRIO NLA_S32 (the other port attributes are dump-only
# and ignored); a payload shorter than that fails validate_nla
_SLAVE_POLICY_LEN = {IFLA_BOND_SLAVE_QUEUE_ID: 2, IFLA_BOND_SLAVE_PRIO: 4}


def bond_option_queue_id_set(bond: Bond, slave: NetDevice, qid: int,
                             off: int | None) -> None:
    """``bond_option_queue_id_set`` (given "NAME:QID" by ``bond_slave_changelink``): a queue
    id above the bond's real_num_tx_queues (16 is still taken: the kernel compares with
    ``>``), or a non-zero id another port already has, is -EPERM, and
    ``bond_opt_error_interpret`` sets no extack message for it."""
    if qid > bond.dev.num_tx_queues:
        raise _opt_error(E.EPERM, None, off)
    if qid and any(s.bond_queue_id == qid for s in bond.slaves if s is not slave):
        raise _opt_error(E.EPERM, None, off)
    slave.bond_queue_id = qid


def bond_option_prio_set(bond: Bond, slave: NetDevice, prio: int, off: int | None) -> None:
    """``__bond_opt_set(BOND_OPT_PRIO)``: only active-backup, balance-tlb and balance-alb
    (-EACCES, bond_opt_dep_print's message otherwise); ``bond_option_prio_set`` stores it
    and, without a primary, reselects the active port (``bond_select_active_slave``)."""
    if MODES.index(bond.mode) not in (AB, TLB, ALB):
        raise _opt_error(E.EACCES, "option not supported in mode", off)
    slave.bond_prio = prio
    if bond.primary is None:
        bond_select_active_slave(bond)


def bond_select_active_slave(bond: Bond) -> None:
    """``bond_select_active_slave`` → ``bond_choose_primary_or_current`` without a primary:
    the first usable port of the highest prio; it replaces a running current one only
    under primary_reselect always (the default: better compares speed and duplex, equal
    for the ports here; failure keeps the current one)."""
    best = bond.best_slave()
    cur = bond.active
    if best is None or best is cur:
        return
    if cur is not None and bond._usable(cur) and params(bond).primary_reselect != 0:
        return
    bond.change_active(best)


def bond_slave_changelink(bond_dev: NetDevice, slave: NetDevice, tb: dict[int, bytes]) -> None:
    """``bond_slave_changelink``: `ip link set D type bond_slave queue_id N prio P`. Queue
    id first, then prio; the first failure ends it (a queue id set before stays).
    rtnl_changelink then sets DO_SETLINK_NOTIFY: a running port is announced
    (``netdev_state_change``)."""
    bond = bond_dev.bond
    offsets: dict[int, int] = getattr(tb, "offsets", {})
    for t, size in _SLAVE_POLICY_LEN.items():        # validate_nla of bond_slave_policy
        if t in tb and len(tb[t]) < size:
            raise KernelError(E.ERANGE, "Attribute failed policy validation",
                              offset=offsets.get(t))
    if IFLA_BOND_SLAVE_QUEUE_ID in tb:
        (qid,) = struct.unpack_from("=H", tb[IFLA_BOND_SLAVE_QUEUE_ID])
        bond_option_queue_id_set(bond, slave, qid, offsets.get(IFLA_BOND_SLAVE_QUEUE_ID))
    if IFLA_BOND_SLAVE_PRIO in tb:
        (prio,) = struct.unpack_from("=i", tb[IFLA_BOND_SLAVE_PRIO])
        bond_option_prio_set(bond, slave, prio, offsets.get(IFLA_BOND_SLAVE_PRIO))


# ---------------------------------------------------------------------------------------
# bond_link_ops


# bond_policy: the u8/u16/u32 options, the nested target lists and the actor system MAC
BOND_POLICY = {t: NlaPolicy(v) for t, v in POLICY_TYPES.items()}
BOND_POLICY[IFLA_BOND_AD_ACTOR_SYSTEM] = NlaPolicy("binary", len=6)


def bond_setup(dev: NetDevice) -> None:
    """``bond_setup``: a master with the tx_queues module parameter's 16 queues."""
    dev.flags |= IFF_MASTER
    dev.num_tx_queues = dev.num_rx_queues = 16


def bond_newlink(nl: NewLink) -> None:
    """``bond_newlink``: the bond in balance-rr, its IFLA_INFO_DATA options (the device is
    in its namespace meanwhile: active_slave and primary name devices there), then
    ``register_netdevice`` and ``netif_carrier_off``."""
    dev = nl.dev
    dev.netns = nl.net
    bond_create(dev, {"mode": "balance-rr"})
    if nl.data is not None:
        data = nl.m.parse_data(nl.data, BOND_POLICY, IFLA_BOND_MAX)
        bond_changelink(dev.bond, nl.m.buf, data, nl.net.links, nl.m.hdr_offset)
    dev.netns = None
    register_netdevice(nl.net.links, dev, nl.m.index)
    dev.set_carrier(False)


def bond_changelink_msg(req: Request, dev: NetDevice, m: LinkMsg, data_ra: RawAttr) -> None:
    """``bond_changelink`` of an existing bond; the bond is announced whether the options
    applied or one failed (the ones before it stay)."""
    data = m.parse_data(data_ra, BOND_POLICY, IFLA_BOND_MAX)
    try:
        bond_changelink(dev.bond, m.buf, data, req.netns.links, m.hdr_offset)
    finally:
        rtmsg_ifinfo(dev)


def _fill_info(dev: NetDevice, cap_net_admin: bool) -> bytes:
    return bond_fill_info(dev.bond, cap_net_admin)


def _fill_slave_info(bond_dev: NetDevice, slave: NetDevice) -> bytes:
    return bond_fill_slave_info(bond_dev.bond, slave)


BOND_LINK_OPS = RtnlLinkOps(
    kind="bond", driver="bonding", setup=bond_setup, newlink=bond_newlink,
    changelink=bond_changelink_msg, policy=BOND_POLICY, maxtype=IFLA_BOND_MAX,
    fill_info=_fill_info, slave_kind="bond",
    fill_slave_info=_fill_slave_info, slave_changelink=bond_slave_changelink, add_slave=bond_enslave, del_slave=bond_release,
    netns_immutable=True, uninit=bond_uninit, lower_updown=bond_set_carrier,
    updown=bond_set_carrier)
