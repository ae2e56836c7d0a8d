"""The link, address and route features through `xfrmd run` with the real programs, on the default
topology (docs/topology.md; MACs fixed by the topology): `ip link`, `ip -d link show bond0`, `ip addr`,
`ip route get 198.51.100.7`, `ethtool -i/-k/-K` on a port of each driver (nsim0, eth0
mlx5-like, soe0 airoha-soe), on bond0 and on dummy0, a pyroute2 IPRoute dump of links and
addresses (xfrmd.pyroute2), and a netdevsim device made through the emulated sysfs file whose
ports appear (and go, taking their offloaded SAs along). Exact outputs.

What the text follows: ip 6.1 / ethtool 6.1 printing what a 6.18 kernel answers — the
devices as the kernel builds them (slaves carry the bond's MAC, the bond its first slave's;
802.3ad bonds miimon 100; dummy BROADCAST,NOARP; an EUI-64 link-local address on every
running device except bond slaves, IFF_NO_ADDRCONF); bond details as bond_fill_info and
iproute2 print them (checked against the kernel source in tests/test_rtnl.py)."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from .conftest import XFRMD, require_shim, xfrmd_run


def run(script: str, topology: str = "default", **env) -> subprocess.CompletedProcess:
    return xfrmd_run(script, topology, env=dict(os.environ, **env), timeout=120)


IP_OUTPUT = """\
1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536 qdisc noqueue state UNKNOWN mode DEFAULT group default qlen 1000
    link/loopback 00:00:00:00:00:00 brd 00:00:00:00:00:00
2: dummy0: <BROADCAST,NOARP,UP,LOWER_UP> mtu 1500 qdisc noqueue state UNKNOWN mode DEFAULT group default qlen 1000
    link/ether 02:00:00:01:00:01 brd ff:ff:ff:ff:ff:ff
3: eth0: <BROADCAST,MULTICAST,SLAVE,UP,LOWER_UP> mtu 1500 qdisc mq master bond0 state UP mode DEFAULT group default qlen 1000
    link/ether 02:00:00:01:00:02 brd ff:ff:ff:ff:ff:ff
4: eth1: <BROADCAST,MULTICAST,SLAVE,UP,LOWER_UP> mtu 1500 qdisc mq master bond0 state UP mode DEFAULT group default qlen 1000
    link/ether 02:00:00:01:00:02 brd ff:ff:ff:ff:ff:ff
5: eth2: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc mq state UP mode DEFAULT group default qlen 1000
    link/ether 02:00:00:01:00:04 brd ff:ff:ff:ff:ff:ff
6: bond0: <BROADCAST,MULTICAST,MASTER,UP,LOWER_UP> mtu 1500 qdisc noqueue state UP mode DEFAULT group default qlen 1000
    link/ether 02:00:00:01:00:02 brd ff:ff:ff:ff:ff:ff
7: nsim0: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc mq state UP mode DEFAULT group default qlen 1000
    link/ether 02:00:00:01:00:06 brd ff:ff:ff:ff:ff:ff
8: soe0: <BROADCAST,MULTICAST,SLAVE,UP,LOWER_UP> mtu 1500 qdisc mq master bond1 state UP mode DEFAULT group default qlen 1000
    link/ether 02:00:00:01:00:07 brd ff:ff:ff:ff:ff:ff
9: soe1: <BROADCAST,MULTICAST,SLAVE,UP,LOWER_UP> mtu 1500 qdisc mq master bond1 state UP mode DEFAULT group default qlen 1000
    link/ether 02:00:00:01:00:07 brd ff:ff:ff:ff:ff:ff
10: soe2: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc mq state UP mode DEFAULT group default qlen 1000
    link/ether 02:00:00:01:00:09 brd ff:ff:ff:ff:ff:ff
11: bond1: <BROADCAST,MULTICAST,MASTER,UP,LOWER_UP> mtu 1500 qdisc noqueue state UP mode DEFAULT group default qlen 1000
    link/ether 02:00:00:01:00:07 brd ff:ff:ff:ff:ff:ff
