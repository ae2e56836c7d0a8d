"""Differential: a bridge port's settings through IFLA_LINKINFO / IFLA_INFO_SLAVE_DATA of an
RTM_NEWLINK on the port (rtnl_newlink → br_port_slave_changelink → br_setport), the request
pyroute2 0.8.1's ``IPRoute.brport('set', index=…, unicast_flood=0, cost=200, proxyarp=1)``
sends (IFLA_INFO_KIND "bridge_slave", no IFLA_INFO_SLAVE_KIND), byte for byte, on a fresh
real network namespace and through `xfrmd run --topology bare`: the acks' errnos, the
notifications it causes (and an alias's on the running port) and the PF_BRIDGE port dump's attributes the kernel's."""
from __future__ import annotations

import json

from tests.differential.test_bridge_link_diff import _decode
from tests.differential.test_rtnl_diff import NL_DUMP, run_probe_both

_PROBE = NL_DUMP + r'''
import select
IFLA_LINKINFO, IFLA_INFO_KIND, IFLA_INFO_SLAVE_KIND, IFLA_INFO_SLAVE_DATA = 18, 1, 4, 5

def nla(t, v):
    return struct.pack("=HH", 4 + len(v), t) + v + b"\0" * (-len(v) % 4)

def newlink(index, kind_type, kind, slave):
    info = nla(kind_type, kind.encode() + b"\0") + nla(IFLA_INFO_SLAVE_DATA, slave)
    body = struct.pack("=BxHiII", 0, 0, index, 0, 0) + nla(IFLA_LINKINFO, info)
    return struct.pack("=IHHII", 16 + len(body), 16, 0x5, 1, 0) + body

def ack(s, msg):
    s.send(msg)
    d = s.recv(65536)
    return -struct.unpack_from("=i", d, 16)[0]

def events(m):
    out = []
    while select.select([m], [], [], 0.3)[0]:
        d = m.recv(65536)
        out.append((struct.unpack_from("=H", d, 4)[0], d[16]))   # type, ifi_family
    return out

idx = {n: socket.if_nametoindex(n) for n in ("v0", "v1", "v2")}
s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)
s.bind((0, 0))
m = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)
m.bind((0, 1))                                   # RTMGRP_LINK
u8 = lambda t, v: nla(t, struct.pack("=B", v))
u32 = lambda t, v: nla(t, struct.pack("=I", v))
# pyroute2's brport('set'): UNICAST_FLOOD 0, COST 200, PROXYARP 1 under INFO_KIND bridge_slave
pyroute2 = u8(9, 0) + u32(3, 200) + u8(10, 1)
out = {}
out["v0"] = ack(s, newlink(idx["v0"], IFLA_INFO_KIND, "bridge_slave", pyroute2))
out["v0 events"] = events(m)
out["v2 down"] = ack(s, newlink(idx["v2"], IFLA_INFO_SLAVE_KIND, "bridge",
                                u32(3, 300) + u8(8, 0)))
out["v2 events"] = events(m)
out["cost 70000"] = ack(s, newlink(idx["v0"], IFLA_INFO_KIND, "bridge_slave",
                                   u8(5, 1) + u32(3, 70000)))
out["no port"] = ack(s, newlink(idx["v1"], IFLA_INFO_KIND, "bridge_slave", pyroute2))
out["empty"] = ack(s, newlink(idx["v0"], IFLA_INFO_KIND, "bridge_slave", b""))
out["empty events"] = events(m)
# an alias on the running port: netdev_state_change tells the bridge too (br_device_event)
body = struct.pack("=BxHiII", 0, 0, idx["v0"], 0, 0) + nla(20, b"up0\0")
out["alias"] = ack(s, struct.pack("=IHHII", 16 + len(body), 19, 0x5, 3, 0) + body)
out["alias events"] = events(m)
body = struct.pack("=BxHiII", 7, 0, 0, 0, 0)
out["dump"] = nl_dump(s, struct.pack("=IHHII", 16 + len(body), 18, 0x301, 2, 0) + body)
print(json.dumps(out))
'''


def test_pyroute2_brport_set_matches_the_kernel(tmp_path):
    setup = ("ip link add br0 type bridge; ip link add v0 type veth peer name v1; "
             "ip link add v2 type veth peer name v3; ip link set v0 master br0; "
             "ip link set v2 master br0; ip link set v0 up; ip link set br0 up; ")
    real, emu = run_probe_both(tmp_path, setup, _PROBE)
    assert real.returncode == 0 and emu.returncode == 0, (real.stderr, emu.stderr)
    r, e = json.loads(real.stdout), json.loads(emu.stdout)
    for out in (r, e):
        out["dump"] = [_decode(h) for h in out["dump"]]
    assert r["v0"] == 0 and r["no port"] == 95          # the oracle as this test expects it
    assert r["v0 events"] == [[16, 7], [16, 0]]          # AF_BRIDGE, then AF_UNSPEC
    assert {k: v for k, v in e.items() if k != "dump"} == \
        {k: v for k, v in r.items() if k != "dump"}
    assert e["dump"] == r["dump"]
