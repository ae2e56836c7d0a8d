"""Differential: changing a VXLAN device (`ip link set NAME type vxlan …`,
``vxlan_changelink`` / ``vxlan_nl2conf`` with changelink) on a fresh real network namespace
and through `xfrmd run --topology bare` — what may change (TTL, TOS, DF, learning, ageing,
the local address of the same family) and what is refused, each with the kernel's extack
(the VNI, ports, limits, the other flags, another address family, a flow label on an IPv4
device); then the device as `ip -d link` shows it."""
from __future__ import annotations

from tests.differential.test_rtnl_diff import line_tests

_SET = "ip link set dev vx type vxlan "
CASES = [
    "ip link add v0 type veth peer name v1",
    "ip link add vx type vxlan id 42 group 239.1.1.1 dev v0 dstport 4789",
    "ip addr add 10.2.11.49/24 dev vx",
    "ip link set up dev vx",
] + [_SET + o for o in (
    "vni 43", "group ffe5::5 dev v0", "ttl inherit", "ttl 64", "nolearning", "proxy",
    "norsc", "l2miss", "l3miss", "external", "udpcsum", "udp6zerocsumtx", "udp6zerocsumrx",
    "remcsumtx", "remcsumrx", "gbp", "gpe", "dstport 8000", "srcport 1 2", "maxaddress 3",
    "local 10.0.0.1", "local 2001:db8::1", "tos 0x20", "ageing 50", "df set", "flowlabel 5",
    "vni 42", "learning")] + [
    "ip -d link show vx",
    "ip link add vx6 type vxlan id 7 local 2001:db8::1 dstport 4789 flowlabel 5",
    "ip -d link show vx6",
]

outputs, test_ip_vxlan_change_line_matches_the_kernel = line_tests(CASES, "vxlanchg")
