"""Differential: routes beyond the IPv4 main table, on a fresh real network namespace and
through `xfrmd run --topology bare` — stdout, stderr and exit status identical line by line.

IPV4: the local table the kernel fills from addresses (``fib_add_ifaddr``: local, broadcast
and prefix routes, secondaries, what a device going down leaves), tables of any id (add,
show, flush, a table that does not exist), reject route types, ``ip route get`` through the
policy routing rules (``from``, ``iif``, ``oif``, ``mark``, the table reported once custom
rules exist, local and broadcast answers) and deletes of local routes.
IPV6: addrconf's routes (ff00::/8, fe80::/64 and the EUI-64 link-local address, address
prefix and local routes), ``ip6_route_add``'s checks and texts, metric 1024, replace /
change / prepend, the rules, ``ip -6 route get``, routes losing their carrier and their
source address. MACs are fixed so link-local addresses match; the real kernel's DAD takes
up to ~2 s, hence the sleeps (xfrmd completes DAD at once).

A third test compares what `ip -d monitor route` prints for address, link and route
changes of both families (RTNLGRP_IPV4_ROUTE / RTNLGRP_IPV6_ROUTE)."""
from __future__ import annotations

import struct

import pytest

from tests.differential.kconfig_host import needs_kernel
from tests.differential.test_rtnl_diff import (NL_DUMP, check_line, line_ids, outputs_fixture,
                                               run_monitor_both, run_probe_both)

IPV4 = [
    'ip route show table local',
    'ip route get 127.0.0.1',
    'ip link set lo up',
    'ip route show table local',
    'ip route show table all',
    'ip route get 127.0.0.1',
    'ip route get 127.1.2.3',
    'ip route get 0.0.0.0',
    'ip link add v0 address 02:00:00:00:00:01 type veth peer name v1 address 02:00:00:00:00:02',
    'ip addr add 192.0.2.1/24 dev v0',
    'ip route show table local',
    'ip link set v0 up',
    'ip link set v1 up',          # linkdown goes when linkwatch has run (settle, on the kernel)
    'ip route show table local',
    'ip addr add 198.51.100.1/24 brd + dev v0',
    'ip addr add 203.0.113.5/32 dev v0',
    'ip addr add 192.0.2.2/24 dev v0',
    'ip -4 addr show dev v0',
    'ip -4 route show table all',
    'ip route get 192.0.2.1',
    'ip route get 192.0.2.2',
    'ip route get 192.0.2.255',
    'ip route get 192.0.2.0',
    'ip route get 203.0.113.5',
    'ip route get 192.0.2.9 from 192.0.2.2',
    'ip route get 192.0.2.9 from 198.51.100.9',
    'ip route get 192.0.2.9 oif v0',
    'ip route get 192.0.2.9 mark 7',
    'ip route get 192.0.2.9 iif v1',
    'ip route get 192.0.2.1 from 192.0.2.7 iif v0',
    'ip route get 192.0.2.9 from 192.0.2.7 iif v0',
    'ip route get 192.0.2.1 from 192.0.2.7 iif nosuch',
    'ip route add 10.1.0.0/16 via 192.0.2.254 table 220',
    'ip route add 10.1.0.0/16 via 192.0.2.254 table 220',
    'ip route add 10.2.0.0/16 dev v0 table 220 src 192.0.2.2',
    'ip route add 10.3.0.0/16 via 10.9.9.9 table 220',
    'ip route show table 220',
    'ip route show table 221',
    'ip route get 10.1.2.3',
    'ip rule add pref 220 lookup 220',
    'ip route get 10.1.2.3',
    'ip route get 10.2.2.3',
    'ip route get 10.1.2.3 from 192.0.2.1',
    'ip route get 10.1.2.3 oif lo',
    'ip route get 192.0.2.1',
    'ip route get 127.0.0.1',
    'ip route get 192.0.2.1 from 192.0.2.7 iif v0',
    'ip rule add pref 100 fwmark 9 lookup 221',
    'ip route add 10.1.0.0/16 dev v0 table 221',
    'ip route get 10.1.2.3 mark 9',
    'ip route get 10.1.2.3 mark 8',
    'ip rule add pref 90 from 198.51.100.1 lookup 222',
    'ip route add 10.1.0.0/16 via 198.51.100.77 table 222',
    'ip route get 10.1.2.3 from 198.51.100.1',
    'ip route add 10.4.0.0/16 dev v0 table 9999999',
    'ip route show table 9999999',
    'ip -4 route show table all',
    'ip route add blackhole 10.5.0.0/16',
    'ip route add unreachable 10.6.0.0/16',
    'ip route add prohibit 10.7.0.0/16',
    'ip route add throw 10.8.0.0/16 table 220',
    'ip route add 10.8.0.0/16 dev v0',
    'ip route add blackhole 10.9.0.0/16 dev v0',
    'ip route get 10.5.1.1',
    'ip route get 10.6.1.1',
    'ip route get 10.7.1.1',
    'ip route get 10.8.1.1',
    'ip route show',
    'ip route add local 10.10.0.1 dev v0',
    'ip route show',
    'ip route get 10.10.0.1',
    'ip route del table local 192.0.2.1',
    'ip route show table local',
    'ip route get 192.0.2.1',
    'ip route del table local 192.0.2.1',
    'ip route del 10.1.0.0/16 table 230',
    'ip route flush table 220',
    'ip route show table 220',
    'ip addr del 198.51.100.1/24 dev v0',
    'ip route show table local',
    'ip route show table 222',
    'ip link set v1 down',
    'ip route show table local',
    'ip link set v0 down',
    'ip -4 route show table all',
    'ip route get 192.0.2.1',
    'ip link set v0 up',
    'ip -4 route show table all',
    'ip route add 10.11.0.0/16 dev v0 src 203.0.113.5',
    'ip route add 10.12.0.0/16 dev v0 src 192.0.2.2 table 220',
    'ip route show table all',
    'ip addr del 192.0.2.1/24 dev v0',
    'ip -4 addr show dev v0',
    'ip -4 route show table all',
    'ip addr del 203.0.113.5/32 dev v0',
    'ip -4 route show table all',
    'ip link del v0',
    'ip -4 route show table all',
]
assert len(IPV4) >= 80

