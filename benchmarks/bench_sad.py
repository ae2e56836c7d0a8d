"""SAD figures (docs/architecture.md), in-process through ``Kernel.deliver`` (sans-IO):

* one NEWSA (rfc4106(gcm(aes)) tunnel SA, NLM_F_ACK): decode + validate + insert + ACK,
  median CPU µs of batches of 50, the collector set as the server sets it (``tune_gc``)
  (bar ≤ 25 µs, goal ≤ 10 µs);
* cost per add with 100,000 SAs in the table vs with 1,000 (bar ≤ 1.5×, goal ≤ 1.1×);
* RSS growth for 100,000 SAs (the combined SA + policy figure lives in bench_spd.py /
  whichever bench lands last; bar ≤ 1 GiB for both together).
"""
from __future__ import annotations

import gc
import statistics
import struct
import time

from netlink_codec import netlink as N
from netlink_codec import xfrm as X
from xfrmd.embedded import tune_gc

A = X.Xfrma
AEAD = N.nla(A.ALG_AEAD, b"rfc4106(gcm(aes))".ljust(64, b"\0") + struct.pack("=II", 160, 128)
             + bytes(range(20)))
INF = X.XFRM_INF


def newsa_request(i: int) -> bytes:
    """A NEWSA as charon sends it: /32 selector, tunnel mode, reqid, GCM key, ACK wanted."""
    dst = struct.pack(">I", 0xC6336400 + (i >> 16)).ljust(16, b"\0")
    src = bytes([192, 0, 2, 1]).ljust(16, b"\0")
    sel = struct.pack("=16s16sHHHHHBBB3xiI", dst, src, 0, 0, 0, 0, X.AF_INET, 32, 32, 0, 0, 0)
    info = struct.pack("=56s16s4sB3x16s8Q4Q3IIIHBBB7x", sel, dst, struct.pack(">I", 0x1000 + i),
                       X.IPPROTO_ESP, src, INF, INF, INF, INF, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                       0, i, X.AF_INET, X.XFRM_MODE_TUNNEL, 32, 0)
    return N.encode_msg(X.XfrmMsg.NEWSA, N.NLM_F_REQUEST | N.NLM_F_ACK, i, 0, info + AEAD)


def newpolicy_request(i: int) -> bytes:
    """An OUT policy per /32 pair with one ESP tunnel template (what charon installs)."""
    a = struct.pack(">I", 0x0A000000 + i).ljust(16, b"\0")
    b = struct.pack(">I", 0x0B000000 + i).ljust(16, b"\0")
    sel = struct.pack("=16s16sHHHHHBBB3xiI", b, a, 0, 0, 0, 0, X.AF_INET, 32, 32, 0, 0, 0)
    info = sel + struct.pack("=8Q4QIIBBBB4x", INF, INF, INF, INF, 0, 0, 0, 0, 0, 0, 0, 0,
                             0, 0, X.XFRM_POLICY_OUT, 0, 0, 0)
    tmpl = struct.pack("=16s4sB3xH2x16sIBBBxIII", bytes([198, 51, 100, 1]).ljust(16, b"\0"),
                       bytes(4), X.IPPROTO_ESP, X.AF_INET, bytes([192, 0, 2, 1]).ljust(16, b"\0"),
                       i, X.XFRM_MODE_TUNNEL, 0, 0, 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF)
    return N.encode_msg(X.XfrmMsg.NEWPOLICY, N.NLM_F_REQUEST | N.NLM_F_ACK, i, 0,
                        info + N.nla(X.Xfrma.TMPL, tmpl))


def _kernel():
    from xfrmd.clock import ManualClock
    from xfrmd.kernel import Kernel
    k = Kernel(ManualClock(), seed=1)
    s = k.socket(N.NETLINK_XFRM)
    k.bind(s)
    return k, s


def _add_batch(k, s, reqs) -> float:
    """Seconds per add for this batch (every ACK is taken off the socket and checked)."""
    deliver, pop = k.deliver, s.pop
    t0 = time.process_time()       # CPU time: the figure least moved by the neighbours
    for r in reqs:
        deliver(s, r)
        ack = pop()
    dt = time.process_time() - t0
    assert struct.unpack_from("=i", ack, 16)[0] == 0, "NEWSA failed"
    return dt / len(reqs)


def _handlers():
    from xfrmd.xfrm.user import HANDLERS
    return HANDLERS


