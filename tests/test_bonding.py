"""Bonding: bond_xmit_hash vectors computed by hand from the kernel's algorithm, the bond
state machine, and upstream (model "off") IPsec offload with active-backup failover — the
flow of the kernel selftest bond_ipsec_offload.sh, through `xfrmd run` and the real `ip`."""
from __future__ import annotations

import pytest

from bonding.hash import Flow, bond_xmit_hash, xmit_slave

from .conftest import require_shim, xfrmd_run

F = Flow(src_mac=bytes.fromhex("020000000002"), dst_mac=bytes.fromhex("020000000003"),
         src="10.0.0.1", dst="10.0.0.2", proto=17, sport=1000, dport=2000)


def test_layer2_hash():
    # h_dest[5] ^ h_source[5] ^ ETH_P_IP = 0x03 ^ 0x02 ^ 0x0800
    assert bond_xmit_hash(F, "layer2") == 0x0801


def test_layer23_hash():
    # 0x0801 ^ 0x0200000a (10.0.0.2 read little-endian) ^ 0x0100000a = 0x03000801
    # ^ (>>16) = 0x03000b01; ^ (>>8) = 0x03030b0a
    assert bond_xmit_hash(F, "layer2+3") == 0x03030B0A


def test_layer34_hash_udp():
    # ports 03e8 07d0 read little-endian: 0xd007e803; ^ 0x03000000 = 0xd307e803
    # ^ (>>16) = 0xd3073b04; ^ (>>8) = 0xd3d43c3f; >> 1 = 0x69ea1e1f
    assert bond_xmit_hash(F, "layer3+4") == 0x69EA1E1F


def test_layer34_hash_esp_uses_the_spi():
    esp = Flow(F.src_mac, F.dst_mac, F.src, F.dst, proto=50, spi=0x1000)
    # 00 00 10 00 → 0x00100000; ^ 0x03000000 = 0x03100000; ^ (>>16) = 0x03100310;
    # ^ (>>8) = 0x03131313; >> 1 = 0x01898989
    assert bond_xmit_hash(esp, "layer3+4") == 0x01898989
    # every packet of one SA goes to the same slave
    assert xmit_slave(esp, "layer3+4", ["a", "b"]) == ["a", "b"][0x01898989 % 2]


def test_ipv6_addresses_fold_to_32_bits():
    v6 = Flow(F.src_mac, F.dst_mac, "2001:db8::1", "2001:db8::2", proto=6, sport=0, dport=0)
    # ipv6_addr_hash(dst) ^ ipv6_addr_hash(src): only the last words differ (1 vs 2)
    h = 0x03000000
    h ^= h >> 16
    h ^= h >> 8
    assert bond_xmit_hash(v6, "layer3+4") == h >> 1


TOPO = """
[[netns]]
[[netns.device]]
name = "nsimA"
kind = "netdevsim"
master = "bond0"
[[netns.device]]
name = "nsimB"
kind = "netdevsim"
master = "bond0"
[[netns.device]]
name = "bond0"
kind = "bond"
mode = "active-backup"
addresses = ["192.0.2.1/24"]
[[netns.device]]
name = "d0"
kind = "dummy"
master = "bond1"
[[netns.device]]
name = "bond1"
kind = "bond"
mode = "active-backup"
"""

SA = ("ip xfrm state add src 192.0.2.1 dst 192.0.2.2 proto esp spi 9 reqid 1 mode transport "
      "aead 'rfc4106(gcm(aes))' 0x3132333435363738393031323334353664636261 128 "
      "offload dev {dev} dir out")
NSIM = "/sys/kernel/debug/netdevsim/netdevsim{}/ports/0/ipsec"


def _run(tmp_path, script):
    require_shim("ip")
    topo = tmp_path / "bond.toml"
    topo.write_text(TOPO)
    return xfrmd_run(script, topo)


def test_active_backup_failover_moves_the_sa(tmp_path):
    """bond_ipsec_offload.sh: SA offloaded on the bond lives on the active slave; pulling its
    cable moves it to the other slave (delete + add), and back."""
    p = _run(tmp_path, f"""
{SA.format(dev='bond0')}
ip xfrm state list | grep -c 'crypto offload parameters: dev bond0 dir out'
grep 'Currently Active Slave' /proc/net/bonding/bond0
head -1 {NSIM.format(0)} {NSIM.format(1)} | grep SA
xfrmd ctl link nsimA carrier off
grep 'Currently Active Slave' /proc/net/bonding/bond0
head -1 {NSIM.format(0)} {NSIM.format(1)} | grep SA
xfrmd ctl link nsimA carrier on
xfrmd ctl link nsimB carrier off
grep 'Currently Active Slave' /proc/net/bonding/bond0
head -1 {NSIM.format(0)} {NSIM.format(1)} | grep SA
ip xfrm state flush
head -1 {NSIM.format(0)} {NSIM.format(1)} | grep SA
""")
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines() == [
        "1",
        "Currently Active Slave: nsimA", "SA count=1 tx=0", "SA count=0 tx=0",
        "Currently Active Slave: nsimB", "SA count=0 tx=0", "SA count=1 tx=0",
        "Currently Active Slave: nsimA", "SA count=1 tx=0", "SA count=0 tx=0",
        "SA count=0 tx=0", "SA count=0 tx=0"]


def test_bond_refusals(tmp_path):
    p = _run(tmp_path, f"""
{SA.format(dev='bond1')}; echo "rc=$?"
xfrmd ctl link nsimA carrier off; xfrmd ctl link nsimB carrier off
{SA.format(dev='bond0')}; echo "rc=$?"
xfrmd ctl link nsimA carrier on
ip xfrm policy add src 192.0.2.1 dst 192.0.2.2 dir out 2>&1; echo "rc=$?"
""")
    lines = (p.stdout + p.stderr).splitlines()
    # a slave without offload ops: EINVAL from the bond, with its message
    assert "Error: bonding: Slave does not support ipsec offload." in lines
    # no active slave: ENODEV, the core's generic message (crypto does not fall back)
    assert "Error: Device failed to offload this state." in lines
    assert lines.count("rc=2") == 2


def test_lag_models_keep_active_backup_upstream(tmp_path):
    p = _run(tmp_path, f"""
xfrmd ctl lag-model bond0 replicated
{SA.format(dev='bond0')}; echo "rc=$?"
ip xfrm state list | grep -c offload
xfrmd ctl lag-model bond0 bogus; echo "rc=$?"
""")
    # the RFC leaves active-backup on the upstream single-slave path: offloaded as before
    assert p.stdout.splitlines() == ["rc=0", "1", "rc=1"], p.stderr


BOND_NO_MONITOR = """
ip link add b0 type bond mode active-backup miimon 0
ip link add va type veth peer name pa
ip link add vb type veth peer name pb
ip link set va master b0
ip link set vb master b0
ip link set b0 up
grep -E 'Active Slave|MII Status' /proc/net/bonding/b0
ip link set pa up
ip link set pb up
grep -E 'Active Slave|MII Status' /proc/net/bonding/b0
"""
# bond_enslave with neither miimon nor arp_interval: each slave's link is BOND_LINK_UP
# although its veth has no carrier yet, so the first one becomes active at once
BOND_NO_MONITOR_TEXT = ["Currently Active Slave: va", "MII Status: up", "MII Status: up",
                        "MII Status: up"] * 2


def test_active_backup_without_miimon_picks_a_slave_without_carrier():
    require_shim("ip", "sh", "grep")
    p = xfrmd_run(BOND_NO_MONITOR, "bare")
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines() == BOND_NO_MONITOR_TEXT
