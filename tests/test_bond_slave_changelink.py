"""A bond port's own options (`ip link set D type bond_slave queue_id N prio P`,
IFLA_INFO_SLAVE_DATA): ``bond_slave_changelink`` through ``bond_option_queue_id_set`` and
``bond_option_prio_set`` with their errno and extack, ``bond_fill_slave_info``'s dump, the
RTM_NEWLINK that DO_SETLINK_NOTIFY sends, /proc/net/bonding and `ip -d link show`. Bonding
cannot be loaded on the differential machine: expectations follow the kernel source."""
from __future__ import annotations

import errno as E
import re
import struct

from netlink_codec.netlink import nla, nla_string, nla_u8, nla_u32
from xfrmd.rtnl.link import fill_ifinfo

from .test_rtnl import IFLA_LINKINFO, RTM_NEWLINK, Rt, _xfrmd_run

QUEUE_ID, PRIO = 5, 9


def slave_data(body: bytes, kind: str = "bond_slave") -> bytes:
    # iproute2: IFLA_INFO_KIND "bond_slave", IFLA_INFO_SLAVE_DATA
    return nla(IFLA_LINKINFO, nla_string(1, kind) + nla(5, body))


def u16(t, v):
    return nla(t, struct.pack("=H", v))


def s32(t, v):
    return nla(t, struct.pack("=i", v))


def _bond(mode: int):
    rt = Rt()
    assert rt.add("bond0", "bond", nla_u8(1, mode) + nla_u32(3, 100)) == (0, None)
    for n in ("d0", "d1"):
        assert rt.add(n, "dummy") == (0, None)
        assert rt.enslave(n, "bond0") == (0, None)
    rt.up("bond0")
    rt.events()
    return rt


def _slave_attrs(dev) -> dict[int, bytes]:
    """IFLA_INFO_SLAVE_DATA of the device's RTM_NEWLINK, type → payload."""
    from netlink_codec import netlink as N
    msg = fill_ifinfo(dev, RTM_NEWLINK, 1, 1)
    for ra in N.iter_attrs(msg, 32, len(msg)):
        if ra.type == IFLA_LINKINFO:
            for li in N.iter_attrs(msg, ra.start, ra.end):
                if li.type == 5:
                    return {a.type: bytes(msg[a.start:a.end])
                            for a in N.iter_attrs(msg, li.start, li.end)}
    raise AssertionError("no IFLA_INFO_SLAVE_DATA")


def test_queue_id_set_dumped_and_announced():
    rt = _bond(0)                                       # balance-rr
    d0, d1 = rt.links.by_name("d0"), rt.links.by_name("d1")
    assert rt.set("d0", extra=slave_data(u16(QUEUE_ID, 3))) == (0, None)
    assert _slave_attrs(d0)[QUEUE_ID] == struct.pack("=H", 3)
    assert _slave_attrs(d0)[PRIO] == struct.pack("=i", 0)
    # DO_SETLINK_NOTIFY: netdev_state_change of the running port, change 0
    assert rt.events() == [(RTM_NEWLINK, d0.ifindex, 0)]
    assert "Slave queue ID: 3" in d0.master.bond.proc_text()
    # a duplicate non-zero id on another port, an id above num_tx_queues: -EPERM, no text
    assert rt.set("d1", extra=slave_data(u16(QUEUE_ID, 3))) == (-E.EPERM, None)
    assert rt.set("d1", extra=slave_data(u16(QUEUE_ID, 17))) == (-E.EPERM, None)
    assert rt.events() == []
    assert rt.set("d1", extra=slave_data(u16(QUEUE_ID, 16))) == (0, None)   # `>`, not `>=`
    assert rt.set("d1", extra=slave_data(u16(QUEUE_ID, 0))) == (0, None)
    assert rt.set("d0", extra=slave_data(u16(QUEUE_ID, 0))) == (0, None)
    assert _slave_attrs(d1)[QUEUE_ID] == b"\0\0"
    # bond_slave_policy: NLA_U16 of one byte
    assert rt.set("d0", extra=slave_data(nla(QUEUE_ID, b"\x01"))) == \
        (-E.ERANGE, "Attribute failed policy validation")
    # prio is for active-backup / tlb / alb only
    assert rt.set("d0", extra=slave_data(s32(PRIO, 5))) == \
        (-E.EACCES, "option not supported in mode")
    # a device without a bond master: rtnl_changelink has no m_ops
    assert rt.add("d2", "dummy") == (0, None)
    assert rt.set("d2", extra=slave_data(u16(QUEUE_ID, 1)))[0] == -E.EOPNOTSUPP
    # released and enslaved again: a new struct slave, queue id 0
    assert rt.set("d0", extra=slave_data(u16(QUEUE_ID, 4))) == (0, None)
    assert rt.set("d0", extra=nla_u32(10, 0)) == (0, None)
    assert rt.enslave("d0", "bond0") == (0, None)
    assert _slave_attrs(d0)[QUEUE_ID] == b"\0\0"


