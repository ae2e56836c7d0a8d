"""Differential: IPv6 address labels (`ip addrlabel`, net/ipv6/addrlabel.c) on a fresh real
network namespace and through `xfrmd run` of `bare` built like the running kernel — the
default policy table and its order, add (EEXIST, a device's entry, a v4-mapped prefix too
long), del (ESRCH), flush; and the raw bytes of a dump (the table's change count in
``ifal_seq``) and of gets (of the typed entries only ::ffff:0:0/96 matches a get;
a get needs prefix length 128; an unknown device is EINVAL)."""
from __future__ import annotations

import json

from tests.differential.test_rtnl_diff import line_tests, run_probe_both

CASES = [
    "ip addrlabel list",
    "ip addrlabel add prefix dead::/64 dev lo label 1",
    "ip addrlabel add prefix dead::/64 dev lo label 1",              # EEXIST
    "ip addrlabel list",
    "ip addrlabel del prefix dead::/64 dev lo label 1",
    "ip addrlabel del prefix dead::/64 dev lo label 1",              # ESRCH
    "ip addrlabel add prefix dead::/64 label 1",
    "ip addrlabel add prefix ::ffff:1.2.3.4/120 label 1",            # EINVAL
    "ip addrlabel add prefix 1c3::/64 label 12345",
    "ip addrlabel add prefix 1c3::/64 dev lo label 123",             # before the global one
    "ip addrlabel add prefix 1c3::1/60 label 3",                     # host bits cleared
    "ip addrlabel list",
    "ip addrlabel flush",
    "ip addrlabel list",
    "ip addrlabel del prefix dead::/64 label 1",
]

outputs, test_ip_addrlabel_line_matches_the_kernel = line_tests(CASES, "addrlabel")


_PROBE = r'''
import socket, struct, json
s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)
s.bind((0, 0))
def ask(t, flags, body):
    s.send(struct.pack("=IHHII", 16 + len(body), t, flags, 1, 0) + body)
    out = []
    while True:
        d = s.recv(65536); off = 0
        while off < len(d):
            L, T = struct.unpack_from("=IH", d, off)
            if T == 2:
                out.append(("err", struct.unpack_from("=i", d, off + 16)[0]))
                return out
            if T == 3:
                return out
            out.append(d[off + 16:off + L].hex()); off += L
            if not struct.unpack_from("=H", d, off - L + 6)[0] & 2:
                return out
def lbl(plen, idx, addr, label=None):
    body = struct.pack("=BBBBII", 10, 0, plen, 0, idx, 0)
    body += struct.pack("=HH", 20, 1) + socket.inet_pton(socket.AF_INET6, addr)
    if label is not None:
        body += struct.pack("=HHI", 8, 2, label)
    return body
res = [ask(74, 0x301, struct.pack("=BBBBII", 10, 0, 0, 0, 0, 0))]
res.append(ask(72, 0x605, lbl(64, 1, "dead::", 9)))
res.append(ask(72, 0x605, lbl(64, 0, "dead::", 0xffffffff)))     # the default label: EINVAL
res.append(ask(73, 0x5, lbl(64, 0, "beef::", 9)))                # ESRCH
for plen, idx, addr in ((128, 0, "dead::5"), (128, 1, "dead::5"), (128, 0, "::1"),
                        (128, 0, "::ffff:1.2.3.4"), (128, 0, "::1.2.3.4"), (64, 0, "dead::5"),
                        (128, 99, "dead::5"), (128, 0, "2001::1")):
    res.append(ask(74, 0x1, lbl(plen, idx, addr)))
res.append(ask(74, 0x301, struct.pack("=BBBBII", 10, 0, 0, 0, 0, 0)))
print(json.dumps(res))
'''


def test_addrlabel_bytes_are_the_kernels(tmp_path):
    real, emu = run_probe_both(tmp_path, "", _PROBE)
    assert real.returncode == 0, real.stderr
    assert emu.returncode == 0, emu.stderr
    assert json.loads(emu.stdout) == json.loads(real.stdout)
    assert len(json.loads(real.stdout)[0]) == 10
