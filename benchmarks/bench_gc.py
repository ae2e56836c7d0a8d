"""The garbage collector under the server's settings (``xfrmd.embedded.tune_gc``) while
NEWSAs load the SAD in-process: the longest collection, in CPU time of the collecting
thread (wall-clock would count the neighbours of a shared machine), against the goal of
10 ms. 10k SAs with --quick, 100k in the full run, 1M with --long. Each load runs in a
fresh interpreter: the settings (and ``gc.freeze``) are the process's."""
from __future__ import annotations

import json
import os
import subprocess
import sys

_LOAD = """
import gc, json, sys, time
from benchmarks.bench_sad import _kernel, newsa_request
from xfrmd.embedded import tune_gc
n = int(sys.argv[1])
k, s = _kernel()
tune_gc()
longest, count, t0 = 0.0, 0, 0.0
def pause(phase, info):
    global longest, count, t0
    if phase == "start":
        t0 = time.thread_time()
    else:
        longest, count = max(longest, time.thread_time() - t0), count + 1
gc.callbacks.insert(0, pause)
for j in range(0, n, 1000):
    for r in [newsa_request(i) for i in range(j, min(n, j + 1000))]:
        k.deliver(s, r)
        s.pop()
print(json.dumps({"longest": longest, "count": count}))
"""


def run(quick: bool = False, long: bool = False) -> list[dict]:
    n = 10_000 if quick else 1_000_000 if long else 100_000
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    p = subprocess.run([sys.executable, "-c", _LOAD, str(n)], capture_output=True, text=True,
                       env=env, check=True)
    r = json.loads(p.stdout.splitlines()[-1])
    ms = r["longest"] * 1e3
    return [{"name": f"gc_longest_pause_loading_{n // 1000}k_sas", "value": ms, "unit": "ms",
             "reference": 10.0, "ratio": ms / 10.0, "goal": "<= 10 ms",
             "bar": f"(CPU time; {r['count']} collections, server GC settings)"}]


if __name__ == "__main__":
    from .__main__ import _fmt
    for row in run(quick="--quick" in sys.argv, long="--long" in sys.argv):
        print(_fmt(row))
