"""Differential: VLAN devices (link kind ``vlan``, xfrmd/rtnl/vlan.py) on a fresh real
network namespace and through `xfrmd run --topology bare` built like the running kernel.
On a kernel without CONFIG_VLAN_8021Q both answer "Unknown device type" line by line; with
it, `ip -d link` of a VLAN on a bridge and on a veth, the extack of a taken id, of lo
(NETIF_F_VLAN_CHALLENGED), of an id out of range, 802.1ad, the lower device's going down
and away. The second test also runs without the host's option: the emulated kernel with
its defaults, the lines checked against what net/8021q writes."""
from __future__ import annotations

import re
import subprocess
import sys

from tests.differential.kconfig_host import needs_kernel
from tests.differential.test_rtnl_diff import line_tests, run_probe_both

SETUP = [
    "ip link add v0 type veth peer name v1",
    "ip link add br0 type bridge",
    "ip link set v0 master br0",
    "ip link set v1 up; ip link set v0 up; ip link set br0 up",
]
CASES = SETUP + [
    "ip link add link br0 name br0.1 type vlan id 1",
    "ip addr add dev br0.1 10.200.7.23/30",
    "ip -6 addr add dev br0.1 dead:42::1234/64",
    "ip -d link show br0.1",
    "ip link add link br0 name dup type vlan id 1",                   # EEXIST
    "ip link add link lo name lo.3 type vlan id 3",                   # VLAN_CHALLENGED
    "ip link add link v1 name v1.5 type vlan id 5 protocol 802.1ad",
    "ip -d link show v1.5",
    "ip link set br0.1 up",
    "ip link show br0.1",
    "ip link set br0 down",
    "ip link show br0.1",
    "ip link set br0.1 up",                                           # ENETDOWN
    "ip link del br0",
    "ip link show type vlan",
]

outputs, test_ip_vlan_line_matches_the_kernel = line_tests(CASES, "vlan")

XFRMD = [sys.executable, "-m", "xfrmd.cli"]


def test_vlan_device_as_net_8021q_makes_it(tmp_path):
    """With the emulated kernel's default options (every link kind), whatever the host's."""
    script = tmp_path / "s.sh"
    script.write_text("\n".join(CASES[:14] + ["ip link set br0 down", "ip link show br0.1",
                                               "ip link set br0.1 up; echo rc=$?",
                                               "ip link del br0", "ip link show type vlan"]))
    p = subprocess.run(XFRMD + ["run", "--topology", "bare", "--", "sh", str(script)],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=60)
    out = p.stdout
    mac = re.search(r"br0\.1@br0: .*\n    link/ether (\S+)", out)
    assert mac, out
    assert "vlan protocol 802.1Q id 1 <REORDER_HDR> addrgenmode eui64" in out
    assert re.search(r"br0\.1@br0: <BROADCAST,MULTICAST> mtu 1500 qdisc noop state DOWN", out)
    assert "minmtu 0 maxmtu 65535" in out
    assert "Error: 8021q: VLAN device already exists." in out
    assert "Error: 8021q: VLANs not supported on device." in out
    assert "vlan protocol 802.1ad id 5 <REORDER_HDR>" in out
    assert re.search(r"br0\.1@br0: <BROADCAST,MULTICAST,UP,LOWER_UP> .* state UP", out)
    assert re.search(r"br0\.1@br0: <BROADCAST,MULTICAST,M-DOWN> .* state DOWN", out)
    assert "RTNETLINK answers: Network is down\nrc=2" in out
    assert "br0.1" not in out.split("rc=2", 1)[1]               # gone with its lower device
    assert "v1.5@v1" in out.split("rc=2", 1)[1]


def test_vlan_attributes_are_the_kernels(tmp_path):
    needs_kernel("VLAN_8021Q", "VETH", "BRIDGE")
    real, emu = run_probe_both(tmp_path, "; ".join(CASES[:1] + [
        "ip link add link v0 name v0.7 type vlan id 7"]),
        "import subprocess; subprocess.run(['ip', '-d', '-j', 'link', 'show', 'v0.7'])")
    assert real.returncode == 0 and emu.returncode == 0
    strip = re.compile(r'"(address|ifindex|link_index)":[^,]*,?')
    assert strip.sub("", emu.stdout) == strip.sub("", real.stdout)
