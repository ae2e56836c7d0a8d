"""Differential: how the rtnetlink handlers parse a request before they look at its meaning
(xfrmd/rtnl/policy.py). The same raw datagrams on a fresh real namespace and through
`xfrmd run --topology bare`, comparing errno, extack message and extack offset of each answer:
a malformed trailing attribute (ignored, with the "bytes leftover" warning on the ACK, or the
only message of a later EINVAL), an attribute shorter than its policy (ERANGE with its
offset), prefix lengths above 32 / 128 in addr, route and rule requests, unknown families,
missing devices, netconf's policy, and SETLINK with an MTU of 2**31 or more (an int in
dev_validate_mtu). These were the fuzz run's traceback sites (issue 16)."""
from __future__ import annotations

import json
import socket
import struct

from tests.differential.test_rtnl_diff import run_client_in_both

CLIENT = r'''
import json, socket, struct, sys
cases = json.load(open(sys.argv[1]))
socks, out, seq = {}, [], 0
for label, proto, hexd in cases:
    s = socks.get(proto)
    if s is None:
        # 100: NETLINK_ROUTE with NETLINK_GET_STRICT_CHK, as iproute2 opens it
        s = socks[proto] = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, proto % 100)
        s.bind((0, 0))
        s.setsockopt(270, 11, 1)                       # NETLINK_EXT_ACK
        if proto == 100:
            s.setsockopt(270, 12, 1)
        s.settimeout(5)
    seq += 1
    d = bytearray(bytes.fromhex(hexd))
    struct.pack_into("=I", d, 8, seq)
    s.send(bytes(d))
    res = None
    while res is None:
        try:
            r = s.recv(65536)
        except socket.timeout:
            res = ["timeout", None, None]
            break
        off = 0
        while off + 16 <= len(r):
            L, T, F, S = struct.unpack_from("=IHHI", r, off)
            if S == seq and T in (2, 3):
                err = struct.unpack_from("=i", r, off + 16)[0]
                msg = offs = None
                if F & 0x200:                          # NLM_F_ACK_TLVS
                    olen = (struct.unpack_from("=I", r, off + 20)[0] + 3) & ~3 if err else 16
                    a = off + 20 + (olen if T == 2 else 0)     # after the echoed request
                    while a + 4 <= off + L:
                        al, at = struct.unpack_from("=HH", r, a)
                        if al < 4:
                            break
                        if at == 1:
                            msg = r[a + 4:a + al].rstrip(b"\0").decode()
                        elif at == 2:
                            offs = struct.unpack_from("=I", r, a + 4)[0]
                        a += (al + 3) & ~3
                res = [err, msg, offs]
            off += (L + 3) & ~3
    out.append([label] + res)
print(json.dumps(out))
'''


def attr(t, data):
    return struct.pack("=HH", 4 + len(data), t) + data + bytes(-len(data) % 4)


def msg(t, flags, body):
    return (struct.pack("=IHHII", 16 + len(body), t, flags, 0, 0) + body).hex()


A, C = 0x5, 0x5 | 0x400 | 0x200                      # REQUEST|ACK (|CREATE|EXCL)
V4 = socket.inet_aton("10.0.0.1")
V6 = socket.inet_pton(socket.AF_INET6, "2001:db8::1")
JUNK = b"\x07\x00\x01"                                # a trailing attribute past the end
OIF = attr(4, struct.pack("=I", 1))


def ifa(fam, plen, idx=1):
    return struct.pack("=BBBBI", fam, plen, 0, 0, idx)


def rtm(fam, dl, sl=0):
    return struct.pack("=BBBBBBBBI", fam, dl, sl, 0, 254, 3, 0, 1, 0)


def gr(fam, dl, table=0, scope=0, flags=0):
    """An rtmsg as a route get sends it (no table, protocol, scope or type)."""
    return struct.pack("=BBBBBBBBI", fam, dl, 0, 0, table, 0, scope, 0, flags)


def frh(fam, dl, sl):
    return struct.pack("=BBBBBBBBI", fam, dl, sl, 0, 100, 0, 0, 1, 0)


def prio(n):
    return attr(6, struct.pack("=I", n))


def netconf(fam):
    return struct.pack("=Bxxx", fam)


def ifi(index):
    return struct.pack("=BxHiII", 0, 0, index, 0, 0)


