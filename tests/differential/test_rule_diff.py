"""Differential: `ip rule` / `ip -6 rule` lines on a fresh real network namespace and through
`xfrmd run` of `bare` built like the running kernel (fib_rules.c: default rules, automatic preference, EEXIST, ENOENT,
flush), stdout, stderr and exit status identical line by line; and the RTM_NEWRULE dump bytes
of a set of rules equal to the kernel's."""
from __future__ import annotations

import json

from tests.differential.test_rtnl_diff import NL_DUMP, line_tests, run_probe_both

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
    "ip rule add dsfield 0x10 table 10",
    "ip rule del dsfield 0x10",                        # the tos rule, not rule 0 (local)
    "ip rule del dsfield 0x18",                        # ENOENT
    "ip rule show",
    "ip -6 rule add dsfield 0x10 table 10",
    "ip -6 rule add dsfield 0x20 table 11",
    "ip -6 rule del dsfield 0x20",
    "ip -6 rule show",
]


outputs, test_ip_rule_line_matches_the_kernel = line_tests(CASES, "rule")


_DUMP = NL_DUMP + r'''
s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)
s.bind((0, 0))
# AF_UNSPEC: every family
print("\n".join(nl_dump(s, struct.pack("=IHHII", 28, 34, 0x301, 1, 0) + bytes(12))))
'''

_SETUP = ("ip rule add pref 220 table 220; ip rule add from 10.0.0.0/8 table 100; "
          "ip rule add to 192.0.2.0/24 lookup main pref 100; "
          "ip rule add not fwmark 0x20 table 220 pref 219; ip rule add fwmark 0x10/0xff table 7; "
          "ip rule add iif lo table 6; ip rule add blackhole pref 300; "
          "ip rule add table 1000 pref 400; ip -6 rule add pref 220 table 220; "
          "ip -6 rule add to 2001:db8::/32 table 9 pref 10; ")


def test_rule_dump_bytes_match_the_kernel(tmp_path, host_kconfig):
    """Every family's rules: IPv4 and IPv6, and the multicast families' default rule in a
    kernel with multiple mroute tables (ipmr_rules_init / ip6mr_rules_init)."""
    real, emu = run_probe_both(tmp_path, _SETUP, _DUMP)
    real, emu = real.stdout.split(), emu.stdout.split()
    opts = host_kconfig.options
    mcast = opts["IP_MROUTE_MULTIPLE_TABLES"] + opts["IPV6_MROUTE_MULTIPLE_TABLES"]
    assert len(real) == 15 + mcast and emu == real


_FAMILIES = r'''
import json, socket, struct
s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)
s.bind((0, 0))
out = []
for fam in (2, 10, 128, 129, 7):
    s.send(struct.pack("=IHHII", 28, 34, 0x301, fam, 0) + struct.pack("=B", fam) + bytes(11))
    msgs, end = [], False
    while not end:                      # every message up to NLMSG_DONE / NLMSG_ERROR
        d = s.recv(65536); off = 0
        while off < len(d):
            L, T, F = struct.unpack_from("=IHH", d, off)
            msgs.append([T, F, d[off + 16:off + L].hex()])
            end = end or T in (2, 3)
            off += L
    out.append(msgs)
print(json.dumps(out))
'''


def test_rule_dump_of_each_family_matches_the_kernel(tmp_path):
    """One family at a time: the first datagram of each dump, or EAFNOSUPPORT in NLMSG_DONE
    for a family without fib_rules_ops (ipmr/ip6mr without multiple tables; family 7)."""
    real, emu = run_probe_both(tmp_path, "", _FAMILIES)
    assert real.returncode == 0, real.stderr
    assert json.loads(emu.stdout) == json.loads(real.stdout)
