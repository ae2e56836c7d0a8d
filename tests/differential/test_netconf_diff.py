"""Differential: RTM_GETNETCONF — `ip netconf show` lines (dump of both families, one
device, `all`/`default`, an unknown device) and the raw bytes of a dump and of three gets,
on a fresh real network namespace and through `xfrmd run --topology bare`."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.differential.test_rtnl_diff import XFRMD, RealNetns, _need_tools, check_line, run_both

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
]


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    return run_both(tmp_path_factory, CASES, "netconf")


@pytest.mark.parametrize("i", range(len(CASES)), ids=[f"{i:02d}" for i in range(len(CASES))])
def test_ip_netconf_line_matches_the_kernel(outputs, i):
    check_line(outputs, CASES, i)


_PROBE = r'''
import socket, struct, json
s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)
s.bind((0, 0))
s.send(struct.pack("=IHHII", 20, 82, 0x301, 1, 0) + struct.pack("=Bxxx", 0))
out = []
while True:
    d = s.recv(65536); off = 0; done = False
    while off < len(d):
        L, T = struct.unpack_from("=IH", d, off)
        if T in (2, 3):
            done = True; break
        out.append(d[off + 16:off + L].hex()); off += L
    if done:
        break
for fam, idx in ((2, 1), (10, -1), (2, 99), (10, -2)):
    body = struct.pack("=Bxxx", fam) + struct.pack("=HHi", 8, 1, idx)
    s.send(struct.pack("=IHHII", 16 + len(body), 82, 1, 2, 0) + body)
    d = s.recv(65536)
    out.append(d[16:].hex() if struct.unpack_from("=H", d, 4)[0] != 2 else d[16:20].hex())
print(json.dumps(out))
'''


def test_netconf_bytes_match_the_kernel(tmp_path):
    _need_tools()
    py = tmp_path / "probe.py"
    py.write_text(_PROBE)
    script = tmp_path / "s.sh"
    script.write_text(f"ip link add v0 type veth peer name v1\n{sys.executable} {py}\n")
    ns = RealNetns()
    try:
        real = json.loads(ns.run(["sh", str(script)]).stdout)
    finally:
        ns.close()
    p = subprocess.run(XFRMD + ["run", "--topology", "bare", "--", "sh", str(script)],
                       capture_output=True, text=True, timeout=120)
    emu = json.loads(p.stdout)
    assert len(real) == 14 and emu == real