6: bond0: <BROADCAST,MULTICAST,MASTER,UP,LOWER_UP> mtu 1500 qdisc noqueue state UP mode DEFAULT group default qlen 1000
    link/ether 02:00:00:01:00:02 brd ff:ff:ff:ff:ff:ff promiscuity 0  allmulti 0 minmtu 68 maxmtu 65535 
    bond mode 802.3ad miimon 100 updelay 0 downdelay 0 peer_notify_delay 0 use_carrier 1 arp_interval 0 arp_missed_max 2 arp_validate none arp_all_targets any primary_reselect always fail_over_mac none xmit_hash_policy layer3+4 resend_igmp 1 num_grat_arp 1 all_slaves_active 0 min_links 0 lp_interval 1 packets_per_slave 1 lacp_active on lacp_rate slow ad_select stable ad_aggregator 1 ad_num_ports 2 ad_actor_key 29 ad_partner_key 1 ad_partner_mac 00:00:00:00:00:00 ad_actor_sys_prio 65535 ad_user_port_key 0 ad_actor_system 00:00:00:00:00:00 tlb_dynamic_lb 1 addrgenmode eui64 numtxqueues 16 numrxqueues 16 gso_max_size 65536 gso_max_segs 65535 tso_max_size 524280 tso_max_segs 65535 gro_max_size 65536 
1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536 qdisc noqueue state UNKNOWN group default qlen 1000
    link/loopback 00:00:00:00:00:00 brd 00:00:00:00:00:00
    inet 127.0.0.1/8 brd 127.255.255.255 scope host lo
       valid_lft forever preferred_lft forever
    inet6 ::1/128 scope host 
       valid_lft forever preferred_lft forever
2: dummy0: <BROADCAST,NOARP,UP,LOWER_UP> mtu 1500 qdisc noqueue state UNKNOWN group default qlen 1000
    link/ether 02:00:00:01:00:01 brd ff:ff:ff:ff:ff:ff
    inet 10.255.255.1/32 scope global dummy0
       valid_lft forever preferred_lft forever
    inet6 fe80::ff:fe01:1/64 scope link 
       valid_lft forever preferred_lft forever
3: eth0: <BROADCAST,MULTICAST,SLAVE,UP,LOWER_UP> mtu 1500 qdisc mq master bond0 state UP group default qlen 1000
    link/ether 02:00:00:01:00:02 brd ff:ff:ff:ff:ff:ff
4: eth1: <BROADCAST,MULTICAST,SLAVE,UP,LOWER_UP> mtu 1500 qdisc mq master bond0 state UP group default qlen 1000
    link/ether 02:00:00:01:00:02 brd ff:ff:ff:ff:ff:ff
5: eth2: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc mq state UP group default qlen 1000
    link/ether 02:00:00:01:00:04 brd ff:ff:ff:ff:ff:ff
    inet 198.51.100.1/24 brd 198.51.100.255 scope global eth2
       valid_lft forever preferred_lft forever
    inet6 2001:db8:2::1/64 scope global 
       valid_lft forever preferred_lft forever
    inet6 fe80::ff:fe01:4/64 scope link 
       valid_lft forever preferred_lft forever
6: bond0: <BROADCAST,MULTICAST,MASTER,UP,LOWER_UP> mtu 1500 qdisc noqueue state UP group default qlen 1000
    link/ether 02:00:00:01:00:02 brd ff:ff:ff:ff:ff:ff
    inet 192.0.2.1/25 brd 192.0.2.127 scope global bond0
       valid_lft forever preferred_lft forever
    inet6 2001:db8:1::1/64 scope global 
       valid_lft forever preferred_lft forever
    inet6 fe80::ff:fe01:2/64 scope link 
       valid_lft forever preferred_lft forever
