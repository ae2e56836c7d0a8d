"""SPD in-process (sans-IO kernel, no server, the collector set as the server sets it):
decode + validate + insert + ACK of one NEWPOLICY (median CPU µs of batches; bar ≤ 25 µs), the cost of an add at 100k policies vs at 1k (bar ≤ 1.5×), and the
memory 100k policies take (the SA side is bench_sad)."""
from __future__ import annotations

import gc
import resource
import statistics
import struct
import time

from netlink_codec import netlink as N
from netlink_codec import xfrm as X
from xfrmd.embedded import tune_gc

INF = X.XFRM_INF


def newpolicy_request(i: int) -> bytes:
    """An OUT policy 10.x.y.z/32 → 198.51.100.0/24 with one ESP tunnel template."""
    src = bytes([10, (i >> 16) & 255, (i >> 8) & 255, i & 255]).ljust(16, b"\0")
    sel = struct.pack("=16s16sHHHHHBBB3xiI", bytes([198, 51, 100, 0]).ljust(16, b"\0"), src,
                      0, 0, 0, 0, X.AF_INET, 24, 32, 0, 0, 0)
    info = sel + struct.pack("=8Q4QIIBBBB4x", INF, INF, INF, INF, 0, 0, 0, 0, 0, 0, 0, 0,
                             100, 0, 1, 0, 0, 0)
    tmpl = struct.pack("=16s4sB3xH2x16sIBBBxIII", bytes([192, 0, 2, 2]).ljust(16, b"\0"),
                       bytes(4), 50, X.AF_INET, bytes([192, 0, 2, 1]).ljust(16, b"\0"), 1, 1, 0,
                       0, 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF)
    return N.encode_msg(X.XfrmMsg.NEWPOLICY, N.NLM_F_REQUEST | N.NLM_F_ACK, i, 0,
                        info + N.nla(X.Xfrma.TMPL, tmpl))


def _kernel():
    from xfrmd.clock import ManualClock
    from xfrmd.kernel import Kernel
    k = Kernel(ManualClock())
    s = k.socket(N.NETLINK_XFRM, "default", pid=1)
    k.bind(s)
    return k, s


def _add_batch(k, s, reqs) -> float:
    deliver, recv = k.deliver, k.recv
    t0 = time.process_time()       # CPU time, as bench_sad
    for r in reqs:
        deliver(s, r)
        recv(s)
    return (time.process_time() - t0) / len(reqs)


def _rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def run(quick: bool = False) -> list[dict]:
    big = 10_000 if quick else 100_000
    batch = 1000
    reqs = [newpolicy_request(i) for i in range(big + 2 * batch)]
    gc.collect()
    tune_gc()          # the collector as the server runs it (xfrmd serve / xfrmd run)
    k, s = _kernel()
    one = statistics.median(_add_batch(k, s, reqs[j:j + 50]) for j in range(0, batch, 50))
    at_small = statistics.median(_add_batch(k, s, reqs[batch + j:batch + j + 50])
                                 for j in range(0, batch, 50))
    rss0 = _rss_kib()
    for j in range(2 * batch, big, batch):
        _add_batch(k, s, reqs[j:j + batch])
    at_big = statistics.median(_add_batch(k, s, reqs[big + j:big + j + 50])
                               for j in range(0, batch, 50))
    rss = (_rss_kib() - rss0) * 1024
    n = len(k.netns("default").xfrm.policy_all)
    per = rss / max(1, n - 2 * batch)
    return [
        {"name": "newpolicy_decode_validate_insert_ack", "value": one * 1e6, "unit": "µs",
         "reference": 25.0, "ratio": one * 1e6 / 25.0, "bar": "<= 25 µs (ratio <= 1)",
         "goal": "<= 8 µs"},
        {"name": f"newpolicy_cost_at_{n // 1000}k_vs_1k", "value": at_big * 1e6, "unit": "µs",
         "reference": at_small * 1e6, "ratio": at_big / at_small, "bar": "<= 1.5x",
         "goal": "<= 1.2x", "gate": "lower"},
        {"name": "spd_rss_per_100k_policies", "value": per * 100_000 / 2**20, "unit": "MiB",
         "reference": 1024.0, "ratio": per * 100_000 / 2**30,
         "bar": "<= 1 GiB with 100k SAs too (ratio is the policy share)"},
    ]


if __name__ == "__main__":
    import sys
    for row in run(quick="--quick" in sys.argv):
        print(row)
