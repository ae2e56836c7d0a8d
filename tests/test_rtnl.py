"""rtnetlink links on the sans-IO kernel: creating and deleting dummy/veth/bridge/bond, bond
options through IFLA_INFO_DATA with bond_options.c's errno and extack, bond_enslave's rules,
notifications, no partial device after a failure; plus `ip -d link show bond0` through
`xfrmd run` (bonding is not loadable on the differential machine: the expected text follows
bond_fill_info and iproute2 6.1's print_opt, cross-checked with pyroute2's decoder)."""
from __future__ import annotations

import errno as E
import shutil
import struct
import subprocess
import sys

import pytest

from .conftest import require

from netlink_codec import netlink as N
from netlink_codec.netlink import encode_msg, nla, nla_string, nla_u8, nla_u32
from xfrmd.testing import make_kernel

RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK = 16, 17, 18
F_REQ_ACK = N.NLM_F_REQUEST | N.NLM_F_ACK
CREATE = F_REQ_ACK | 0x400 | 0x200          # NLM_F_CREATE | NLM_F_EXCL
IFLA_IFNAME, IFLA_MTU, IFLA_MASTER, IFLA_LINKINFO = 3, 4, 10, 18


def ifinfo(index=0, flags=0, change=0) -> bytes:
    return struct.pack("=BxHiII", 0, 0, index, flags, change)


def linkinfo(kind: str, data: bytes = b"") -> bytes:
    body = nla_string(1, kind) + (nla(2, data) if data else b"")
    return nla(IFLA_LINKINFO, body)


class Rt:
    def __init__(self, topology="bare"):
        self.k = make_kernel(topology)
        self.s = self.k.socket(N.NETLINK_ROUTE)
        self.k.bind(self.s)
        self.k.setsockopt(self.s, N.SOL_NETLINK, N.NETLINK_EXT_ACK, 1)
        self.ev = self.k.socket(N.NETLINK_ROUTE)
        self.k.bind(self.ev, groups=1 | (1 << 4) | (1 << 8))    # LINK, IPV4/IPV6_IFADDR
        self.seq = 0
        self.links = self.k.netns("default").links

    def req(self, t, flags, body) -> tuple[int, str | None]:
        self.seq += 1
        self.k.deliver(self.s, encode_msg(t, flags, self.seq, 0, body))
        err, msg = 0, None
        while True:
            d = self.k.recv(self.s)
            if d is None:
                break
            for h in N.split_messages(d):
                if h.type == N.NLMSG_ERROR:
                    (err,) = struct.unpack_from("=i", d, h.offset + 16)
                    if h.flags & N.NLM_F_ACK_TLVS:
                        # the echoed request: its header only on success, whole on error
                        off = h.offset + 20 + 16
                        if err:
                            (olen,) = struct.unpack_from("=I", d, h.offset + 20)
                            off = h.offset + 20 + olen
                        for ra in N.iter_attrs(d, off, h.offset + h.len):
                            if ra.type == N.NLMSGERR_ATTR_MSG:
                                msg = bytes(d[ra.start:ra.end]).rstrip(b"\0").decode()
        return err, msg

    def events(self) -> list[tuple[int, int, int]]:
        out = []
        while True:
            d = self.k.recv(self.ev)
            if d is None:
                return out
            for h in N.split_messages(d):
                fam, _, idx, _, change = struct.unpack_from("=BxHiII", d, h.offset + 16)
                out.append((h.type, idx, change))

    def add(self, name, kind, data=b"", extra=b"", flags=CREATE):
        return self.req(RTM_NEWLINK, flags,
                        ifinfo() + nla_string(IFLA_IFNAME, name) + extra + linkinfo(kind, data))

    def set(self, name, flags=0, change=0, extra=b""):
        dev = self.links.by_name(name)
        return self.req(RTM_NEWLINK, F_REQ_ACK, ifinfo(dev.ifindex, flags, change) + extra)

    def up(self, name):
        return self.set(name, 1, 1)

    def down(self, name):
        return self.set(name, 0, 1)

    def enslave(self, name, master):
        return self.set(name, extra=nla_u32(IFLA_MASTER, self.links.by_name(master).ifindex))

    def names(self):
        return [(d.ifindex, d.name) for d in self.links]


def test_empty_newlink_probe_is_enodev():
    rt = Rt()
    assert rt.req(RTM_NEWLINK, F_REQ_ACK, ifinfo()) == (-E.ENODEV, None)


