"""Differential: `bridge link show|set` (PF_BRIDGE RTM_GETLINK / RTM_SETLINK: br_getlink,
br_setlink → br_setport) and a bridge's carrier following its ports' carrier
(br_port_carrier_check) on a fresh real network namespace and through
`xfrmd run --topology bare`: bridge's and ip's lines identical (MACs normalised), and the
PF_BRIDGE dump's attributes the kernel's."""
from __future__ import annotations

import json
import re

from tests.differential.test_rtnl_diff import NL_DUMP, _attrs, _norm, line_tests, run_probe_both

_ID = re.compile(r"8000\.[0-9a-f:]+")


def _n(text: str) -> str:
    """Bridge ids first (ip drops a leading zero of their MAC bytes), then MACs."""
    return _norm(_ID.sub("8000.ID", text))

CASES = [
    "bridge link show",                                  # no bridge: nothing
    "ip link add br0 type bridge",
    "ip link add v0 type veth peer name v1",
    "ip link add v2 type veth peer name v3",
    "ip link set v0 master br0",
    "ip link set v2 master br0",
    "bridge link show",                                  # the ports only
    "bridge -d link show",
    "bridge link set dev v0 cost 200 flood off",
    "bridge -d link show dev v0",
    "bridge link set dev v0 priority 63 guard on hairpin on learning off mcast_flood off "
    "bcast_flood off",
    "bridge link set dev v0 cost 65536",                 # ERANGE
    "bridge link set dev v0 priority 64",                # ERANGE
    "bridge link set dev v0 state 9",                    # EINVAL
    "bridge link set dev v0 state 3",                    # port down: ENETDOWN
    "bridge link set dev v0 mcast_router 2",
    "bridge link set dev v0 mcast_router 7",             # EINVAL
    "bridge link set dev v0 neigh_suppress on vlan_tunnel on isolated on locked on "
    "root_block on fastleave on mcast_to_unicast on",
    "bridge -d link show",
    "ip -d link show v0",                                # the same settings as bridge_slave
    "bridge link set dev v1 cost 5",                     # not a port: EOPNOTSUPP
    "bridge link set dev br0 cost 5",
    "bridge link set dev lo cost 5",
    "bridge link set dev v0 guard off cost 70000",       # ERANGE, the flag is kept
    "bridge -d link show dev v0",
    "ip link set v0 nomaster",
    "ip link set v0 master br0",                         # a new port: defaults again
    "bridge -d link show dev v0",
    "ip link set br0 up",
    "ip link set v0 up",
    "ip link show br0",                                  # the port has no carrier yet
    "ip link set v1 up",                                 # its peer comes up
    "sleep 0.2",
    "ip link show br0",
    "bridge link show",
    "ip link set v1 down",
    "sleep 0.2",
    "ip link show br0",
    "ip link set v1 up",
    "sleep 0.2",
    "ip link show br0",
    "ip link set v0 down",
    "ip link show br0",
]

outputs, test_bridge_link_line_matches_the_kernel = line_tests(CASES, "bridgelink", norm=_n)


_DUMP = NL_DUMP + r'''
import sys
s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)
s.bind((0, 0))
out = []
for mask in (None, 2):
    body = struct.pack("=BxHiII", 7, 0, 0, 0, 0)
    if mask is not None:
        body += struct.pack("=HHI", 8, 29, mask)
    out.append(nl_dump(s, struct.pack("=IHHII", 16 + len(body), 18, 0x301, 1, 0) + body))
print(json.dumps(out))
'''

# random MACs and bridge ids; the STP timers the real bridge runs; the multicast groups a
# running port has learnt (they depend on the MLD reports seen so far)
_VOLATILE = {1}
_VOLATILE_PORT = {13, 14, 21, 22, 23, 41}


def _decode(h: str):
    b = bytes.fromhex(h)
    out = [b[:16].hex()]
    for t, v in _attrs(b, 16, len(b)):
        if t & 0x3FFF == 12:
            v = [(pt, None if pt in _VOLATILE_PORT else pv.hex()) for pt, pv in _attrs(v, 0, len(v))]
        elif t in _VOLATILE:
            v = None
        else:
            v = v.hex()
        out.append((t, v))
    return out


def test_bridge_dump_attributes_match_the_kernel(tmp_path):
    setup = ("ip link add br0 type bridge; ip link add v0 type veth peer name v1; "
             "ip link add v2 type veth peer name v3; ip link set v0 master br0; "
             "ip link set v2 master br0; ip link set v0 up; ip link set br0 up; "
             "ip link set v1 up; bridge link set dev v2 cost 7 priority 3 learning off; ")
    real, emu = run_probe_both(tmp_path, setup, _DUMP)
    assert real.returncode == 0 and emu.returncode == 0, (real.stderr, emu.stderr)
    r = [[_decode(h) for h in d] for d in json.loads(real.stdout)]
    e = [[_decode(h) for h in d] for d in json.loads(emu.stdout)]
    assert [len(d) for d in r] == [2, 3]                 # the ports; and the bridge with BRVLAN
    assert e == r
