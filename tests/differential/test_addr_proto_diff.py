"""Differential: an address's protocol (IFA_PROTO, ``ifa_proto``: who added it) on a fresh
real network namespace and through `xfrmd run --topology bare`, in raw netlink (the host's
`ip` may predate `ip address add … proto`): kept from RTM_NEWADDR, dumped only when not 0
(after IFA_LABEL for IPv4, after IFA_FLAGS for IPv6), and set again by NLM_F_REPLACE —
to 0 when the replacing request names none (inet_rtm_newaddr / inet6_addr_modify)."""
from __future__ import annotations

import json

from tests.differential.test_rtnl_diff import NL_DUMP, run_probe_both

_PROBE = NL_DUMP + r'''
import sys
s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)
s.bind((0, 0))
idx = int(open("/sys/class/net/v0/ifindex").read())
def attr(t, v):
    return struct.pack("=HH", 4 + len(v), t) + v + bytes(-len(v) % 4)
def newaddr(fam, addr, plen, flags, proto=None):
    a = socket.inet_pton(fam, addr)
    body = struct.pack("=BBBBi", fam, plen, 0, 0, idx) + attr(2, a) + attr(1, a)
    if proto is not None:
        body += attr(11, bytes([proto]))
    s.send(struct.pack("=IHHII", 16 + len(body), 20, 0x5 | flags, 9, 0) + body)
    d = s.recv(65536)
    return struct.unpack_from("=i", d, 16)[0]
errs = []
for fam, base, plen in ((socket.AF_INET, "192.0.2.", 28), (socket.AF_INET6, "2001:db8:1::", 64)):
    errs.append(newaddr(fam, base + "3", plen, 0x600))
    errs.append(newaddr(fam, base + "2", plen, 0x600, 0x99))
    errs.append(newaddr(fam, base + "1", plen, 0x600, 0xab))
    errs.append(newaddr(fam, base + "1", plen, 0x500, 0x11))     # replace: 0x11
    errs.append(newaddr(fam, base + "2", plen, 0x500))           # replace: back to 0
def strip(h):
    """the message without IFA_CACHEINFO (its time stamps differ between any two runs)"""
    b = bytes.fromhex(h); out = b[:8]; off = 8
    while off + 4 <= len(b):
        ln, t = struct.unpack_from("=HH", b, off)
        if t != 6:
            out += b[off:off + ((ln + 3) & ~3)]
        off += (ln + 3) & ~3
    return out.hex()
out = {}
for fam in (2, 10):
    body = struct.pack("=BBBBi", fam, 0, 0, 0, 0)
    msgs = nl_dump(s, struct.pack("=IHHII", 16 + len(body), 22, 0x301, 1, 0) + body)
    out[fam] = [strip(m) for m in msgs if struct.unpack_from("=i", bytes.fromhex(m), 4)[0] == idx]
print(json.dumps([errs, out]))
'''


def test_address_proto_is_the_kernels(tmp_path):
    real, emu = run_probe_both(tmp_path, "ip link add v0 type veth peer name v1; "
                               "ip link set v0 up", _PROBE)
    assert real.returncode == 0, real.stderr
    assert emu.returncode == 0, emu.stderr
    got, want = json.loads(emu.stdout), json.loads(real.stdout)
    assert want[0] == [0] * 10
    assert got == want
    assert sum("05000b0011" in m for m in want[1]["2"] + want[1]["10"]) == 2