IPV6 = [
    'ip -6 route show table all',
    'ip -6 route show table local',
    'ip -6 route get ::1',
    'ip link set lo up',
    'ip -6 route show table all',
    'ip -6 route get ::1',
    'ip link add v0 address 02:00:00:00:00:01 type veth peer name v1 address 02:00:00:00:00:02',
    'ip link add v2 address 02:00:00:00:00:03 type veth peer name v3 address 02:00:00:00:00:04',
    'ip -6 addr add 2001:db8::1/64 dev v0',
    'ip -6 route show table all',
    'ip link set v0 up',
    'ip -6 route show table all',
    'ip link set v1 up',
    'sleep 2.5',
    'ip -6 route show table all',
    'ip -6 addr show dev v0',
    'ip -6 addr show dev v1',
    'ip -6 route add 2001:db8:1::/48 via 2001:db8::2',
    'ip -6 route add 2001:db8:1::/48 via 2001:db8::2',
    'ip -6 route add 2001:db8:1::/48 via 2001:db8::3',
    'ip -6 route add 2001:db8:2::/48 via 2001:db8:5::1',
    'ip -6 route add 2001:db8:3::/48 dev v0 metric 10',
    'ip -6 route add 2001:db8:3::/48 dev v1 metric 10',
    'ip -6 route add 2001:db8:3::/48 dev v1',
    'ip -6 route add 2001:db8:4::1/48 dev v0',
    'ip -6 route add 2001:db8:5::/48',
    'ip -6 route add 2001:db8:6::/48 dev v2',
    'ip -6 route add 2001:db8:6::/48 dev nosuch',
    'ip -6 route add default via 2001:db8::ff',
    'ip -6 route add 2001:db8:7::/48 via fe80::1 dev v0',
    'ip -6 route add 2001:db8:8::/48 via fe80::1',
    'ip -6 route add 2001:db8:a::/48 dev v0 src 2001:db8::1',
    'ip -6 route add 2001:db8:b::/48 dev v0 src 2001:db8::99',
    'ip -6 route add 2001:db8:d::/48 via 2001:db8::1',
    'ip -6 route add 2001:db8:c::/48 dev v0 table 220',
    'ip -6 route add 2001:db8:e::/64 dev v0 metric 5',
    'ip -6 route add 2001:db8:e::/64 dev v1 metric 5',
    'ip -6 route prepend 2001:db8:e::/64 dev v1 metric 7',
    'ip -6 route',
    'ip -6 route show table 220',
    'ip -6 route show table 221',
    'ip -6 route show table all',
    'ip -6 route get 2001:db8:1::5',
    'ip -6 route get 2001:db8:3::5',
    'ip -6 route get 2001:db8::1',
    'ip -6 route get 2001:db8::77',
    'ip -6 route get 2001:db8:ff::1',
    'ip -6 route get 2001:db8:c::1',
    'ip -6 route get fe80::5 oif v0',
    'ip -6 route get fe80::5 oif v1',
    'ip -6 route get fe80::ff:fe00:1',
    'ip -6 route get 2001:db8:1::5 from 2001:db8::1',
    'ip -6 route get ff02::1',
    'ip -6 rule add pref 220 lookup 220',
    'ip -6 route get 2001:db8:c::1',
    'ip -6 route del 2001:db8:1::/48 via 2001:db8::2',
    'ip -6 route del 2001:db8:1::/48',
    'ip -6 route del 2001:db8:1::/48',
    'ip -6 route del 2001:db8:3::/48 metric 10 dev v1',
    'ip -6 route replace 2001:db8:3::/48 dev v1 metric 10',
    'ip -6 route replace 2001:db8:3::/48 dev v0 metric 10',
    'ip -6 route change 2001:db8:99::/48 dev v1',
    'ip -6 route show 2001:db8:3::/48',
    'ip -6 route del 2001:db8:c::/48 table 230',
    'ip -6 route flush table 220',
    'ip -6 route show table all',
    'ip -6 addr add 2001:db8:f::1/64 dev v1',
    'sleep 2.5',
    'ip -6 route show table all',
    'ip -6 addr del 2001:db8:f::1/64 dev v1',
    'ip -6 addr del 2001:db8::1/64 dev v0',
    'ip -6 route show table all',
    'ip link set v1 down',
    'ip -6 route show table all',
    'ip -6 route get fe80::5 oif v0',
    'ip link set v0 down',
    'ip -6 route show table all',
    'ip route show table all',
]
assert len(IPV6) >= 70