CASES = [
    ("lo up", msg(16, A, struct.pack("=BxHiII", 0, 0, 1, 1, 1))),
    ("addr4 nodev", msg(20, C, ifa(2, 24, 99) + attr(2, V4))),
    ("addr6 nodev", msg(20, C, ifa(10, 64, 99) + attr(2, V6))),
    ("deladdr4 nodev", msg(21, A, ifa(2, 24, 99) + attr(2, V4))),
    ("deladdr6 nodev", msg(21, A, ifa(10, 64, 99) + attr(2, V6))),
    ("addr6 no address", msg(20, C, ifa(10, 64))),
    ("addr4 plen 33", msg(20, C, ifa(2, 33) + attr(2, V4) + attr(1, V4))),
    ("addr4 plen 255", msg(20, C, ifa(2, 255) + attr(2, V4) + attr(1, V4))),
    ("addr6 plen 129", msg(20, C, ifa(10, 129) + attr(2, V6) + attr(1, V6))),
    ("addr4 no local", msg(20, C, ifa(2, 24))),
    ("addr4 nodev plen 33", msg(20, C, ifa(2, 33, 99) + attr(2, V4))),
    ("addr4 trailing junk", msg(20, C, ifa(2, 24) + attr(2, V4) + attr(1, V4) + JUNK)),
    ("addr4 nla_len lies", msg(20, C, ifa(2, 24) + attr(2, V4) + struct.pack("=HH", 200, 1) + V4)),
    ("addr4 local 2 bytes", msg(20, C, ifa(2, 24) + attr(2, V4[:2]))),
    ("addr4 local 6 bytes", msg(20, C, ifa(2, 24) + attr(2, V4 + b"\0\0"))),
    ("addr4 label too long", msg(20, C, ifa(2, 24) + attr(2, V4) + attr(3, b"a" * 20 + b"\0"))),
    ("addr4 cacheinfo 8 bytes", msg(20, C, ifa(2, 8) + attr(2, socket.inet_aton("10.0.0.2")) + attr(6, bytes(8)))),
    ("addr6 local 4 bytes", msg(20, C, ifa(10, 64) + attr(2, V4))),
    ("addr6 trailing junk", msg(20, C, ifa(10, 64) + attr(2, V6) + JUNK)),
    ("addr unknown family", msg(20, C, ifa(7, 24) + attr(2, V4))),
    ("deladdr4 plen 33, local only", msg(21, A, ifa(2, 33) + attr(2, V4))),
    ("deladdr6 plen 129", msg(21, A, ifa(10, 129) + attr(2, V6))),
    ("deladdr4 trailing junk, gone", msg(21, A, ifa(2, 8) + attr(2, V4) + JUNK)),
    ("addr4 again", msg(20, C, ifa(2, 24) + attr(2, V4))),
    ("deladdr4 trailing junk", msg(21, A, ifa(2, 24) + attr(2, V4) + JUNK)),
    ("deladdr6 trailing junk, gone", msg(21, A, ifa(10, 64) + attr(2, V6) + JUNK)),
    ("addr short header", msg(20, C, b"\x02\x18")),
    ("deladdr short header", msg(21, A, b"\x02\x18")),
    ("route short header", msg(24, C, b"\x02\x18")),
    ("delroute short header", msg(25, A, b"\x02\x18")),
    ("getroute short header", msg(26, A, b"\x02\x18")),
    ("rule short header", msg(32, C, b"\x02\x18")),
    ("delrule short header", msg(33, A, b"\x02\x18")),
    ("route4 dst_len 33", msg(24, C, rtm(2, 33) + attr(1, V4) + OIF)),
    ("route6 dst_len 129", msg(24, C, rtm(10, 129) + attr(1, V6) + OIF)),
    ("route6 dst_len 129, no dst", msg(24, C, rtm(10, 129) + OIF)),
    ("route6 src_len 129", msg(24, C, rtm(10, 64, 129) + attr(1, V6) + OIF)),
    ("route4 trailing junk", msg(24, C, rtm(2, 8) + attr(1, bytes([10, 0, 0, 0])) + OIF + JUNK)),
    ("route4 nla_len lies", msg(24, C, rtm(2, 8) + attr(1, V4) + struct.pack("=HH", 300, 4) + b"\1\0\0\0")),
    ("route4 dst 2 bytes", msg(24, C, rtm(2, 8) + attr(1, V4[:2]) + OIF)),
    ("route4 oif 2 bytes", msg(24, C, rtm(2, 8) + attr(1, V4) + attr(4, b"\1\0"))),
    ("route6 dst 4 bytes", msg(24, C, rtm(10, 64) + attr(1, V4) + OIF)),
    ("route6 trailing junk", msg(24, C, rtm(10, 64) + attr(1, V6) + OIF + JUNK)),
    ("route4 priority 2 bytes after junk", msg(24, C, rtm(2, 32) + attr(1, V4) + OIF + struct.pack("=HH", 8, 6) + b"\1\0")),
    ("delroute4 dst_len 33", msg(25, A, rtm(2, 33) + attr(1, V4))),
    ("delroute6 dst_len 129", msg(25, A, rtm(10, 129) + attr(1, V6))),
    ("getroute4 trailing junk", msg(26, A, rtm(2, 32) + attr(1, V4) + JUNK)),
    ("getroute6 trailing junk", msg(26, A, rtm(10, 128) + attr(1, V6) + JUNK)),
    ("getroute6 dst 4 bytes", msg(26, A, rtm(10, 128) + attr(1, V4))),
    ("rule4 src_len 33", msg(32, C, frh(2, 0, 33) + attr(2, V4) + prio(1000))),
    ("rule4 dst_len 33", msg(32, C, frh(2, 33, 0) + attr(1, V4) + prio(1000))),
    ("rule6 src_len 129", msg(32, C, frh(10, 0, 129) + attr(2, V6))),
    ("rule4 src_len 33, no src", msg(32, C, frh(2, 0, 33) + prio(1002))),
    ("rule6 dst_len 129, no dst", msg(32, C, frh(10, 129, 0) + prio(1003))),
    ("rule4 src_len 8, no src", msg(32, C, frh(2, 0, 8) + prio(1004))),
    ("rule4 src 2 bytes", msg(32, C, frh(2, 0, 8) + attr(2, V4[:2]))),
    ("rule6 src 4 bytes", msg(32, C, frh(10, 0, 64) + attr(2, V4) + prio(1006))),
    ("rule4 priority 2 bytes", msg(32, C, frh(2, 0, 8) + attr(2, V4) + attr(6, b"\1\0"))),
    ("rule4 trailing junk", msg(32, C, frh(2, 0, 8) + attr(2, V4) + prio(1001) + JUNK)),
    ("rule4 nla_len lies", msg(32, C, frh(2, 0, 8) + attr(2, V4) + struct.pack("=HH", 300, 6) + b"\1\0\0\0")),
    ("delrule4 trailing junk", msg(33, A, frh(2, 0, 8) + attr(2, V4) + JUNK)),
    ("delrule4 src_len 33", msg(33, A, frh(2, 0, 33) + attr(2, V4))),
    ("netconf4 trailing junk", msg(82, A, netconf(2) + attr(1, struct.pack("=i", 1)) + JUNK)),
    ("netconf4 ifindex 2 bytes", msg(82, A, netconf(2) + attr(1, b"\1\0"))),
    ("netconf4 nla_len lies", msg(82, A, netconf(2) + struct.pack("=HH", 100, 1) + b"\1\0\0\0")),
    ("netconf6 trailing junk", msg(82, A, netconf(10) + attr(1, struct.pack("=i", 1)) + JUNK)),
    ("netconf6 ifindex 2 bytes", msg(82, A, netconf(10) + attr(1, b"\1\0"))),
    ("netconf no ifindex", msg(82, A, netconf(2))),
    ("netconf short", msg(82, A, b"\2")),
    ("setlink mtu 2**31", msg(19, A, ifi(1) + attr(4, struct.pack("=I", 2 ** 31)))),
    ("setlink mtu 2**32-1", msg(19, A, ifi(1) + attr(4, struct.pack("=I", 2 ** 32 - 1)))),
    ("setlink mtu 70000", msg(19, A, ifi(1) + attr(4, struct.pack("=I", 70000)))),
    ("getlink dump after", msg(18, 0x305, ifi(0))),
]
DUMP = 0x301
STRICT = [   # on a NETLINK_GET_STRICT_CHK socket
    ("strict route dump", msg(26, DUMP, rtm(2, 0))),
    ("strict route dump dst_len", msg(26, DUMP, rtm(2, 8))),
    ("strict route dump flags", msg(26, DUMP, rtm(2, 0)[:8] + struct.pack("=I", 0x4))),
    ("strict route dump short header", msg(26, DUMP, b"\2\0\0\0")),
    ("strict route dump unsupported attr", msg(26, DUMP, rtm(2, 0) + attr(6, struct.pack("=I", 5)))),
    ("strict route dump unknown attr", msg(26, DUMP, rtm(2, 0) + attr(99, struct.pack("=I", 5)))),
    ("strict route dump table 2 bytes", msg(26, DUMP, rtm(2, 0) + attr(15, b"\1\0"))),
    ("strict route dump trailing junk", msg(26, DUMP, rtm(2, 0) + JUNK)),
    ("strict route dump no such oif", msg(26, DUMP, rtm(2, 0) + attr(4, struct.pack("=I", 99)))),
    ("strict route dump table", msg(26, DUMP, rtm(2, 0) + attr(15, struct.pack("=I", 254)))),
    ("strict route6 dump unsupported attr", msg(26, DUMP, rtm(10, 0) + attr(1, V6))),
    ("strict route get4", msg(26, A, gr(2, 32) + attr(1, V4))),
    ("strict route get4 header from a dump", msg(26, A, rtm(2, 32) + attr(1, V4))),
    ("strict route get4 dst_len 24", msg(26, A, gr(2, 24) + attr(1, V4))),
    ("strict route get4 table", msg(26, A, gr(2, 32, table=254) + attr(1, V4))),
    ("strict route get4 flags", msg(26, A, gr(2, 32, flags=0x200) + attr(1, V4))),
    ("strict route get4 dst, no dst_len", msg(26, A, gr(2, 0) + attr(1, V4))),
    ("strict route get4 table attr", msg(26, A, gr(2, 32) + attr(1, V4) + attr(15, struct.pack("=I", 254)))),
    ("strict route get4 trailing junk", msg(26, A, gr(2, 32) + attr(1, V4) + JUNK)),
    ("strict route get4 unknown attr", msg(26, A, gr(2, 32) + attr(1, V4) + attr(99, bytes(4)))),
    ("strict route get6", msg(26, A, gr(10, 128) + attr(1, V6))),
    ("strict route get6 dst_len 64", msg(26, A, gr(10, 64) + attr(1, V6))),
    ("strict route get6 scope", msg(26, A, gr(10, 128, scope=200) + attr(1, V6))),
    ("strict route get6 flags", msg(26, A, gr(10, 128, flags=0x1000) + attr(1, V6))),
    ("strict route get6 dst, no dst_len", msg(26, A, gr(10, 0) + attr(1, V6))),
    ("strict route get6 table attr", msg(26, A, gr(10, 128) + attr(1, V6) + attr(15, struct.pack("=I", 254)))),
    ("strict route get6 trailing junk", msg(26, A, gr(10, 128) + attr(1, V6) + JUNK)),
    ("strict route get short header", msg(26, A, b"\2\0")),
    ("strict netconf4 trailing junk", msg(82, A, netconf(2) + attr(1, struct.pack("=i", 1)) + JUNK)),
    ("strict netconf4 unknown attr", msg(82, A, netconf(2) + attr(1, struct.pack("=i", 1)) + attr(40, b"\0" * 4))),
]


def test_rtnl_requests_parse_as_the_kernel(tmp_path):
    cases = tmp_path / "cases.json"
    cases.write_text(json.dumps([[label, 0, hexd] for label, hexd in CASES]
                                + [[label, 100, hexd] for label, hexd in STRICT]))
    r, e, emu = run_client_in_both(tmp_path, CLIENT, str(cases))
    assert len(r) == len(e) == len(CASES) + len(STRICT)
    bad = [f"{rc[0]}: kernel {rc[1:]} xfrmd {ec[1:]}" for rc, ec in zip(r, e) if rc != ec]
    assert not bad, "\n".join(bad)
    # the cases did fail, and the warnings were there (a test that cannot fail is a defect)
    assert sum(1 for c in e if c[1] not in (0, "timeout")) >= 40
    assert sum(1 for c in e if c[1] == 0 and c[2] == "bytes leftover after parsing attributes") >= 8
    assert "internal error" not in emu.stderr
