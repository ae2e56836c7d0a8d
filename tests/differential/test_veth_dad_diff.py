"""Differential: IPv6 DAD on a veth whose peer lives in another namespace, on a fresh real
network namespace and through `xfrmd run --topology bare` — an address added while the
device has no carrier stays tentative until the peer comes up; then linkwatch's
NETDEV_CHANGE reaches the device's own namespace (``addrconf_notify``: DAD runs, the address
gets its local route, fe80:: and ff00::/8 come), and the peer going down marks the routes
RTNH_F_LINKDOWN (``rt6_sync_down_dev``). Without carrier the device is DOWN, not
LOWERLAYERDOWN: ``default_operstate`` looks its peer's index up in its own namespace. Link-local addresses follow the random MACs, so
only global ones and routes without fe80:: are compared; the real kernel's DAD takes about
a second, hence the pause."""
from __future__ import annotations

from tests.differential.test_rtnl_diff import line_tests

CASES = [
    "ip netns add xfrmd-dad-peer",
    "ip link add v0 type veth peer name v1 netns xfrmd-dad-peer",
    "ip -6 addr add 2001:db8::1/64 dev v0",
    "ip link set v0 up",
    "ip -6 addr show dev v0 scope global",          # tentative; DOWN (default_operstate)
    "ip -br -6 addr show dev v0 scope global",
    "ip -n xfrmd-dad-peer -6 addr add 2001:db8::2/64 dev v1",
    "ip -n xfrmd-dad-peer link set v1 up; sleep 2.5",
    "ip -br -6 addr show dev v0 scope global",
    "ip -n xfrmd-dad-peer -br -6 addr show dev v1 scope global",
    "ip -6 route show table all | grep -v fe80",
    "ip -n xfrmd-dad-peer link set v1 down",
    "ip -6 route show table all | grep -v fe80",
    "ip netns del xfrmd-dad-peer",
]

outputs, test_veth_dad_line_matches_the_kernel = line_tests(CASES, "vethdad")
