"""Differential: VXLAN devices (link kind ``vxlan``, xfrmd/rtnl/vxlan.py) on a fresh real
network namespace and through `xfrmd run --topology bare`, the emulated kernel built like the
running one — creation with its checks and extack (``vxlan_validate``,
``vxlan_config_validate``: a taken VNI, an unknown lower device), `ip -d link show` of
devices with a local address, a multicast group on a lower device (the MTU less the
headroom, the lower device's TSO limit), IPv6 endpoints, a source port range and options;
and the raw IFLA_INFO_DATA of each (``vxlan_fill_info``) byte for byte."""
from __future__ import annotations

import json

from tests.differential.kconfig_host import needs_kernel
from tests.differential.test_rtnl_diff import NL_DUMP, _attrs, line_tests, run_probe_both

CASES = [
    "ip link add vxlan10 type vxlan id 10 local 10.0.2.2 dstport 4789",
    "ip -d link show vxlan10",
    "ip link add vxlan11 type vxlan id 10 local 10.0.2.3 dstport 4789",      # VNI taken
    "ip link add vxlan12 type vxlan id 11 local 10.0.2.3 dstport 4790",
    "ip link add v0 type veth peer name v1",
    "ip link add vx2 type vxlan id 42 group 239.1.1.1 dev v0 dstport 4789 ttl 64 nolearning",
    "ip -d link show vx2",
    "ip link add vx4 type vxlan id 44 remote 10.1.1.1 local 10.0.0.1 srcport 1000 2000 "
    "tos 0x10 ageing 100 maxaddress 5 noudpcsum",                         # port 8472
    "ip -d link show vx4",
    "ip link add vx5 type vxlan id 45 local 2001:db8::1 remote 2001:db8::2 dstport 4789 "
    "udp6zerocsumtx",
    "ip -d link show vx5",
    "ip link set vx4 up",
    "ip link show vx4",
    "ip link del vx4",
    "ip link del vxlan10",
    "ip link show type vxlan",
]

outputs, test_ip_vxlan_line_matches_the_kernel = line_tests(CASES, "vxlan")

_DUMP = NL_DUMP + r'''
s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)
s.bind((0, 0))
body = struct.pack("=BxHiII", 0, 0, 0, 0, 0) + struct.pack("=HHI", 8, 29, 1)
print(json.dumps(nl_dump(s, struct.pack("=IHHII", 16 + len(body), 18, 0x301, 1, 0) + body)))
'''


def _info_data(hexes) -> dict:
    out = {}
    for h in hexes:
        b = bytes.fromhex(h)
        attrs = dict(_attrs(b, 16, len(b)))
        info = dict((t & 0x3FFF, v) for t, v in _attrs(attrs.get(18, b""), 0, len(attrs.get(18, b""))))
        if info.get(1) == b"vxlan\0":
            out[attrs[3].rstrip(b"\0").decode()] = (attrs[4].hex(), attrs.get(63, b"").hex(),
                                                    info[2].hex())
    return out


def test_vxlan_info_data_is_the_kernels(tmp_path):
    """The MTU, the TSO limit and IFLA_INFO_DATA of four VXLAN devices."""
    needs_kernel("VXLAN", "VETH")
    setup = ("ip link add v0 type veth peer name v1; "
             "ip link add vx1 type vxlan id 10 local 10.0.2.2 dstport 4789; "
             "ip link add vx2 type vxlan id 42 group 239.1.1.1 dev v0 ttl 64 nolearning; "
             "ip link add vx3 type vxlan id 44 remote 10.1.1.1 srcport 1000 2000 tos 0x10 "
             "ageing 100 maxaddress 5 noudpcsum dstport 0; "
             "ip link add vx4 type vxlan id 45 local 2001:db8::1 group ff05::5 dev v1 "
             "dstport 4789 udp6zerocsumtx udp6zerocsumrx")
    real, emu = run_probe_both(tmp_path, setup, _DUMP)
    assert real.returncode == 0 and emu.returncode == 0, emu.stderr
    want = _info_data(json.loads(real.stdout))
    assert sorted(want) == ["vx1", "vx2", "vx3", "vx4"]
    assert _info_data(json.loads(emu.stdout)) == want