def test_prio_reselects_the_active_port():
    rt = _bond(1)                                       # active-backup
    bond = rt.links.by_name("bond0").bond
    d0, d1 = rt.links.by_name("d0"), rt.links.by_name("d1")
    assert bond.active is d0
    assert rt.set("d1", extra=slave_data(s32(PRIO, 10))) == (0, None)
    assert bond.active is d1                            # bond_select_active_slave
    assert _slave_attrs(d1)[PRIO] == struct.pack("=i", 10)
    assert rt.set("d0", extra=slave_data(s32(PRIO, -3))) == (0, None)
    assert _slave_attrs(d0)[PRIO] == struct.pack("=i", -3)
    assert bond.active is d1
    # queue id applied before a failing prio stays (bond_slave_changelink's order)
    assert rt.set("d0", extra=slave_data(u16(QUEUE_ID, 2) + nla(PRIO, b"\0\0"))) == \
        (-E.ERANGE, "Attribute failed policy validation")
    assert _slave_attrs(d0)[QUEUE_ID] == b"\0\0"      # policy runs before any option


def test_ip_link_set_type_bond_slave_prints_queue_id_and_prio():
    p = _xfrmd_run("ip link add bond0 type bond mode active-backup miimon 100 && "
                   "ip link add d0 type dummy && ip link add d1 type dummy && "
                   "ip link set d0 master bond0 && ip link set d1 master bond0 && "
                   "ip link set bond0 up && "
                   "ip link set d1 type bond_slave queue_id 5 prio 7 && "
                   "ip -d link show d1 && cat /proc/net/bonding/bond0; "
                   "ip link set d0 type bond_slave queue_id 5; echo rc=$?; "
                   "ip link set d0 type bond_slave queue_id 17; echo rc=$?")
    assert p.returncode == 0, p.stderr
    # iproute2's bond_slave print_opt: queue_id, then prio
    assert re.search(r"^    bond_slave state ACTIVE mii_status UP link_failure_count 0 "
                     r"perm_hwaddr ([0-9a-f]{2}:){5}[0-9a-f]{2} queue_id 5 prio 7 addrgenmode ",
                     p.stdout, re.M), p.stdout
    assert "Currently Active Slave: d1" in p.stdout
    assert "Slave Interface: d1\n" in p.stdout and "Slave queue ID: 5" in p.stdout
    assert "Slave prio" not in p.stdout     # bond_info_show_slave prints no prio
    assert p.stdout.count("rc=2") == 2
    assert p.stderr.count("RTNETLINK answers: Operation not permitted") == 2


def test_extack_points_at_the_refused_attribute():
    """NL_SET_ERR_MSG_ATTR(bad_attr): the offset rtnl_changelink's slave data gives is the
    attribute's own, from the nlmsghdr."""
    import pytest

    from bonding.rtnl import bond_slave_changelink
    from xfrmd.errors import KernelError
    from xfrmd.rtnl.link import SlaveData
    rt = _bond(4)                                       # 802.3ad: prio not supported
    tb = SlaveData({QUEUE_ID: struct.pack("=H", 1), PRIO: struct.pack("=i", 1)})
    tb.offsets = {QUEUE_ID: 60, PRIO: 68}
    with pytest.raises(KernelError) as ei:
        bond_slave_changelink(rt.links.by_name("bond0"), rt.links.by_name("d1"), tb)
    assert (ei.value.errno, ei.value.msg, ei.value.offset) == \
        (E.EACCES, "option not supported in mode", 68)
    assert rt.links.by_name("d1").bond_queue_id == 1    # queue id went first and stays
    tb[QUEUE_ID] = struct.pack("=H", 1)
    with pytest.raises(KernelError) as ei:              # d0 may not take d1's id: no text
        bond_slave_changelink(rt.links.by_name("bond0"), rt.links.by_name("d0"), tb)
    assert (ei.value.errno, ei.value.msg, ei.value.offset) == (E.EPERM, None, None)