outputs4 = outputs_fixture(IPV4, "route4")
outputs6 = outputs_fixture(IPV6, "route6")


@pytest.mark.parametrize("i", range(len(IPV4)), ids=line_ids(IPV4))
def test_ipv4_tables_and_route_get_match_the_kernel(outputs4, i):
    check_line(outputs4, IPV4, i)


@pytest.mark.parametrize("i", range(len(IPV6)), ids=line_ids(IPV6))
def test_ipv6_routes_match_the_kernel(outputs6, i):
    check_line(outputs6, IPV6, i)


MONITORED = [
    'ip link set lo up',
    'ip link add v0 address 02:00:00:00:00:01 type veth peer name v1 address 02:00:00:00:00:02',
    'ip addr add 192.0.2.1/24 dev v0',
    'ip -6 addr add 2001:db8::1/64 dev v0',
    'ip link set v0 up',
    'ip link set v1 up',
    'sleep 2.5',
    'ip addr add 198.51.100.1/24 brd + dev v0',
    'ip addr add 198.51.100.2/24 dev v0',
    'ip addr add 203.0.113.5/32 dev v0',
    'ip route add 10.1.0.0/16 via 192.0.2.2 table 220',
    'ip route add 10.2.0.0/16 dev v0 src 198.51.100.2',
    'ip route replace 10.1.0.0/16 via 192.0.2.3 table 220',
    'ip -6 route add 2001:db8:1::/48 via 2001:db8::2',
    'ip -6 route add 2001:db8:2::/48 dev v0 table 220 metric 9',
    'ip -6 route replace 2001:db8:1::/48 via 2001:db8::3',
    'ip route del 10.1.0.0/16 table 220',
    'ip -6 route del 2001:db8:1::/48',
    'ip addr del 198.51.100.1/24 dev v0',
    'ip -6 addr del 2001:db8::1/64 dev v0',
    'ip route del table local 203.0.113.5',
    'ip link set v1 down',
    'ip link set v0 down',
]