7: nsim0: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc mq state UP group default qlen 1000
    link/ether 02:00:00:01:00:06 brd ff:ff:ff:ff:ff:ff
    inet 203.0.113.1/25 brd 203.0.113.127 scope global nsim0
       valid_lft forever preferred_lft forever
    inet6 fe80::ff:fe01:6/64 scope link 
       valid_lft forever preferred_lft forever
8: soe0: <BROADCAST,MULTICAST,SLAVE,UP,LOWER_UP> mtu 1500 qdisc mq master bond1 state UP group default qlen 1000
    link/ether 02:00:00:01:00:07 brd ff:ff:ff:ff:ff:ff
9: soe1: <BROADCAST,MULTICAST,SLAVE,UP,LOWER_UP> mtu 1500 qdisc mq master bond1 state UP group default qlen 1000
    link/ether 02:00:00:01:00:07 brd ff:ff:ff:ff:ff:ff
10: soe2: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc mq state UP group default qlen 1000
    link/ether 02:00:00:01:00:09 brd ff:ff:ff:ff:ff:ff
    inet 203.0.113.129/25 brd 203.0.113.255 scope global soe2
       valid_lft forever preferred_lft forever
    inet6 fe80::ff:fe01:9/64 scope link 
       valid_lft forever preferred_lft forever
11: bond1: <BROADCAST,MULTICAST,MASTER,UP,LOWER_UP> mtu 1500 qdisc noqueue state UP group default qlen 1000
    link/ether 02:00:00:01:00:07 brd ff:ff:ff:ff:ff:ff
    inet 192.0.2.129/25 brd 192.0.2.255 scope global bond1
       valid_lft forever preferred_lft forever
    inet6 2001:db8:3::1/64 scope global 
       valid_lft forever preferred_lft forever
    inet6 fe80::ff:fe01:7/64 scope link 
       valid_lft forever preferred_lft forever
198.51.100.7 dev eth2 src 198.51.100.1 uid 0 
    cache 
