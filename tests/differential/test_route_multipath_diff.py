"""Differential: IPv4 multipath routes (RTA_MULTIPATH, ``fib_get_nhs`` / ``fib_add_multipath``)
on a fresh real network namespace and through `xfrmd run --topology bare` — adding them (a
gateway each nexthop must reach, weights, one nexthop making an ordinary route, a reject type
refusing them), how `ip route` prints them (per-nexthop weight, linkdown without carrier,
dead once the device is down, the route's own linkdown only when every nexthop has it), a
route get through a chosen device, the match of `ip route del … nexthop …` (fib_nh_match),
and the routes a device takes along when it goes down or away (fib_sync_down_dev /
fib_sync_up). Which nexthop a lookup without an output device takes follows a hash of the
flow with a random per-boot seed on Linux, so only that it answers with one is compared."""
from __future__ import annotations

import json

from tests.differential.kconfig_host import needs_kernel
from tests.differential.test_rtnl_diff import NL_DUMP, line_tests, run_probe_both

CASES = [
    "ip link add v0 type veth peer name v1",
    "ip link add v2 type veth peer name v3",
    "ip link set v0 up",
    "ip link set v2 up",
    "ip link set v1 up",
    "ip addr add dev v0 10.23.7.11/24",
    "ip addr add dev v2 10.23.9.11/24",
    "ip route add 10.23.8.0/24 nexthop via 10.23.7.13 dev v0 nexthop via 10.23.7.14 dev v0 weight 3",
    "ip route add 10.23.10.0/24 nexthop via 10.23.7.13 nexthop via 10.23.9.14 dev v2",
    "ip route add 10.23.11.0/24 nexthop via 10.23.7.13 dev v0",          # one: ordinary
    "ip route add 10.23.12.0/24 nexthop via 10.99.7.13 dev v0 nexthop via 10.23.9.14",
    "ip route add 10.23.13.0/24 nexthop dev v0 nexthop dev v2",
    "ip route add blackhole 10.23.14.0/24 nexthop dev v0 nexthop dev v2",
    "ip route add 10.23.8.0/24 nexthop via 10.23.7.13 dev v0 nexthop via 10.23.7.14 dev v0 weight 3",
    "ip route show",
    "ip route get 10.23.8.11 | grep -c via",
    "ip route get 10.23.10.11 oif v2",
    "ip route get 10.23.10.11 oif v0",
    "ip link set v3 up",
    "ip route show",
    "ip link set v2 down",
    "ip route show",
    "ip route get 10.23.10.11",
    "ip link set v2 up",
    "ip route show",
    "ip route del 10.23.10.0/24 nexthop via 10.23.7.99",
    "ip route del 10.23.10.0/24 nexthop via 10.23.7.13 nexthop via 10.23.9.14 dev v2",
    "ip route del 10.23.13.0/24",
    "ip route add 10.23.15.0/24 nexthop via 10.23.7.13 nexthop via 10.23.9.14",
    "ip link del v2",
    "ip route show",
    "ip link set v0 down",
    "ip route show",
]

outputs, test_ip_route_multipath_line_matches_the_kernel = line_tests(CASES, "multipath")


_DUMP = NL_DUMP + r'''
s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)
s.bind((0, 0))
body = struct.pack("=BBBBBBBBI", 2, 0, 0, 0, 0, 0, 0, 0, 0)
print(json.dumps(nl_dump(s, struct.pack("=IHHII", 16 + len(body), 26, 0x301, 1, 0) + body)))
'''


def test_multipath_route_bytes_are_the_kernels(tmp_path):
    """The main table's RTM_NEWROUTE messages with RTA_MULTIPATH (rtnexthop length, flags,
    hops, ifindex and the nested RTA_GATEWAY) byte for byte."""
    needs_kernel("VETH")
    setup = ("ip link add v0 type veth peer name v1; ip link add v2 type veth peer name v3; "
             "ip link set v0 up; ip link set v1 up; ip link set v2 up; "
             "ip addr add dev v0 10.23.7.11/24; ip addr add dev v2 10.23.9.11/24; "
             "ip route add 10.23.8.0/24 metric 7 nexthop via 10.23.7.13 weight 2 "
             "nexthop via 10.23.9.14 dev v2; "
             "ip route add 10.23.13.0/24 src 10.23.7.11 nexthop dev v0 nexthop dev v2; ")
    real, emu = run_probe_both(tmp_path, setup, _DUMP)
    assert real.returncode == 0 and emu.returncode == 0, emu.stderr
    got, want = json.loads(emu.stdout), json.loads(real.stdout)
    assert got == want
    assert sum("0900" in m for m in want) >= 2