def _rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def run(quick: bool = False) -> list[dict]:
    big = 10_000 if quick else 100_000
    batch = 1000
    reqs = [newsa_request(i) for i in range(big + 2 * batch)]
    gc.collect()
    tune_gc()          # the collector as the server runs it (xfrmd serve / xfrmd run)
    k, s = _kernel()
    # single-add latency: median over batches in a small table
    samples = [_add_batch(k, s, reqs[j:j + 50]) for j in range(0, batch, 50)]
    one = statistics.median(samples)
    at_small = statistics.median(_add_batch(k, s, reqs[batch + j:batch + j + 50])
                                 for j in range(0, batch, 50))
    rss0 = _rss_kib()
    n = 2 * batch
    for j in range(n, big, batch):
        _add_batch(k, s, reqs[j:j + batch])
    n = max(n, big)
    at_big = statistics.median(_add_batch(k, s, reqs[n + j:n + j + 50]) for j in range(0, batch, 50))
    rss = (_rss_kib() - rss0) * 1024
    count = len(k.netns("default").xfrm.state_all)
    per_sa = rss / max(1, count - 2 * batch)
    rows = []
    if X.XfrmMsg.NEWPOLICY in _handlers():
        # the combined figure: as many policies as SAs in the same namespace
        for j in range(0, count, batch):
            _add_batch(k, s, [newpolicy_request(i) for i in range(j, min(count, j + batch))])
        total = (_rss_kib() - rss0) * 1024 + per_sa * 2 * batch
        n_pol = len(k.netns("default").xfrm.policy_all)
        both = total * 100_000 / max(1, min(count, n_pol))
        rows.append({"name": "rss_100k_sas_plus_100k_policies", "value": both / 2**20,
                     "unit": "MiB", "reference": 1024.0, "ratio": both / 2**30,
                     "bar": "<= 1 GiB", "goal": "<= 250 MiB"})
    return [
        {"name": "newsa_decode_validate_insert_ack", "value": one * 1e6, "unit": "µs",
         "reference": 25.0, "ratio": one * 1e6 / 25.0, "bar": "<= 25 µs (ratio <= 1)",
         "goal": "<= 10 µs"},
        {"name": f"newsa_cost_at_{count // 1000}k_vs_1k", "value": at_big * 1e6, "unit": "µs",
         "reference": at_small * 1e6, "ratio": at_big / at_small, "bar": "<= 1.5x",
         "goal": "<= 1.2x", "gate": "lower"},
        {"name": "sad_rss_per_100k_sas", "value": per_sa * 100_000 / 2**20, "unit": "MiB",
         "reference": 1024.0, "ratio": per_sa * 100_000 / 2**30,
         "bar": "<= 1 GiB with 100k policies too (ratio is the SA share)"},
    ] + rows


def cold_rows(n: int = 1000, pauses_ms: tuple[float, ...] = (0.2, 2.0)) -> list[dict]:
    """NEWSA and NEWPOLICY through ``Kernel.deliver`` back to back (caches warm) and with the
    thread asleep between two requests, as the server's reactor sleeps in ``epoll_wait``
    while a synchronous client (charon) handles the ACK and other tasks run on its CPU:
    median thread CPU µs per request, GC off (``python -m benchmarks.bench_sad --cold``;
    docs/performance.md, "Why a request costs more in situ")."""
    rows = []
    gc.disable()
    try:
        for kind, make in (("newsa", newsa_request), ("newpolicy", newpolicy_request)):
            median = {}
            for pause in (0.0,) + pauses_ms:
                k, s = _kernel()
                took = []
                for r in [make(i) for i in range(n)]:
                    if pause:
                        time.sleep(pause / 1e3)
                    t0 = time.thread_time_ns()
                    k.deliver(s, r)
                    s.pop()
                    took.append(time.thread_time_ns() - t0)
                median[pause] = statistics.median(took) / 1e3
            warm = median.pop(0.0)
            for pause, value in median.items():
                rows.append({"name": f"{kind}_after_{pause:g}ms_asleep", "value": value,
                             "unit": "µs", "reference": warm, "ratio": value / warm,
                             "bar": f"(back to back {warm:.1f} µs)"})
    finally:
        gc.enable()
    return rows


if __name__ == "__main__":
    import sys
    for row in (cold_rows() if "--cold" in sys.argv else run(quick="--quick" in sys.argv)):
        print(row)