def test_create_each_kind_numbering_like_the_kernel():
    rt = Rt()
    assert rt.add("d0", "dummy") == (0, None)
    peer = nla(1, ifinfo() + nla_string(IFLA_IFNAME, "v1"))
    assert rt.add("v0", "veth", peer) == (0, None)
    assert rt.add("br0", "bridge") == (0, None)
    assert rt.add("bond0", "bond") == (0, None)
    # veth_newlink registers the peer first
    assert rt.names() == [(1, "lo"), (2, "d0"), (3, "v1"), (4, "v0"), (5, "br0"), (6, "bond0")]
    ev = rt.events()
    assert [(t, i) for t, i, _ in ev] == [(16, 2), (16, 3), (16, 4), (16, 5), (16, 6)]
    assert all(c == 0xFFFFFFFF for _, _, c in ev)
    # deleting one end takes the other: DELLINK for both, in the kernel's order
    assert rt.req(RTM_DELLINK, F_REQ_ACK, ifinfo(4)) == (0, None)
    assert [(t, i) for t, i, _ in rt.events()] == [(17, 4), (17, 3)]
    # ifindexes are not reused (dev_index_reserve is cyclic)
    assert rt.add("d1", "dummy") == (0, None)
    assert rt.links.by_name("d1").ifindex == 7


def test_bad_input_leaves_nothing_behind():
    rt = Rt()
    before = rt.names()
    assert rt.add("x0", "token-ring") == (-E.EOPNOTSUPP, "Unknown device type")
    # IFLA_MTU of two bytes: the policy's minimum length
    err, msg = rt.add("d0", "dummy", extra=nla(IFLA_MTU, b"\x00\x05"))
    assert (err, msg) == (-E.ERANGE, "Attribute failed policy validation")
    assert rt.add("d0", "dummy", extra=nla_u32(IFLA_MTU, 70000)) == (0, None)  # dummy: no max
    rt.req(RTM_DELLINK, F_REQ_ACK, ifinfo(rt.links.by_name("d0").ifindex))
    err, msg = rt.add("v0", "veth", extra=nla_u32(IFLA_MTU, 40))
    assert (err, msg) == (-E.EINVAL, "mtu less than device minimum")
    # bond options are checked before the bond is registered
    assert rt.add("bond0", "bond", nla_u32(3, 0) + nla_u32(4, 200)) == (-E.EPERM, None)
    assert rt.add("bond0", "bond", nla_u8(1, 9)) == (-E.EINVAL, "invalid option value")
    assert rt.add("lo", "dummy") == (-E.EEXIST, None)
    # a veth whose peer name is taken: nothing is left of it
    peer = nla(1, ifinfo() + nla_string(IFLA_IFNAME, "lo"))
    assert rt.add("v0", "veth", peer) == (-E.EEXIST, None)
    assert rt.names() == before
    assert rt.req(RTM_DELLINK, F_REQ_ACK, ifinfo(1)) == (-E.EOPNOTSUPP, None)


def _bond_with_slaves(mode_data=nla_u8(1, 4) + nla_u8(14, 1)):
    rt = Rt()
    assert rt.add("bond0", "bond", mode_data) == (0, None)
    for n in ("d0", "d1"):
        assert rt.add(n, "dummy") == (0, None)
    return rt


def test_enslave_rules_and_texts():
    rt = _bond_with_slaves()
    rt.up("d0")
    assert rt.enslave("d0", "bond0") == (-E.EPERM, "Device can not be enslaved while up")
    rt.down("d0")
    assert rt.enslave("d0", "bond0") == (0, None)
    d0, bond = rt.links.by_name("d0"), rt.links.by_name("bond0")
    assert d0.master is bond and d0.up                 # bond_enslave opens the slave
    assert bond.address == d0.address                  # first slave's MAC
    assert rt.enslave("bond0", "bond0") == (-E.EPERM, "Cannot enslave bond to itself.")
    assert rt.add("br0", "bridge") == (0, None)
    assert rt.enslave("d1", "br0") == (0, None)
    # do_set_master: leaving the bridge first, then bond_enslave (d1 is down: accepted)
    assert rt.enslave("d1", "bond0") == (0, None)
    assert rt.links.by_name("d1").master is bond
    rt.up("bond0")
    assert bond.carrier
    # mode: NOSLAVES before IFDOWN
    err, msg = rt.set("bond0", extra=linkinfo("bond", nla_u8(1, 1)))
    assert (err, msg) == (-E.ENOTEMPTY,
                          "unable to set option because the bond device has slaves")
    # nomaster: released, closed, MAC back
    perm = d0.perm_hwaddr
    assert rt.set("d0", extra=nla_u32(IFLA_MASTER, 0)) == (0, None)
    assert d0.master is None and not d0.up and d0.address == perm


def test_bond_option_dependencies():
    rt = Rt()
    assert rt.add("bond0", "bond") == (0, None)
    bond = rt.links.by_name("bond0").bond
    assert bond.mode == "balance-rr" and bond.params.miimon == 0
    # lacp_rate only in 802.3ad
    err, msg = rt.set("bond0", extra=linkinfo("bond", nla_u8(21, 1)))
    assert (err, msg) == (-E.EACCES, "option not supported in mode")
    assert rt.set("bond0", extra=linkinfo("bond", nla_u8(1, 4))) == (0, None)
    assert bond.mode == "802.3ad" and bond.params.miimon == 100   # bond_option_mode_set
    rt.up("bond0")
    err, msg = rt.set("bond0", extra=linkinfo("bond", nla_u8(1, 1)))
    assert (err, msg) == (-E.EBUSY, "unable to set option because the bond is up")
    err, msg = rt.set("bond0", extra=linkinfo("bond", nla_u32(3, 100) + nla_u32(7, 100)))
    assert (err, msg) == (-E.EINVAL, "ARP monitoring cannot be used with MII monitoring")
    assert rt.set("bond0", extra=linkinfo("bond", nla_u32(4, 250))) == (0, None)
    assert bond.params.updelay == 2                    # a multiple of miimon


