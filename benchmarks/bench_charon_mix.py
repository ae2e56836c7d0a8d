"""charon 6's XFRM requests per Child SA with packet offload on an mlx5-like port, in-process
through ``Kernel.deliver`` (sans-IO): the mix the charon pair of bench_userland sends for each
Child SA, one side's share, built field for field as strongSwan 6.0 (kernel-netlink,
``hw_offload = packet``) sends it (a trace of the pair, ``kp.trace_path``):

1. ALLOCSPI (no ACK flag: the reply is the larval state as XFRM_MSG_NEWSA), SPI range
   0xc0000000-0xcfffffff, XFRMA_SA_DIR in;
2. UPDSA of that SPI: rfc4106(gcm(aes)) 160-bit key, ICV 128, replay window 32,
   XFRM_STATE_AF_UNSPEC, XFRMA_SA_DIR in, XFRMA_OFFLOAD_DEV (INBOUND | PACKET);
3. NEWSA outbound, XFRMA_SA_DIR out, XFRMA_OFFLOAD_DEV (PACKET);
4. NEWPOLICY in (offloaded), fwd (not: mlx5 refuses forward policies), out (offloaded,
   the template carries the outbound SPI).

Rows (thread CPU time, the collector set as the server sets it, ``tune_gc``): µs per Child
SA for the whole mix (reference: one plain NEWSA of bench_sad measured in the same run; not
gated) and µs per request of each kind. ``python3 -m
benchmarks.bench_charon_mix --profile`` prints a cProfile of 200 Child SAs; ``--loop N``
only runs N Child SAs (for ``valgrind --tool=cachegrind``: docs/performance.md; with
``--build-only``, only builds their requests: the part of the count that is the benchmark's).
"""
from __future__ import annotations

import gc
import statistics
import struct
import time

from netlink_codec import netlink as N
from netlink_codec import xfrm as X

from xfrmd.embedded import tune_gc

from .bench_sad import newsa_request

A = X.Xfrma
INF = X.XFRM_INF
ESP = X.IPPROTO_ESP
LOCAL, PEER = bytes([192, 0, 2, 2]).ljust(16, b"\0"), bytes([192, 0, 2, 1]).ljust(16, b"\0")
USERSA = struct.Struct("=56s16s4sB3x16s8Q4Q3IIIHBBB7x")
SELECTOR = struct.Struct("=16s16sHHHHHBBB3xiI")
TMPL = struct.Struct("=16s4sB3xH2x16sIBBBxIII")
FLAGS = N.NLM_F_REQUEST | N.NLM_F_ACK
DIR_IN, DIR_OUT = N.nla(A.SA_DIR, b"\x01"), N.nla(A.SA_DIR, b"\x02")
PRIORITY = 0x059A7F            # charon's priority for a /32 <-> /32 policy
STATE_AF_UNSPEC = 32
KINDS = ("allocspi", "updsa", "newsa_offload", "newpolicy_offload", "newpolicy_fwd")


def _aead(i: int) -> bytes:
    key = (i.to_bytes(4, "big") * 5)
    return N.nla(A.ALG_AEAD, b"rfc4106(gcm(aes))".ljust(64, b"\0")
                 + struct.pack("=II", 160, 128) + key)


def _offload(ifindex: int, flags: int) -> bytes:
    return N.nla(A.OFFLOAD_DEV, struct.pack("=iI", ifindex, flags))


def allocspi(seq: int) -> bytes:
    info = USERSA.pack(bytes(56), LOCAL, bytes(4), ESP, PEER, *([0] * 17), X.AF_INET,
                       X.XFRM_MODE_TUNNEL, 0, 0)
    return N.encode_msg(X.XfrmMsg.ALLOCSPI, N.NLM_F_REQUEST, seq, 0,
                        info + struct.pack("=II", 0xC0000000, 0xCFFFFFFF) + DIR_IN)


def _sa(kind: int, seq: int, i: int, spi: int, dst: bytes, src: bytes, window: int,
        sa_dir: bytes, offload: bytes) -> bytes:
    info = USERSA.pack(bytes(56), dst, struct.pack(">I", spi), ESP, src, INF, INF, INF, INF,
                       *([0] * 12), i + 1, X.AF_INET, X.XFRM_MODE_TUNNEL, window,
                       STATE_AF_UNSPEC)
    return N.encode_msg(kind, FLAGS, seq, 0, info + _aead(i) + sa_dir + offload)


def updsa(seq: int, i: int, spi: int, ifindex: int) -> bytes:
    return _sa(X.XfrmMsg.UPDSA, seq, i, spi, LOCAL, PEER, 32, DIR_IN,
               _offload(ifindex, X.XFRM_OFFLOAD_INBOUND | X.XFRM_OFFLOAD_PACKET))


def newsa(seq: int, i: int, ifindex: int) -> bytes:
    return _sa(X.XfrmMsg.NEWSA, seq, i, out_spi(i), PEER, LOCAL, 0, DIR_OUT,
               _offload(ifindex, X.XFRM_OFFLOAD_PACKET))


def out_spi(i: int) -> int:
    return 0xC2000000 + i


