"""Differential: proxy neighbour entries (``struct pneigh_entry``, `ip neigh add proxy`) on a
fresh real network namespace and through `xfrmd run --topology bare` — an add updates an
existing entry (no EEXIST), IPv6 needs a device (pndisc_constructor: ENOBUFS), a get finds
the device's entry or the one for every device, a delete needs the exact device, a dump
walks the 16 hash buckets (pneigh_hash), and a device going down takes its entries."""
from __future__ import annotations

from tests.differential.test_rtnl_diff import line_tests

CASES = [
    "ip link add v0 type veth peer name v1",
    "ip neigh add proxy 10.0.2.4 dev v0",
    "ip neigh add proxy 10.0.2.4 dev v0",
    "ip neigh add proxy 10.0.2.5 dev v0",
    "ip neigh add proxy 10.0.2.20 dev v1",
    "ip neigh add proxy 10.0.2.6",
    "ip -6 neigh add proxy dead::2",
    "ip -6 neigh add proxy dead::2 dev v0",
    "ip neigh add proxy 10.0.2.7 dev v1 proto 17",
    "ip neigh show proxy",
    "ip -6 neigh show proxy",
    "ip neigh show proxy dev v0",
    "ip -d neigh show proxy",
    "ip neigh show",
    "ip neigh get proxy 10.0.2.4 dev v0",
    "ip neigh get proxy 10.0.2.6 dev v0",
    "ip neigh get proxy 10.0.2.4",
    "ip neigh get proxy 10.0.2.99 dev v0",
    "ip -6 neigh get proxy dead::2 dev v0",
    "ip neigh del proxy 10.0.2.6 dev v0",
    "ip neigh del proxy 10.0.2.6",
    "ip link set v0 up",
    "ip link set v0 down",
    "ip neigh show proxy",
    "ip link del v0",
    "ip neigh show proxy",
]

outputs, test_ip_neigh_proxy_line_matches_the_kernel = line_tests(CASES, "pneigh")