def test_bond_fill_info_decodes_with_pyroute2():
    ifinfmsg = pytest.importorskip("pyroute2.netlink.rtnl.ifinfmsg").ifinfmsg
    from xfrmd.rtnl.link import fill_ifinfo
    rt = _bond_with_slaves(nla_u8(1, 4) + nla_u8(14, 1) + nla_u8(21, 1))
    rt.enslave("d0", "bond0")
    rt.up("bond0")
    bond = rt.links.by_name("bond0")
    msg = ifinfmsg(fill_ifinfo(bond, RTM_NEWLINK, 1, 1))
    msg.decode()
    info = msg.get_attr("IFLA_LINKINFO")
    assert info.get_attr("IFLA_INFO_KIND") == "bond"
    data = info.get_attr("IFLA_INFO_DATA")
    names = [a[0] for a in data["attrs"]]
    assert names[:3] == ["IFLA_BOND_MODE", "IFLA_BOND_MIIMON", "IFLA_BOND_UPDELAY"]
    assert data.get_attr("IFLA_BOND_MODE") == 4
    assert data.get_attr("IFLA_BOND_MIIMON") == 100
    assert data.get_attr("IFLA_BOND_XMIT_HASH_POLICY") == 1
    assert data.get_attr("IFLA_BOND_AD_LACP_RATE") == 1
    assert "IFLA_BOND_AD_INFO" in names and names.index("IFLA_BOND_AD_INFO") == len(names) - 1
    slave = ifinfmsg(fill_ifinfo(rt.links.by_name("d0"), RTM_NEWLINK, 1, 1))
    slave.decode()
    sinfo = slave.get_attr("IFLA_LINKINFO")
    assert sinfo.get_attr("IFLA_INFO_SLAVE_KIND") == "bond"
    assert slave.get_attr("IFLA_MASTER") == bond.ifindex


def _xfrmd_run(script: str, topology="bare"):
    require(shutil.which("ip") is not None, "needs ip")
    return subprocess.run([sys.executable, "-m", "xfrmd.cli", "run", "--topology", topology,
                           "--", "sh", "-c", script], capture_output=True, text=True, timeout=60)


def test_ip_d_link_show_bond0_prints_the_bond_details():
    p = _xfrmd_run("ip link add bond0 type bond mode 802.3ad xmit_hash_policy layer3+4 "
                   "lacp_rate fast miimon 100 && ip link add d0 type dummy && "
                   "ip link set d0 master bond0 && ip link set bond0 up && "
                   "ip -d link show bond0 && ip -d link show d0")
    assert p.returncode == 0, p.stderr
    out = p.stdout.splitlines()
    assert out[0].startswith("2: bond0: <BROADCAST,MULTICAST,MASTER,UP,LOWER_UP> mtu 1500 "
                             "qdisc noqueue state UP mode DEFAULT group default qlen 1000")
    assert out[2] == (
        "    bond mode 802.3ad miimon 100 updelay 0 downdelay 0 peer_notify_delay 0 "
        "use_carrier 1 arp_interval 0 arp_missed_max 2 arp_validate none arp_all_targets any "
        "primary_reselect always fail_over_mac none xmit_hash_policy layer3+4 resend_igmp 1 "
        "num_grat_arp 1 all_slaves_active 0 min_links 0 lp_interval 1 packets_per_slave 1 "
        "lacp_active on lacp_rate fast ad_select stable ad_aggregator 1 ad_num_ports 1 "
        "ad_actor_key 0 ad_partner_key 1 ad_partner_mac 00:00:00:00:00:00 "
        "ad_actor_sys_prio 65535 ad_user_port_key 0 ad_actor_system 00:00:00:00:00:00 "
        "tlb_dynamic_lb 1 addrgenmode eui64 numtxqueues 16 numrxqueues 16 gso_max_size 65536 "
        "gso_max_segs 65535 tso_max_size 524280 tso_max_segs 65535 gro_max_size 65536 ")
    assert " master bond0 state UNKNOWN " in out[3]
    assert out[6].startswith("    bond_slave state ACTIVE mii_status UP link_failure_count 0 "
                             "perm_hwaddr ")
    assert "ad_aggregator_id 1 ad_actor_oper_port_state 79 " in out[6]


def test_ip_d_link_show_bond0_of_the_default_topology():
    p = _xfrmd_run("ip -d link show bond0", topology="default")
    assert p.returncode == 0, p.stderr
    assert "    bond mode 802.3ad miimon " in p.stdout
    assert "xmit_hash_policy layer3+4" in p.stdout