"""


def test_ip_link_bond0_addr_and_route_get():
    require_shim("ip")
    p = run("ip link; ip -d link show bond0; ip addr; ip route get 198.51.100.7")
    assert p.returncode == 0 and p.stderr == "", p.stderr
    assert p.stdout == IP_OUTPUT


ETHTOOL_I = """\
== nsim0
driver: netdevsim
version: 6.18.0
firmware-version: 
expansion-rom-version: 
bus-info: netdevsim0
supports-statistics: no
supports-test: no
supports-eeprom-access: no
supports-register-dump: no
supports-priv-flags: no
== eth0
driver: mlx5_core
version: 6.18.0
firmware-version: 16.35.2000 (MT_0000000008)
expansion-rom-version: 
bus-info: 0000:08:00.0
supports-statistics: no
supports-test: no
supports-eeprom-access: no
supports-register-dump: no
supports-priv-flags: no
== soe0
driver: airoha_eth
version: 6.18.0
firmware-version: 
expansion-rom-version: 
bus-info: 1fb50000.ethernet
supports-statistics: no
supports-test: no
supports-eeprom-access: no
supports-register-dump: no
supports-priv-flags: no
== bond0
driver: bonding
version: 6.18.0
firmware-version: 2
expansion-rom-version: 
bus-info: 
supports-statistics: no
supports-test: no
supports-eeprom-access: no
supports-register-dump: no
supports-priv-flags: no
== dummy0
driver: dummy
version: 6.18.0
firmware-version: 
expansion-rom-version: 
bus-info: 
supports-statistics: no
supports-test: no
supports-eeprom-access: no
supports-register-dump: no
supports-priv-flags: no
"""


def test_ethtool_i_on_each_driver_the_bond_and_dummy():
    require_shim("ethtool")
    p = run('for d in nsim0 eth0 soe0 bond0 dummy0; do echo "== $d"; ethtool -i $d; done')
    assert p.returncode == 0 and p.stderr == "", p.stderr
    assert p.stdout == ETHTOOL_I


# the three ESP features as `ethtool -k` shows them: fixed on (netdevsim: not in
# hw_features; mlx5e_ipsec_build_netdev: HW_ESP and TX_CSUM fixed, GSO_ESP toggleable),
# toggleable on the SOE, all three toggleable on a bond (off under 802.3ad with the upstream
# model until asked for), none on dummy
ESP_K = {
    "nsim0": ["tx-esp-segmentation: on [fixed]", "esp-hw-offload: on [fixed]",
              "esp-tx-csum-hw-offload: on [fixed]"],
    "eth0": ["tx-esp-segmentation: on", "esp-hw-offload: on [fixed]",
             "esp-tx-csum-hw-offload: on [fixed]"],
    "soe0": ["tx-esp-segmentation: off [fixed]", "esp-hw-offload: on",
             "esp-tx-csum-hw-offload: off [fixed]"],
    "bond0": ["tx-esp-segmentation: off", "esp-hw-offload: off", "esp-tx-csum-hw-offload: off"],
    "dummy0": ["tx-esp-segmentation: off [fixed]", "esp-hw-offload: off [fixed]",
               "esp-tx-csum-hw-offload: off [fixed]"],
}


def test_ethtool_k_on_each_driver_the_bond_and_dummy():
    require_shim("ethtool")
    p = run('for d in nsim0 eth0 soe0 bond0 dummy0; do echo "== $d"; ethtool -k $d; done')
    assert p.returncode == 0 and p.stderr == "", p.stderr
    parts = {c.split("\n", 1)[0]: c.split("\n")[1:] for c in p.stdout.split("== ")[1:]}
    assert sorted(parts) == sorted(ESP_K)
    for dev, lines in parts.items():
        assert lines[0] == f"Features for {dev}:"
        assert [ln for ln in lines if "esp" in ln] == ESP_K[dev], dev
        # every named feature of ETH_SS_FEATURES is listed (the 64-bit set minus unused bits)
        assert len([ln for ln in lines if ln]) == 64, dev


ETHTOOL_K_SCRIPT = """
K() { ethtool -K "$@"; echo "rc=$?"; }
K eth0 tx-esp-segmentation off; ethtool -k eth0 | grep esp-seg
K eth0 tx-esp-segmentation on; ethtool -k eth0 | grep esp-seg
K nsim0 esp-hw-offload off
K soe0 esp-hw-offload off; ethtool -k soe0 | grep esp-hw
K soe0 esp-hw-offload on
K dummy0 esp-hw-offload on
K bond0 esp-hw-offload on; ethtool -k bond0 | grep esp
K bond0 esp-hw-offload off; ethtool -k bond0 | grep esp-hw
K nosuch0 gro on
"""

ETHTOOL_K_OUT = """\
rc=0
tx-esp-segmentation: off
rc=0
tx-esp-segmentation: on
Actual changes:
esp-hw-offload: on [requested off]
rc=1
rc=0
esp-hw-offload: off
rc=0
Actual changes:
esp-hw-offload: off [requested on]
rc=1
rc=0
tx-esp-segmentation: off
esp-hw-offload: on
esp-tx-csum-hw-offload: off
rc=0
esp-hw-offload: off
rc=92
"""

ETHTOOL_K_ERR = """\
Could not change any device features
Could not change any device features
netlink error: no device matches name (offset 24)
netlink error: No such device
"""


def test_ethtool_K_on_each_driver_the_bond_and_dummy():
    """Toggleable features change, fixed ones are refused the way Linux reports a fixed
    feature ("Could not change any device features", exit 1); a bond takes esp-hw-offload
    as the upstream model lets it."""
    require_shim("ethtool")
    p = run(ETHTOOL_K_SCRIPT)
    assert p.stdout == ETHTOOL_K_OUT
    assert p.stderr == ETHTOOL_K_ERR


PYROUTE2 = r'''
from xfrmd.pyroute2 import IPRoute
with IPRoute() as ipr:
    for l in ipr.get_links():
        print(l["index"], l.get("ifname"), hex(l["flags"]), l.get("IFLA_OPERSTATE"),
              l.get("IFLA_MTU"), l.get("IFLA_ADDRESS"), l.get("IFLA_MASTER"),
              l.get(("IFLA_LINKINFO", "IFLA_INFO_KIND")))
    for a in ipr.get_addr():
        print(a["index"], a["family"], a.get("IFA_ADDRESS"), a["prefixlen"], a["scope"],
              a.get("IFA_LABEL"))
'''

PYROUTE2_OUT = """\
1 lo 0x10049 UNKNOWN 65536 00:00:00:00:00:00 None None
2 dummy0 0x100c3 UNKNOWN 1500 02:00:00:01:00:01 None dummy
3 eth0 0x11843 UP 1500 02:00:00:01:00:02 6 None
4 eth1 0x11843 UP 1500 02:00:00:01:00:02 6 None
5 eth2 0x11043 UP 1500 02:00:00:01:00:04 None None
6 bond0 0x11443 UP 1500 02:00:00:01:00:02 None bond
7 nsim0 0x11043 UP 1500 02:00:00:01:00:06 None None
8 soe0 0x11843 UP 1500 02:00:00:01:00:07 11 None
9 soe1 0x11843 UP 1500 02:00:00:01:00:07 11 None
10 soe2 0x11043 UP 1500 02:00:00:01:00:09 None None
11 bond1 0x11443 UP 1500 02:00:00:01:00:07 None bond
1 2 127.0.0.1 8 254 lo
2 2 10.255.255.1 32 0 dummy0
5 2 198.51.100.1 24 0 eth2
6 2 192.0.2.1 25 0 bond0
7 2 203.0.113.1 25 0 nsim0
10 2 203.0.113.129 25 0 soe2
11 2 192.0.2.129 25 0 bond1
1 10 ::1 128 254 None
2 10 fe80::ff:fe01:1 64 253 None
5 10 2001:db8:2::1 64 0 None
5 10 fe80::ff:fe01:4 64 253 None
6 10 2001:db8:1::1 64 0 None
6 10 fe80::ff:fe01:2 64 253 None
7 10 fe80::ff:fe01:6 64 253 None
10 10 fe80::ff:fe01:9 64 253 None
11 10 2001:db8:3::1 64 0 None
11 10 fe80::ff:fe01:7 64 253 None
"""


def test_pyroute2_iproute_dump_of_links_and_addresses(tmp_path):
    pytest.importorskip("pyroute2")
    prog = tmp_path / "dump.py"
    prog.write_text(PYROUTE2)
    p = subprocess.run(XFRMD + ["run", "--", sys.executable, str(prog)], capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout == PYROUTE2_OUT


NSIM_SCRIPT = r"""ip monitor link > "$OUT/mon" 2>&1 & M=$!
sleep 1
echo "1 2" > /sys/bus/netdevsim/new_device; echo "== $?"
ls /sys/bus/netdevsim/devices
ip -br link show
ethtool -i eni1np2 | head -5
ethtool -k eni1np1 | grep esp-hw
ip addr add 192.168.123.3/24 dev eni1np1
ip link set eni1np1 up
ip xfrm state add proto esp src 192.168.123.3 dst 192.168.123.4 spi 9 mode transport reqid 42 aead 'rfc4106(gcm(aes))' 0x3132333435363738393031323334353664636261 128 sel src 192.168.123.3/24 dst 192.168.123.4/24 offload dev eni1np1 dir out; echo "== $?"
ip xfrm state | grep -c offload
cat /sys/kernel/debug/netdevsim/netdevsim1/ports/0/ipsec | head -1
echo "1" > /sys/bus/netdevsim/del_device; echo "== $?"
ip xfrm state; echo "== states $?"
ip -br link show
sleep 1; kill $M
echo "== mon"; cat "$OUT/mon"
"""

NSIM_OUT = """\
== 0
netdevsim0
netdevsim1
lo               UNKNOWN        00:00:00:00:00:00 <LOOPBACK,UP,LOWER_UP> 
dummy0           UNKNOWN        02:00:00:01:00:01 <BROADCAST,NOARP,UP,LOWER_UP> 
eth0             UP             02:00:00:01:00:02 <BROADCAST,MULTICAST,SLAVE,UP,LOWER_UP> 
eth1             UP             02:00:00:01:00:02 <BROADCAST,MULTICAST,SLAVE,UP,LOWER_UP> 
eth2             UP             02:00:00:01:00:04 <BROADCAST,MULTICAST,UP,LOWER_UP> 
bond0            UP             02:00:00:01:00:02 <BROADCAST,MULTICAST,MASTER,UP,LOWER_UP> 
nsim0            UP             02:00:00:01:00:06 <BROADCAST,MULTICAST,UP,LOWER_UP> 
soe0             UP             02:00:00:01:00:07 <BROADCAST,MULTICAST,SLAVE,UP,LOWER_UP> 
soe1             UP             02:00:00:01:00:07 <BROADCAST,MULTICAST,SLAVE,UP,LOWER_UP> 
soe2             UP             02:00:00:01:00:09 <BROADCAST,MULTICAST,UP,LOWER_UP> 
bond1            UP             02:00:00:01:00:07 <BROADCAST,MULTICAST,MASTER,UP,LOWER_UP> 
eni1np1          DOWN           02:00:00:00:01:01 <BROADCAST,MULTICAST> 
eni1np2          DOWN           02:00:00:00:01:02 <BROADCAST,MULTICAST> 
driver: netdevsim
version: 6.18.0
firmware-version: 
expansion-rom-version: 
bus-info: netdevsim1
esp-hw-offload: on [fixed]
== 0
1
SA count=1 tx=0
== 0
== states 0
lo               UNKNOWN        00:00:00:00:00:00 <LOOPBACK,UP,LOWER_UP> 
dummy0           UNKNOWN        02:00:00:01:00:01 <BROADCAST,NOARP,UP,LOWER_UP> 
eth0             UP             02:00:00:01:00:02 <BROADCAST,MULTICAST,SLAVE,UP,LOWER_UP> 
eth1             UP             02:00:00:01:00:02 <BROADCAST,MULTICAST,SLAVE,UP,LOWER_UP> 
eth2             UP             02:00:00:01:00:04 <BROADCAST,MULTICAST,UP,LOWER_UP> 
bond0            UP             02:00:00:01:00:02 <BROADCAST,MULTICAST,MASTER,UP,LOWER_UP> 
nsim0            UP             02:00:00:01:00:06 <BROADCAST,MULTICAST,UP,LOWER_UP> 
soe0             UP             02:00:00:01:00:07 <BROADCAST,MULTICAST,SLAVE,UP,LOWER_UP> 
soe1             UP             02:00:00:01:00:07 <BROADCAST,MULTICAST,SLAVE,UP,LOWER_UP> 
soe2             UP             02:00:00:01:00:09 <BROADCAST,MULTICAST,UP,LOWER_UP> 
bond1            UP             02:00:00:01:00:07 <BROADCAST,MULTICAST,MASTER,UP,LOWER_UP> 
== mon
12: eni1np1: <BROADCAST,MULTICAST> mtu 1500 qdisc noop state DOWN group default 
    link/ether 02:00:00:00:01:01 brd ff:ff:ff:ff:ff:ff