def newpolicy(seq: int, i: int, direction: int, ifindex: int) -> bytes:
    me = struct.pack(">I", 0x0A020001 + i).ljust(16, b"\0")      # 10.2.x.y/32
    them = struct.pack(">I", 0x0A010001 + i).ljust(16, b"\0")    # 10.1.x.y/32
    out = direction == X.XFRM_POLICY_OUT
    dst, src = (them, me) if out else (me, them)
    sel = SELECTOR.pack(dst, src, 0, 0, 0, 0, X.AF_INET, 32, 32, 0, 0, 0)
    info = sel + struct.pack("=8Q4QIIBBBB4x", INF, INF, INF, INF, 0, 0, 0, 0, 0, 0, 0, 0,
                             PRIORITY, 0, direction, 0, 0, 0)
    tdst, tsrc = (PEER, LOCAL) if out else (LOCAL, PEER)
    tmpl = TMPL.pack(tdst, struct.pack(">I", out_spi(i)) if out else bytes(4), ESP, X.AF_INET,
                     tsrc, i + 1, X.XFRM_MODE_TUNNEL, 0, 0, 0xFFFFFFFF, 0xFFFFFFFF,
                     0xFFFFFFFF)
    attrs = N.nla(A.TMPL, tmpl)
    if direction != X.XFRM_POLICY_FWD:
        attrs += _offload(ifindex, X.XFRM_OFFLOAD_PACKET)
    return N.encode_msg(X.XfrmMsg.NEWPOLICY, FLAGS, seq, 0, info + attrs)


def kernel():
    """A kernel whose default namespace has one mlx5-like port with the responder's
    address (what ``KernelPair(device_kind="mlx5")`` gives each side)."""
    from xfrmd.clock import ManualClock
    from xfrmd.kernel import Kernel
    from xfrmd.topology import from_dict
    topo = from_dict({"netns": [{"name": "default", "device": [
        {"name": "p0", "kind": "mlx5", "addresses": ["192.0.2.2/24"]}]}]})
    k = Kernel(ManualClock(), topology=topo, seed=1)
    s = k.socket(N.NETLINK_XFRM)
    k.bind(s)
    return k, s, k.netns("default").links.by_name("p0").ifindex


def _errno(ack: bytes) -> int:
    return struct.unpack_from("=i", ack, 16)[0]


def child_sas(n: int, timer=time.thread_time_ns) -> dict[str, list[int]]:
    """Install ``n`` Child SAs as charon does in a fresh kernel: CPU ns per request of each
    kind (every answer taken off the socket and checked)."""
    k, s, ifindex = kernel()
    deliver, pop = k.deliver, s.pop
    took: dict[str, list[int]] = {kind: [] for kind in KINDS}
    seq = 10
    for i in range(n):
        seq += 1
        req = allocspi(seq)
        t0 = timer()
        deliver(s, req)
        reply = pop()
        took["allocspi"].append(timer() - t0)
        assert struct.unpack_from("=H", reply, 4)[0] == X.XfrmMsg.NEWSA, "ALLOCSPI failed"
        spi = struct.unpack_from(">I", reply, 16 + 72)[0]
        for kind, req in (("updsa", updsa(seq + 1, i, spi, ifindex)),
                          ("newsa_offload", newsa(seq + 2, i, ifindex)),
                          ("newpolicy_offload", newpolicy(seq + 3, i, X.XFRM_POLICY_IN, ifindex)),
                          ("newpolicy_fwd", newpolicy(seq + 4, i, X.XFRM_POLICY_FWD, ifindex)),
                          ("newpolicy_offload", newpolicy(seq + 5, i, X.XFRM_POLICY_OUT, ifindex))):
            t0 = timer()
            deliver(s, req)
            ack = pop()
            took[kind].append(timer() - t0)
            assert _errno(ack) == 0, f"{kind} failed: {_errno(ack)}"
        seq += 5
    return took


def plain_newsa(n: int) -> float:
    """CPU ns per plain NEWSA (bench_sad's request: no offload) in the same conditions."""
    from .bench_sad import _kernel
    k, s = _kernel()
    took = []
    timer = time.thread_time_ns
    for i in range(n):
        req = newsa_request(i)
        t0 = timer()
        k.deliver(s, req)
        s.pop()
        took.append(timer() - t0)
    return statistics.median(took)


def run(quick: bool = False) -> list[dict]:
    n, rounds = (200, 3) if quick else (200, 7)
    best: dict[str, float] = {}
    per_sa, ref = [], []
    gc.collect()
    tune_gc()          # the collector as the server runs it (xfrmd serve / xfrmd run)
    for _ in range(rounds):
        took = child_sas(n)
        med = {kind: statistics.median(v) for kind, v in took.items()}
        for kind, v in med.items():
            best[kind] = min(best.get(kind, v), v)
        per_sa.append(sum(sum(v) for v in took.values()) / n)
        ref.append(plain_newsa(n))
    mix, newsa_ns = min(per_sa) / 1e3, min(ref) / 1e3
    rows = [{"name": "charon6_child_sa_mix_packet_offload", "value": mix, "unit": "µs",
             "reference": newsa_ns, "ratio": mix / newsa_ns,
             "bar": "(6 requests; reference: one plain NEWSA)"}]
    for kind in KINDS:
        rows.append({"name": f"  {kind}", "value": best[kind] / 1e3, "unit": "µs",
                     "reference": newsa_ns, "ratio": best[kind] / 1e3 / newsa_ns,
                     "bar": "(per request, median)"})
    return rows


if __name__ == "__main__":
    import sys
    if "--profile" in sys.argv:
        import cProfile
        import pstats
        child_sas(50)
        prof = cProfile.Profile()
        prof.runcall(child_sas, 200)
        pstats.Stats(prof).sort_stats("tottime").print_stats(40)
    elif "--loop" in sys.argv:
        n = int(sys.argv[sys.argv.index("--loop") + 1])
        if "--build-only" in sys.argv:      # the requests alone: what to subtract
            for i in range(n):
                (allocspi(i), updsa(i, i, 0xC0000000 + i, 2), newsa(i, i, 2),
                 *(newpolicy(i, i, d, 2) for d in (0, 2, 1)))
        else:
            child_sas(n)
    else:
        for row in run(quick="--quick" in sys.argv):
            print(row)