def _lines(text: str) -> list[str]:
    # the local routes of link-local addresses come when the real kernel's DAD ends (its
    # own timing); they are checked by the dump tests above
    return [ln for ln in text.splitlines() if " fe80::ff:fe00:" not in ln]


def test_ip_monitor_route_prints_what_the_kernel_prints_for_both_families(tmp_path):
    needs_kernel("VETH")                        # the routes come with a veth pair
    real, emu = run_monitor_both(tmp_path, "ip -d monitor route", MONITORED)
    real, emu = _lines(real), _lines(emu)
    assert len(real) >= 35
    assert emu == real, "\n".join(["--- kernel", *real, "--- xfrmd", *emu])


# ---------------------------------------------------------------------------------------
# raw bytes: a dump of every table of both families and `route get` answers

_SETUP = [
    "ip link set lo up",
    "ip link add v0 address 02:00:00:00:00:01 type veth peer name v1 address 02:00:00:00:00:02",
    "ip addr add 192.0.2.1/24 dev v0", "ip link set v0 up", "ip link set v1 up",
    "ip -6 addr add 2001:db8::1/64 dev v0", "sleep 2.5",
    "ip route add 10.1.0.0/16 via 192.0.2.2 table 220 metric 5 src 192.0.2.1",
    "ip route add blackhole 10.5.0.0/16",
    "ip -6 route add 2001:db8:1::/48 via 2001:db8::2 src 2001:db8::1",
]
GETS = ["10.1.2.3", "192.0.2.1", "192.0.2.255", "192.0.2.7", "127.0.0.1", "2001:db8:1::9",
        "2001:db8::1", "ff02::1", "fe80::9", "2001:db8::5"]

_DUMP = NL_DUMP + r'''
import sys, ipaddress
def dump():
    s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)
    s.bind((0, 0))
    body = struct.pack("=BBBBBBBBI", 0, 0, 0, 0, 0, 0, 0, 0, 0)
    return nl_dump(s, struct.pack("=IHHII", 16 + len(body), 26, 0x301, 1, 0) + body)
def get(dst):
    a = ipaddress.ip_address(dst).packed
    s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)
    s.bind((0, 0))
    body = struct.pack("=BBBBBBBBI", 2 if len(a) == 4 else 10, len(a) * 8, 0, 0, 0, 0, 0, 0,
                       0x1000) + struct.pack("=HH", 4 + len(a), 1) + a
    s.send(struct.pack("=IHHII", 16 + len(body), 26, 1, 1, 0) + body)
    return s.recv(65536)[16:].hex()
print(json.dumps({"all": dump(), "get": [get(d) for d in sys.argv[1:]]}))
'''


def _mask_cacheinfo(hexmsg: str) -> str:
    """rta_cacheinfo's clntref and lastuse are the dst's live reference count and age."""
    b = bytearray(bytes.fromhex(hexmsg))
    off = 12
    while off + 4 <= len(b):
        ln, t = struct.unpack_from("=HH", b, off)
        if ln < 4:
            break
        if t == 12:                                     # RTA_CACHEINFO
            b[off + 4:off + 12] = bytes(8)
        off += (ln + 3) & ~3
    return b.hex()


def test_route_dump_and_route_get_bytes_match_the_kernel(tmp_path):
    import json
    needs_kernel("VETH")
    real, emu = run_probe_both(tmp_path, "\n".join(_SETUP) + "\n", _DUMP, " ".join(GETS))
    real, emu = json.loads(real.stdout), json.loads(emu.stdout)
    assert len(real["all"]) >= 15
    assert emu["all"] == real["all"]
    for dst, r, e in zip(GETS, real["get"], emu["get"]):
        assert _mask_cacheinfo(e) == _mask_cacheinfo(r), dst
