"""`ip link set DEV netns NAME` and `ip link add … peer name P netns NAME` with the name of
an emulated namespace: ip opens /var/run/netns/NAME and sends the fd (IFLA_NET_NS_FD); the
shim hands out a placeholder for emulated names and tells the server which namespace that fd
is (docs/protocol.md, NETNS_FD). Unknown names stay real paths, so ip answers as Linux does
when the namespace does not exist."""
from __future__ import annotations

import shutil
import subprocess
import sys

from .conftest import require

SCRIPT = r'''
xfrmd ctl netns add right >/dev/null
ip link add va address 02:00:00:00:00:0a type veth peer name vb address 02:00:00:00:00:0b
ip link set vb netns right && echo moved
ip -br link show
XFRMD_NETNS=right ip -br link show
ip link add vc address 02:00:00:00:00:0c type veth peer name vd address 02:00:00:00:00:0d netns right && echo added
XFRMD_NETNS=right ip -br link show vd
ip link set va netns nosuch; echo "rc=$?"
'''


def test_netns_by_name():
    require(shutil.which("ip"), "needs iproute2")
    require(shutil.which("gcc") or shutil.which("cc"), "needs a C compiler for the shim")
    p = subprocess.run([sys.executable, "-m", "xfrmd.cli", "run", "--topology", "bare", "--",
                        "sh", "-c", SCRIPT], capture_output=True, text=True, timeout=60)
    assert p.stdout.splitlines() == [
        "moved",
        "lo               DOWN           00:00:00:00:00:00 <LOOPBACK> ",
        "va@if2           DOWN           02:00:00:00:00:0a <BROADCAST,MULTICAST> ",
        "lo               DOWN           00:00:00:00:00:00 <LOOPBACK> ",
        "vb@if3           DOWN           02:00:00:00:00:0b <BROADCAST,MULTICAST> ",
        "added",
        "vd@if4           DOWN           02:00:00:00:00:0d <BROADCAST,MULTICAST> ",
        "rc=255",
    ], p.stdout + p.stderr
    # what ip prints on Linux for a name that is no namespace (checked on this kernel)
    assert p.stderr == 'Error: argument "nosuch" is wrong: Invalid "netns" value\n\n', p.stderr
