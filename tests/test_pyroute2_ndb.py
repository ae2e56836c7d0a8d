"""pyroute2's NDB through the shim: it loads links, addresses, routes and neighbours with
dumps at start and waits for each to end — the neighbour dump answered EOPNOTSUPP before
and NDB hung. Now it starts, sees the emulated devices and the added neighbour."""
from __future__ import annotations

from .conftest import require_shim, xfrmd_run

_NDB = """python3 -c '
from pyroute2 import NDB
with NDB() as ndb:
    print(sorted(r.ifname for r in ndb.interfaces.summary()))
    print([(r.dst, r.lladdr) for r in ndb.neighbours.summary()])
'"""


def test_ndb_starts_and_lists_links_and_neighbours():
    require_shim("ip")
    p = xfrmd_run("ip link add v0 type veth peer name v1 && "
                  "ip neigh add 192.0.2.7 lladdr 00:11:22:33:44:55 dev v0 && " + _NDB,
                  "bare", timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines() == ["['lo', 'v0', 'v1']",
                                     "[('192.0.2.7', '00:11:22:33:44:55')]"]
