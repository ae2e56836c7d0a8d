"""Differential: `ip rule` / `ip -6 rule` lines on a fresh real network namespace and through
`xfrmd run --topology bare` (fib_rules.c: default rules, automatic preference, EEXIST, ENOENT,
flush), stdout, stderr and exit status identical line by line; and the RTM_NEWRULE dump bytes
of a set of rules equal to the kernel's."""
from __future__ import annotations

import subprocess

import pytest

from tests.differential.test_rtnl_diff import XFRMD, RealNetns, _need_tools, check_line, run_both

CASES = [
    "ip rule show",
    "ip -6 rule show",
    "ip rule add pref 220 table 220",                  # what charon adds at start
    "ip rule add pref 220 table 220",                  # EEXIST
    "ip rule add from 10.0.0.0/8 table 100",           # automatic preference: 219
    "ip rule add to 192.0.2.0/24 lookup main pref 100",
    "ip rule add fwmark 0x10/0xff table 7",            # automatic: 99
    "ip rule add not fwmark 0x20 table 220 pref 219",  # after the other 219
    "ip rule show",
    "ip rule del pref 220",
    "ip rule del pref 220",                            # ENOENT
    "ip rule del table 100",
    "ip rule add from 10.0.0.1/8 table 5",
    "ip rule add iif lo table 6",
    "ip rule add iif nosuch table 8 pref 50",          # detached
    "ip rule add blackhole pref 300",
    "ip rule add table 1000 pref 400",
    "ip rule show",
    "ip rule del pref 0",                              # even the local rule goes
    "ip -6 rule add pref 220 table 220",
    "ip -6 rule add from 2001:db8::/32 table 9",
    "ip -6 rule show",
    "ip rule flush",
    "ip rule show",
    "ip -6 rule flush",
    "ip -6 rule show",
]


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    return run_both(tmp_path_factory, CASES, "rule")


@pytest.mark.parametrize("i", range(len(CASES)), ids=[f"{i:02d}" for i in range(len(CASES))])
def test_ip_rule_line_matches_the_kernel(outputs, i):
    check_line(outputs, CASES, i)


_DUMP = r'''
import socket, struct
s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)
s.bind((0, 0))
s.send(struct.pack("=IHHII", 28, 34, 0x301, 1, 0) + bytes(12))     # AF_UNSPEC: every family
out, done = [], False
while not done:
    d = s.recv(65536); off = 0
    while off < len(d):
        L, T = struct.unpack_from("=IH", d, off)
        if T in (2, 3):
            done = True; break
        out.append(d[off + 16:off + L].hex()); off += L
print("\n".join(out))
'''

_SETUP = ("ip rule add pref 220 table 220; ip rule add from 10.0.0.0/8 table 100; "
          "ip rule add to 192.0.2.0/24 lookup main pref 100; "
          "ip rule add not fwmark 0x20 table 220 pref 219; ip rule add fwmark 0x10/0xff table 7; "
          "ip rule add iif lo table 6; ip rule add blackhole pref 300; "
          "ip rule add table 1000 pref 400; ip -6 rule add pref 220 table 220; "
          "ip -6 rule add to 2001:db8::/32 table 9 pref 10; ")


def test_rule_dump_bytes_match_the_kernel(tmp_path):
    import sys
    _need_tools()
    script = tmp_path / "dump.sh"
    (tmp_path / "dump.py").write_text(_DUMP)
    script.write_text(_SETUP + f"{sys.executable} {tmp_path / 'dump.py'}\n")
    ns = RealNetns()
    try:
        real = ns.run(["sh", str(script)]).stdout.split()
    finally:
        ns.close()
    emu = subprocess.run(XFRMD + ["run", "--topology", "bare", "--", "sh", str(script)],
                         capture_output=True, text=True, timeout=120).stdout.split()
    assert len(real) == 17 and emu == real
