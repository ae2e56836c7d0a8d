"""Differential: RTM_GETNETCONF — `ip netconf show` lines (dump of both families, one
device, `all`/`default`, an unknown device) and the raw bytes of a dump and of three gets,
on a fresh real network namespace and through `xfrmd run` of `bare` built like the running
kernel (inet6 reports mc_forwarding only with CONFIG_IPV6_MROUTE); and `ip mroute show`,
which a kernel without multicast routing answers with the AF_UNSPEC route dump."""
from __future__ import annotations

import json

from tests.differential.kconfig_host import needs_kernel
from tests.differential.test_rtnl_diff import NL_DUMP, line_tests, run_probe_both

CASES = [
    "ip netconf show",
    "ip -4 netconf show",
    "ip -6 netconf show",
    "ip link add v0 type veth peer name v1",
    "ip netconf show",
    "ip netconf show dev v0",
    "ip -6 netconf show dev v1",
    "ip -4 netconf show dev lo",
    "ip netconf show dev nosuch",
    "ip link del v0",
    "ip netconf show",
    "ip link set lo up",
    "ip mroute show",                                  # CONFIG_IP_MROUTE or every route
    "ip -6 mroute show",                               # CONFIG_IPV6_MROUTE
]


outputs, test_ip_netconf_line_matches_the_kernel = line_tests(CASES, "netconf")


_PROBE = NL_DUMP + r'''
s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)
s.bind((0, 0))
out = nl_dump(s, struct.pack("=IHHII", 20, 82, 0x301, 1, 0) + struct.pack("=Bxxx", 0))
for fam, idx in ((2, 1), (10, -1), (2, 99), (10, -2)):
    body = struct.pack("=Bxxx", fam) + struct.pack("=HHi", 8, 1, idx)
    s.send(struct.pack("=IHHII", 16 + len(body), 82, 1, 2, 0) + body)
    d = s.recv(65536)
    out.append(d[16:].hex() if struct.unpack_from("=H", d, 4)[0] != 2 else d[16:20].hex())
print(json.dumps(out))
'''


def test_netconf_bytes_match_the_kernel(tmp_path):
    needs_kernel("VETH")
    real, emu = run_probe_both(tmp_path, "ip link add v0 type veth peer name v1\n", _PROBE)
    real, emu = json.loads(real.stdout), json.loads(emu.stdout)
    assert len(real) == 14 and emu == real
