"""Differential: a bare bridge with ports — `ip -d link show` of the bridge (bridge_id and
designated_root from the lowest port address, tso_max_size from the ports) and of its ports
(`bridge_slave`: state forwarding only for a running port of a running bridge, port number
and id, path cost from the port's speed, designated bridge), as ports come and go, on a
fresh real namespace and through `xfrmd run --topology bare`. Random MACs and the running
STP/GC timers (their values depend on when ip asks) are normalised; everything else must be
identical."""
from __future__ import annotations

import re

from tests.differential.kconfig_host import needs_kernel
from tests.differential.test_rtnl_diff import _norm, line_tests

CASES = [
    "ip link add br0 type bridge",
    "ip link add v0 type veth peer name v1",
    "ip link add v2 type veth peer name v3",
    "ip link set v0 master br0",
    "ip -d link show v0",
    "ip -d link show br0",
    "ip link set v0 up",
    "ip link set v1 up",
    "ip -d link show v0",
    "ip link set br0 up",
    "ip -d link show v0",
    "ip link set v2 master br0",
    "ip -d link show v2",
    "ip -d link show br0",
    "ip link set v0 nomaster",
    "ip link set v0 master br0",                     # the lowest free port number again
    "ip -d link show v0",
    "ip link set v2 nomaster",
    "ip link set v0 nomaster",
    "ip -d link show br0",                           # no ports: zero id, TSO_MAX_SIZE
    "ip link set br0 address 02:11:22:33:44:55",
    "ip -d link show br0",
    "ip link set v2 master br0",
    "ip -d link show br0",                           # a set address stays the bridge id
    "ip link del br0",
    "ip -d link show v2",
]

_TIMER = re.compile(r"timer\s+[0-9.]+")
_ID = re.compile(r"8000\.[0-9a-f:]+")


def _n(text: str) -> str:
    return _norm(_ID.sub("8000.ID", _TIMER.sub("timer X", text)))


outputs, test_bridge_line_matches_the_kernel = line_tests(CASES, "bridge", norm=_n)


def test_bridge_id_follows_the_lowest_port_then_a_set_address(outputs):
    """Not normalised away entirely: the emulated bridge id is the port's or the set MAC."""
    needs_kernel("BRIDGE", "VETH")
    _, (eout, _) = outputs
    text = "".join(eout)
    assert text.count("bridge_id 8000.2:11:22:33:44:55 ") == 2
    assert "bridge_slave state forwarding priority 32 cost 2 " in text
