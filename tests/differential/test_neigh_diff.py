"""Differential: the neighbour tables (`ip neigh`) on a fresh real network namespace and
through `xfrmd run --topology bare` — an empty dump where there are no entries (pyroute2's
NDB waits for it), neigh_add / neigh_delete / neigh_get's answers and extack, the entries a
dump lists, and a device's entries flushed when it goes down or away. The kernel's dump
order follows a per-boot hash, so the lines of a dump of several entries are sorted."""
from __future__ import annotations

import json
import re

import pytest

from tests.differential.test_rtnl_diff import (NL_DUMP, _norm, check_line, line_ids, line_tests,
                                               outputs_fixture, run_probe_both)

CASES = [
    "ip neigh show",
    "ip -6 neigh show",
    "ip link add v0 type veth peer name v1",
    "ip neigh add 192.0.2.7 lladdr 00:11:22:33:44:55 dev v0",
    "ip neigh add 192.0.2.7 lladdr 00:11:22:33:44:55 dev v0",        # EEXIST
    "ip neigh add 192.0.2.8 lladdr 00:11:22:33:44:56 dev v0 nud reachable",
    "ip neigh add 192.0.2.9 dev v0 nud noarp",
    "ip neigh add 192.0.2.10 lladdr 00:11 dev v0",                    # Invalid link address
    "ip neigh add 192.0.2.11 lladdr 00:11:22:33:44:57 dev lo",        # keyed 0.0.0.0
    "ip -6 neigh add 2001:db8::7 lladdr 00:11:22:33:44:55 dev v1 router",
    "ip neigh replace 192.0.2.7 lladdr 00:11:22:33:44:66 dev v0",
    "ip neigh change 192.0.2.99 lladdr 00:11:22:33:44:66 dev v0",     # ENOENT
    "ip neigh show | sort",
    "ip neigh show nud all | sort",
    "ip neigh show dev v0 | sort",
    "ip -6 neigh show",
    "ip neigh get 192.0.2.7 dev v0",
    "ip neigh get 192.0.2.77 dev v0",                                 # extack
    "ip neigh del 192.0.2.8 dev v0",
    "ip neigh del 192.0.2.8 dev v0",                                  # ENOENT
    "ip neigh show | sort",
    "ip link set v0 up",
    "ip neigh show dev v0",
    "ip link set v0 down",                                            # flushes v0's
    "ip neigh show | sort",
    "ip neigh add 192.0.2.7 lladdr 00:11:22:33:44:55 dev v0",
    "ip link del v0",                                                 # and v1's go too
    "ip neigh show",
]

outputs, test_ip_neigh_line_matches_the_kernel = line_tests(CASES, "neigh")


_DUMP = NL_DUMP + r'''
s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)
s.bind((0, 0))
for fam in (0, 2, 10):
    body = struct.pack("=BxxxiHBB", fam, 0, 0, 0, 0)
    print(fam, json.dumps(nl_dump(s, struct.pack("=IHHII", 16 + len(body), 30, 0x301, 1, 0) + body)))
'''


def test_neigh_dump_is_the_kernels(tmp_path):
    """An empty dump ends with NLMSG_DONE (no EOPNOTSUPP); one entry per family in
    neigh_fill_info's bytes (the cache ages left out)."""
    real, emu = run_probe_both(tmp_path, "", _DUMP)
    assert real.returncode == 0 and emu.returncode == 0, emu.stderr
    assert emu.stdout == real.stdout == "0 []\n2 []\n10 []\n"
    setup = ("ip link add v0 type veth peer name v1; "
             "ip neigh add 192.0.2.7 lladdr 00:11:22:33:44:55 dev v0; "
             "ip -6 neigh add 2001:db8::7 lladdr 00:11:22:33:44:55 dev v1 router; ")
    real, emu = run_probe_both(tmp_path, setup, _DUMP)

    def strip(text):          # NDA_CACHEINFO (the last attribute but NDA_PROTOCOL): ages
        out = []
        for line in text.splitlines():
            fam, msgs = line.split(" ", 1)
            out.append((fam, [m[:-48] for m in json.loads(msgs)]))
        return out
    assert strip(emu.stdout) == strip(real.stdout)
    assert len(strip(real.stdout)[0][1]) == 2


# -- PF_BRIDGE: the forwarding database ------------------------------------------------

FDB_CASES = [
    "bridge fdb show",
    "ip link add v0 type veth peer name v1",
    "bridge fdb show",                          # IPv6's all-nodes group from registration
    "ip link set v0 up",
    "bridge fdb show",                          # and IPv4's all-hosts once up
    "ip link add br0 type bridge",
    "ip link set v1 master br0",
    "bridge fdb show",                          # the port's local entry in br0's table
    "ip link set v1 up",
    "ip -6 addr add 2001:db8::1/64 dev v0 nodad",
    "sleep 0.3",
    "bridge fdb show",                          # solicited-node groups, in joining order
    "ip link set v0 down",
    "bridge fdb show",                          # a device that was up: its groups left
]

fdb_outputs = outputs_fixture(FDB_CASES, "fdb")

_FIXED = re.compile(r"\b(?:33:33:00:00:00:01|01:00:5e:00:00:01)\b")
_SOLICIT = re.compile(r"\b33:33:ff(?::[0-9a-f]{2}){3}\b")


def _fdb_norm(text: str) -> str:
    """Random MACs (and the solicited-node groups made from them) normalised; the fixed
    groups kept."""
    text = _SOLICIT.sub("SOLICITED", text)
    kept = _FIXED.findall(text)
    text = _norm(_FIXED.sub("FIXED", text))
    for k in kept:
        text = text.replace("FIXED", k, 1)
    return text


@pytest.mark.parametrize("i", range(len(FDB_CASES)), ids=line_ids(FDB_CASES))
def test_bridge_fdb_line_matches_the_kernel(fdb_outputs, i):
    check_line(fdb_outputs, FDB_CASES, i, norm=_fdb_norm)
