"""Differential: the forwarding databases (`bridge fdb add|del|get|show`, PF_BRIDGE
RTM_NEWNEIGH / RTM_DELNEIGH / RTM_GETNEIGH, xfrmd/rtnl/br_fdb.py) on a fresh real network
namespace and through `xfrmd run --topology bare` — a bridge's entries for its ports
(permanent and static, EEXIST, the port's own local entry, gone with the port), a VXLAN
device's own entries with their remote (``vxlan_fdb_*``), a device's unicast list
(``ndo_dflt_fdb_add``), the gets by port, by bridge and by device with the kernel's extack
(``rtnl_fdb_get``), and the dumps, whole and filtered by device or bridge. Random MACs are
normalised; the ones the lines add are kept."""
from __future__ import annotations

import re

from tests.differential.test_rtnl_diff import line_tests

_RANDOM_MAC = re.compile(r"\b(?!de:ad:be:ef)(?!33:33:)(?!01:00:5e)[0-9a-f]{2}(:[0-9a-f]{2}){5}\b")


def _norm(text: str) -> str:
    return _RANDOM_MAC.sub("MAC", text)


CASES = [
    "ip link add vxlan10 type vxlan id 10 local 10.0.2.2 dstport 4789",
    "ip link add br0 type bridge",
    "ip link set vxlan10 master br0",
    "ip link add v0 type veth peer name v1",
    "ip link set v0 master br0",
    "bridge fdb add de:ad:be:ef:13:37 dev vxlan10 master",
    "bridge fdb add de:ad:be:ef:13:37 dev vxlan10 master",              # EEXIST
    "bridge fdb add de:ad:be:ef:13:38 dev v0 master static",
    "bridge fdb add de:ad:be:ef:13:37 dev vxlan10 dst 10.0.2.3 self",
    "bridge fdb add de:ad:be:ef:13:37 dev vxlan10 dst 10.0.2.3 self",   # EEXIST
    "bridge fdb add de:ad:be:ef:13:39 dev v1 self",                     # v1's unicast list
    "bridge fdb append de:ad:be:ef:13:39 dev v1 self",
    "bridge fdb add de:ad:be:ef:13:41 dev v1 self static",              # EINVAL
    "bridge fdb add de:ad:be:ef:13:39 dev v1 master",                   # not a port
    "bridge fdb add de:ad:be:ef:13:3a dev lo master",                   # not Ethernet
    "bridge fdb show",
    "bridge fdb get de:ad:be:ef:13:37 brport vxlan10",
    "bridge fdb get de:ad:be:ef:13:37 br br0",
    "bridge fdb get de:ad:be:ef:13:37 dev vxlan10 self",
    "bridge fdb get de:ad:be:ef:13:99 br br0",
    "bridge fdb get de:ad:be:ef:13:99 dev vxlan10 self",
    "bridge fdb get de:ad:be:ef:13:37 brport v1",
    "bridge fdb get de:ad:be:ef:13:38 br br0",
    "bridge -d fdb show dev vxlan10",
    "bridge fdb show br br0",
    "bridge fdb del de:ad:be:ef:13:37 dev v0 master",                   # another port's
    "bridge fdb del de:ad:be:ef:13:37 dev vxlan10 master",
    "bridge fdb del de:ad:be:ef:13:37 dev vxlan10 self",
    "bridge fdb del de:ad:be:ef:13:37 dev vxlan10 self",                # ENOENT
    "bridge fdb del de:ad:be:ef:13:39 dev v1 self",
    "bridge fdb del de:ad:be:ef:13:39 dev v1 self",                     # ENOENT
    "ip link set v0 nomaster",                                          # its entries go
    "bridge fdb show",
    "ip link del br0",
    "bridge fdb show",
]

outputs, test_bridge_fdb_line_matches_the_kernel = line_tests(CASES, "brfdb", norm=_norm)