13: eni1np2: <BROADCAST,MULTICAST> mtu 1500 qdisc noop state DOWN group default 
    link/ether 02:00:00:00:01:02 brd ff:ff:ff:ff:ff:ff
12: eni1np1: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc mq state UP group default 
    link/ether 02:00:00:00:01:01 brd ff:ff:ff:ff:ff:ff
12: eni1np1: <BROADCAST,MULTICAST> mtu 1500 qdisc mq state DOWN group default 
    link/ether 02:00:00:00:01:01 brd ff:ff:ff:ff:ff:ff
Deleted 12: eni1np1: <BROADCAST,MULTICAST> mtu 1500 qdisc noop state DOWN group default 
    link/ether 02:00:00:00:01:01 brd ff:ff:ff:ff:ff:ff
Deleted 13: eni1np2: <BROADCAST,MULTICAST> mtu 1500 qdisc noop state DOWN group default 
    link/ether 02:00:00:00:01:02 brd ff:ff:ff:ff:ff:ff
"""


def test_netdevsim_device_made_through_sysfs_appears_and_goes(tmp_path):
    """`echo "1 2" > /sys/bus/netdevsim/new_device` makes eni1np1 and eni1np2 (RTM_NEWLINK
    each); an SA offloaded to one shows in its debugfs file; `del_device` unregisters both
    ports (closed, RTM_DELLINK) and NETDEV_DOWN flushes the offloaded SA: `ip xfrm state` is
    empty afterwards."""
    require_shim("ip", "ethtool")
    p = run(NSIM_SCRIPT, OUT=str(tmp_path))
    assert p.returncode == 0 and p.stderr == "", p.stderr
    assert p.stdout == NSIM_OUT


DELSA_SCRIPT = r"""echo "0 2" > /sys/bus/netdevsim/new_device
ip link add bond0 type bond mode active-backup miimon 100
ip link set eni0np1 master bond0
ip link set eni0np2 master bond0
ip link set bond0 up
ip addr add 192.0.2.1/24 dev bond0
ip xfrm state add proto esp src 192.0.2.1 dst 192.0.2.2 spi 0x10 mode transport reqid 1 aead 'rfc4106(gcm(aes))' 0x3132333435363738393031323334353664636261 128 offload dev bond0 dir out; echo "== $?"
ip xfrm state add proto esp src 192.0.2.1 dst 192.0.2.3 spi 0x11 mode transport reqid 1 aead 'rfc4106(gcm(aes))' 0x3132333435363738393031323334353664636261 128; echo "== $?"
ip xfrm state | grep -E "^src|offload"
head -1 /sys/kernel/debug/netdevsim/netdevsim0/ports/0/ipsec
ip xfrm monitor > "$OUT/xmon" 2>&1 & M=$!
sleep 1
ip link del bond0; echo "== $?"
ip xfrm state | grep -E "^src|offload"; echo "== $?"
head -1 /sys/kernel/debug/netdevsim/netdevsim0/ports/0/ipsec
ip -br link
sleep 1; kill $M; echo "== xmon"; cat "$OUT/xmon"
"""

DELSA_OUT = """\
== 0
== 0
src 192.0.2.1 dst 192.0.2.3
src 192.0.2.1 dst 192.0.2.2
	crypto offload parameters: dev bond0 dir out
SA count=1 tx=0
== 0
src 192.0.2.1 dst 192.0.2.3
== 0
SA count=0 tx=0
lo               DOWN           00:00:00:00:00:00 <LOOPBACK> 
eni0np1          DOWN           02:00:00:00:00:01 <BROADCAST,MULTICAST> 
eni0np2          DOWN           02:00:00:00:00:02 <BROADCAST,MULTICAST> 
== xmon
"""


def test_deleting_a_bond_that_has_offloaded_sas_flushes_them(tmp_path):
    """Bad input "deleting a device that has SAs": Linux does not refuse it; the device's
    NETDEV_DOWN / NETDEV_UNREGISTER run xfrm_dev_state_flush, which deletes the offloaded
    states (no XFRM notification, as xfrm_dev_state_flush sends none) and leaves the others;
    the driver's table (netdevsim debugfs) is empty and the slaves are released."""
    require_shim("ip")
    p = run(DELSA_SCRIPT, topology="bare", OUT=str(tmp_path))
    assert p.returncode == 0 and p.stderr == "", p.stderr
    assert p.stdout == DELSA_OUT
