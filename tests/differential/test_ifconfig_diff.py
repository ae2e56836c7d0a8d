"""Differential: net-tools' `ifconfig` and `netstat -i` through the shim and on a fresh
real network namespace — devices from /proc/net/dev, flags, MTU, hardware address and
txqueuelen from the interface ioctls, IPv4 address, netmask, broadcast and peer from
devinet_ioctl (SIOCGIFADDR / NETMASK / BRDADDR / DSTADDR, by label: `v0:1`), IPv6 from
/proc/net/if_inet6."""
from __future__ import annotations

import pytest

from tests.conftest import require
from tests.differential.test_rtnl_diff import check_line, line_ids

CASES = [
    "ip link add v0 type veth peer name v1",
    "ip addr add 192.0.2.1/24 brd + dev v0",
    "ip addr add 10.0.0.1 peer 10.0.1.1 dev v1",
    "ip addr add 192.0.2.5/24 dev v0 label v0:1",
    "ip -6 addr add 2001:db8::1/64 dev v0",
    "ip link set v1 mtu 1400 txqueuelen 500",
    "ifconfig -a",
    "ifconfig v0:1",
    "ifconfig nosuch",
    "netstat -i",
    "ip link del v0",
    "ifconfig -a",
]


def _outputs(tmp_path_factory):
    import shutil
    require(shutil.which("ifconfig") and shutil.which("netstat"), "needs net-tools")
    from tests.differential.test_rtnl_diff import run_both
    return run_both(tmp_path_factory, CASES, "ifconfig")


outputs = pytest.fixture(scope="module")(_outputs)


@pytest.mark.parametrize("i", range(len(CASES)), ids=line_ids(CASES))
def test_ifconfig_line_matches_the_kernel(outputs, i):
    check_line(outputs, CASES, i)
