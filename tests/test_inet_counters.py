"""Device counters after packets from real sockets cross emulated devices
(devices/netstats.py): `ip -s link` (IFLA_STATS64) and /proc/net/dev as Linux counts them —
veth and loopback compared with the host kernel in fresh namespaces, a bond through its
active slave and a netdevsim port without a peer as their drivers count."""
from __future__ import annotations

import re

from .conftest import require_shim
from .test_inet_raw import _emu, _host, _norm

# static neighbours and no IPv6: on the host no ARP, MLD or router solicitation adds packets
BASE = """set -e
ip netns add $A; ip netns add $B
for ns in $A $B; do
  ip netns exec $ns sysctl -qw net.ipv6.conf.default.disable_ipv6=1 net.ipv6.conf.all.disable_ipv6=1
done
"""

VETH = BASE + """
ip -n $A link add va address 02:00:00:00:0a:01 type veth peer name vb address 02:00:00:00:0b:01 netns $B
ip -n $A addr add 10.9.0.1/24 dev va; ip -n $B addr add 10.9.0.2/24 dev vb
ip -n $A neigh add 10.9.0.2 lladdr 02:00:00:00:0b:01 dev va nud permanent
ip -n $B neigh add 10.9.0.1 lladdr 02:00:00:00:0a:01 dev vb nud permanent
ip -n $A link set va up; ip -n $B link set vb up; ip -n $A link set lo up
set +e
ip netns exec $A ping -q -c 3 -i 0.2 -s 100 10.9.0.2 | grep transmitted
ip netns exec $A ping -q -c 2 -i 0.2 10.9.0.1 | grep transmitted
ip -n $A -s link show va; ip -n $B -s link show vb; ip -n $A -s link show lo
ip netns exec $A cat /proc/net/dev
"""


def _same(text: str) -> str:
    """the namespaces' names differ between the runs"""
    return _norm(re.sub(r"link-netns \S+", "link-netns NS", text))


def test_veth_and_loopback_count_as_on_linux():
    """Three 128-byte echoes over a veth: 3 × 142 bytes (the Ethernet header counted) each
    way on both ends; two pings of the namespace itself: 4 packets of 84 bytes on lo
    (loopback counts the IP packet)."""
    require_shim("ip", "ping", "sysctl")
    emu = _emu(VETH)
    assert emu.returncode == 0, emu.stderr
    out = emu.stdout
    assert re.search(r"va@if2: .*\n.*\n    RX: .*\n +426 +3 .*\n    TX: .*\n +426 +3 ", out), out
    assert "    lo:     336       4    0    0    0     0          0         0      336       4" \
        in out, out
    host = _host(VETH)
    assert host.returncode == 0, host.stderr
    assert _same(out) == _same(host.stdout)


BOND = BASE + """
ip -n $A link add bond0 address 02:00:00:00:0a:01 type bond mode active-backup
ip -n $A link add va1 type veth peer name vb1 address 02:00:00:00:0b:01 netns $B
ip -n $A link add va2 type veth peer name vb2 address 02:00:00:00:0b:02 netns $B
ip -n $A link set va1 master bond0; ip -n $A link set va2 master bond0
ip -n $A addr add 10.9.0.1/24 dev bond0; ip -n $B addr add 10.9.0.2/24 dev vb1
ip -n $B link set vb1 up; ip -n $B link set vb2 up; ip -n $A link set bond0 up
set +e
ip netns exec $A ping -q -c 3 -i 0.2 -s 100 10.9.0.2 | grep transmitted
for d in bond0 va1 va2; do ip -n $A -s link show $d | sed -n '4p;6p'; done
ip -n $B -s link show vb1 | sed -n '4p;6p'
"""


def test_a_bond_counts_what_its_slave_carries():
    """active-backup: the echoes leave through one slave; the bond's counters are its
    slaves' (bond_get_stats), the other slave stays at zero."""
    require_shim("ip", "ping")
    emu = _emu(BOND)
    assert emu.returncode == 0, emu.stderr
    rows = [ln.split()[:2] for ln in emu.stdout.splitlines()[1:]]
    assert emu.stdout.splitlines()[0].startswith("3 packets transmitted, 3 received")
    assert rows == [["426", "3"]] * 4 + [["0", "0"]] * 2 + [["426", "3"]] * 2, emu.stdout


NSIM = """set -e
echo 0 > /sys/bus/netdevsim/new_device
dev=$(ls /sys/bus/netdevsim/devices/netdevsim0/net/)
ip addr add 192.168.123.3 dev $dev; ip link set $dev up
set +e
ping -I $dev -c 3 -W 1 -i 0 192.168.123.4 | grep transmitted
ip -s link show $dev | sed -n '3,6p'
grep "$dev:" /proc/net/dev
"""


def test_netdevsim_without_a_peer_counts_its_drops():
    """``nsim_start_xmit`` of 6.9+: no linked peer, the packet is dropped and counted as
    tx_dropped (not as sent)."""
    require_shim("ip", "ping")
    emu = _emu(NSIM)
    assert emu.returncode == 0, emu.stderr
    lines = emu.stdout.splitlines()
    assert lines[0].startswith("3 packets transmitted, 0 received"), emu.stdout
    assert lines[2].split() == ["0"] * 6 and lines[4].split() == ["0", "0", "0", "3", "0", "0"]
    assert lines[5].split()[1:] == ["0"] * 11 + ["3"] + ["0"] * 4, emu.stdout
