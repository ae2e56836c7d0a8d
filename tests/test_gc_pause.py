"""The collector as the server runs it (``xfrmd.embedded.tune_gc``, set by ``xfrmd serve`` and
``xfrmd run``): while NEWSAs / NEWPOLICYs load a table, no collection walks more than about
one young generation's worth of objects (the pause a client of the server waits through is
the walk: ≈ 1 ms per 10,000 objects at a million SAs, docs/performance.md), whatever the
table's size; and a cycle that becomes garbage before a collection is still freed.

Counted, not timed: at the start of each collection (``gc.callbacks``) the objects in the
generations it collects (``gc.get_objects``). Each run is a fresh interpreter: the settings
and ``gc.freeze`` are the process's."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_LOAD = """
import gc, json, sys
from benchmarks.bench_sad import _kernel, newpolicy_request, newsa_request
from xfrmd.embedded import tune_gc
from netlink_codec import netlink as N
table, n = sys.argv[1], int(sys.argv[2])
new = newsa_request if table == "sad" else newpolicy_request
k, s = _kernel()
tune_gc()
walked = []
def count(phase, info):
    if phase == "start":
        walked.append(sum(len(gc.get_objects(g)) for g in range(info["generation"] + 1)))
gc.callbacks.insert(0, count)
for i in range(n):
    k.deliver(s, new(i))
    ack = s.pop()
    assert N.NLMSG_ERROR == int.from_bytes(ack[4:6], "little") and ack[16:20] == bytes(4), ack
gc.callbacks.remove(count)
print(json.dumps({"collections": len(walked), "walked": max(walked, default=0)}))
"""


def _load(table: str, n: int) -> dict:
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    p = subprocess.run([sys.executable, "-c", _LOAD, table, str(n)], cwd=ROOT,
                       capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    return json.loads(p.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("table", ["sad", "spd"])
def test_no_collection_walks_more_than_one_young_generation_while_loading(table):
    # 40,000 entries are ≈ 170,000 (SAD) / 120,000 (SPD) tracked objects kept: a dozen or more
    # collections. Freezing only the survivors of gen≥1 collections let each collection of
    # generation 1 walk three young generations' survivors as well (≈ 34,000 / 40,000).
    r = _load(table, 40_000)
    assert r["collections"] >= 10, r
    assert r["walked"] <= 12_000, r


_CYCLE = """
import gc, json, weakref
from xfrmd.embedded import tune_gc
tune_gc()
class Node:
    pass
freed = []
def make():
    a, b = Node(), Node()
    a.peer, b.peer = b, a
    weakref.finalize(a, freed.append, 1)
for _ in range(100):
    make()                       # garbage before any collection has seen it
keep = [[] for _ in range(50_000)]   # allocations enough for a few collections
print(json.dumps({"freed": len(freed), "frozen": gc.get_freeze_count() > 0}))
"""


def test_young_cycles_are_still_collected_under_the_server_settings():
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    p = subprocess.run([sys.executable, "-c", _CYCLE], cwd=ROOT, capture_output=True,
                       text=True, env=env, timeout=120)
    assert p.returncode == 0, p.stderr[-3000:]
    r = json.loads(p.stdout.strip().splitlines()[-1])
    assert r == {"freed": 100, "frozen": True}, r


_CHURN = """
import gc, json, sys
from netlink_codec import netlink as N, xfrm as X
from benchmarks.bench_sad import newsa_request
from benchmarks.bench_scale import _sa_id
from xfrmd import server
from xfrmd.embedded import running_server, tune_gc
server.GC_YOUNG_EVERY = int(sys.argv[1])
tune_gc()
table = n = int(sys.argv[2])
with running_server() as srv, srv.netlink(N.NETLINK_XFRM) as s:
    for i in range(table):
        s.send(newsa_request(i)); s.recv()
    for i in range(n):                       # a rekey: a new SA in, the oldest out
        s.send(newsa_request(table + i)); s.recv()
        s.send(_sa_id(i, X.XfrmMsg.DELSA, N.NLM_F_ACK)); s.recv()
    young = len(gc.get_objects(0))
print(json.dumps({"young": young}))
"""


def _churn(every: int, n: int) -> int:
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    p = subprocess.run([sys.executable, "-c", _CHURN, str(every), str(n)], capture_output=True,
                       text=True, env=env, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    return json.loads(p.stdout.splitlines()[-1])["young"]


def test_churn_does_not_grow_the_young_generation_without_bound():
    """Rekeys (an add and a delete each) leave the collector's young count flat; the reactor's
    periodic young collection (server.GC_YOUNG_EVERY rounds) keeps what waits for the next
    collection bounded. With the period out of reach, the same churn leaves far more."""
    bounded = _churn(4096, 12_000)            # 12k SAs, then 12k rekeys: seen 8k
    unbounded = _churn(10**9, 12_000)         # seen 60k: five more per rekey, never collected
    assert bounded < 20_000, bounded
    assert unbounded > 3 * bounded, (unbounded, bounded)


_DUMP = """
import gc, json, sys, weakref
from netlink_codec import netlink as N, xfrm as X
from benchmarks.bench_sad import _kernel, newsa_request
from xfrmd.embedded import tune_gc
from xfrmd.xfrm import sad
sad.SNAPSHOT_FREEZE = int(sys.argv[1])
k, s = _kernel()
for i in range(3000):
    k.deliver(s, newsa_request(i)); s.pop()
tune_gc()
class Node:
    pass
freed = []
a, b = Node(), Node()
a.peer, b.peer = b, a
weakref.finalize(a, freed.append, 1)
del a, b                          # young garbage when the dump starts
k.deliver(s, N.encode_msg(X.XfrmMsg.GETSA, N.NLM_F_REQUEST | N.NLM_F_DUMP, 1, 0, bytes(24)))
young = [o for g in range(3) for o in gc.get_objects(g) if type(o) is list and len(o) == 3000]
gc.collect(0)
print(json.dumps({"young_snapshot": len(young), "cycle_freed": len(freed)}))
"""


@pytest.mark.parametrize("threshold, young", [(1000, 0), (10**9, 1)])
def test_a_large_dump_snapshot_is_not_left_to_the_young_collections(threshold, young):
    """A dump of more than SNAPSHOT_FREEZE states under the server's settings: its snapshot
    (a list of every state) is frozen, so no collection walks it while the dump lasts (at 1M
    SAs a young collection then took 17-28 ms); what was young garbage before is still
    collected. Below the threshold (the second case) the snapshot is young, as before."""
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    p = subprocess.run([sys.executable, "-c", _DUMP, str(threshold)], cwd=ROOT,
                       capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    r = json.loads(p.stdout.strip().splitlines()[-1])
    assert r == {"young_snapshot": young, "cycle_freed": 1}, r
