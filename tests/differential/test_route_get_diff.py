"""Differential: RTM_GETROUTE (`ip route get`) on a fresh real network namespace and through
`xfrmd run --topology bare` — the header and attribute checks of a socket with
NETLINK_GET_STRICT_CHK (``inet_rtm_valid_getroute_req``, ``inet6_rtm_valid_getroute_req``:
errno and extack), the same requests without it, and the answer's rtm_tos (0 on 6.18,
whatever tos the lookup used). RTM_F_NOTIFY is left out: the kernel keeps RTCF_NOTIFY on a
per-CPU cached route, so later answers depend on which CPU served the request."""
from __future__ import annotations

from tests.differential.test_rtnl_diff import line_tests, run_probe_both

_SETUP = ("ip link add v0 type veth peer name v1; ip link set v0 up; ip link set v1 up; "
          "ip addr add 192.0.2.1/24 dev v0; ip -6 addr add 2001:db8::1/64 dev v0 nodad\n")

_PROBE = r'''import socket, struct
SOL_NETLINK, NETLINK_EXT_ACK, NETLINK_GET_STRICT_CHK = 270, 11, 12
def nla(t, v): return struct.pack("=HH", 4 + len(v), t) + v + b"\0" * (-len(v) % 4)
def ask(s, body, seq):
    s.send(struct.pack("=IHHII", 16 + len(body), 26, 1, seq, 0) + body)
    d = s.recv(65536)
    L, T = struct.unpack_from("=IH", d)
    if T != 2:
        rt = d[16:28]
        return f"route hdr={rt.hex()}"
    err = struct.unpack_from("=i", d, 16)[0]
    msg = ""
    flags = struct.unpack_from("=H", d, 6)[0]
    if flags & 0x200:
        olen = struct.unpack_from("=I", d, 20)[0]
        off = 20 + olen
        while off + 4 <= L:
            ln, t = struct.unpack_from("=HH", d, off)
            if t == 1:
                msg = d[off + 4:off + ln].rstrip(b"\0").decode()
            off += (ln + 3) & ~3
    return f"err={err} {msg}"
def rtm(fam, dl=0, sl=0, tos=0, table=0, proto=0, scope=0, rtype=0, flags=0):
    return struct.pack("=BBBBBBBBI", fam, dl, sl, tos, table, proto, scope, rtype, flags)
A4 = socket.inet_pton(socket.AF_INET, "192.0.2.7")
A6 = socket.inet_pton(socket.AF_INET6, "2001:db8::7")
cases = [
    rtm(2, 32) + nla(1, A4),
    rtm(2, 0) + nla(1, A4),
    rtm(2, 24) + nla(1, A4),
    rtm(2, 32, tos=0x10) + nla(1, A4),
    rtm(2, 32, table=254) + nla(1, A4),
    rtm(2, 32, flags=0x1000) + nla(1, A4),
    rtm(2, 32) + nla(1, A4) + nla(15, struct.pack("=I", 254)),
    rtm(2, 32) + nla(1, A4) + nla(2, A4),
    rtm(2, 0),
    rtm(2, 32),
    rtm(10, 128) + nla(1, A6),
    rtm(10, 0) + nla(1, A6),
    rtm(10, 64) + nla(1, A6),
    rtm(10, 128, flags=0x1000) + nla(1, A6),
    rtm(10, 128, tos=4) + nla(1, A6),
    rtm(10, 128) + nla(1, A6) + nla(15, struct.pack("=I", 254)),
    rtm(10, 128) + nla(1, A6) + nla(31, struct.pack("=I", 5)),
    rtm(2, 32)[:8],
    rtm(10, 128)[:8],
]
for strict in (0, 1):
    s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)
    s.setsockopt(SOL_NETLINK, NETLINK_EXT_ACK, 1)
    s.setsockopt(SOL_NETLINK, NETLINK_GET_STRICT_CHK, strict)
    s.bind((0, 0))
    for i, c in enumerate(cases):
        print(strict, i, ask(s, c, i + 1))
'''


def test_getroute_checks_match_the_kernel(tmp_path):
    real, emu = run_probe_both(tmp_path, _SETUP, _PROBE)
    assert real.returncode == 0, real.stderr
    assert "must be 32 for IPv4" in real.stdout and "Invalid flow label" in real.stdout
    assert emu.stdout.splitlines() == real.stdout.splitlines(), emu.stderr


CASES = [
    "ip link add v0 type veth peer name v1",
    "ip link set v0 up",
    "ip link set v1 up",
    "ip addr add 192.0.2.1/24 dev v0",
    "ip route add 198.51.100.0/24 via 192.0.2.2 table 10",
    "ip rule add tos 0x10 table 10",
    "ip route get 198.51.100.7 tos 0x10",            # the tos rule chose table 10
    "ip route get 198.51.100.7",
    "ip route get 192.0.2.7 dsfield 0x12",
    "ip route get 192.0.2.7 tos 0x10 from 192.0.2.1",
]

outputs, test_ip_route_get_line_matches_the_kernel = line_tests(CASES, "routeget")
