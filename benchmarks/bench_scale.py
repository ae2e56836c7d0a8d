"""The SAD and the SPD as they grow (docs/performance.md), in-process through ``Kernel.deliver``:
add (NEWSA / NEWPOLICY with ACK), lookup (GETSA by daddr+SPI, GETPOLICY by selector+dir),
delete (DELSA / DELPOLICY) and dump (per entry) at 1k, 10k and 100k entries — 1k and 10k
with --quick, 1M more with ``--long`` (``python3 -m benchmarks.bench_scale --long``: minutes and
≈ 3 GiB). The reference of each figure is the same operation on a table of 1k entries kept
alongside, timed in the same window (goal ≤ 1.2×): batch by batch in turn with the large
table's, and a dump of it right before and after each dump of the large one.
Also the RSS growth and the longest garbage-collector pause (``gc.callbacks``) while the
largest table is loaded (goal: no pause over 10 ms).

The collector runs with the server's settings (``xfrmd.embedded.tune_gc``, as ``xfrmd serve``
and ``xfrmd run`` set it): under the default thresholds a full collection walks every SA —
seconds at 1M, which landed in whichever figure was being timed (the 1M SAD dump per entry
read 1.9× the 1k one, the longest pause 5 s). Times are CPU time of this process (the pauses
of the collecting thread): the machine is shared, and wall-clock samples moved 2–4× with the
neighbours."""
from __future__ import annotations

import gc
import random
import statistics
import struct
import sys
import time

from netlink_codec import netlink as N
from netlink_codec import xfrm as X

from xfrmd.embedded import tune_gc
from xfrmd.xfrm.sadb import STATE_GC_GRACE
from xfrmd.xfrm.spdb import RCU_GRACE

from .bench_sad import _kernel, _rss_kib, newpolicy_request, newsa_request

M = X.XfrmMsg
OPS = 200            # operations per pass, timed in batches of 20
PASSES = 5           # passes per size, each with probes of its own: the median of 50 batches
REF_SIZE = 1000      # the reference table's size


class GcPauses:
    """The longest pause of the cyclic garbage collector while active (gc.callbacks), and the
    objects that collection walked (what it freed and what survived it, counted after its
    time is taken and before ``freeze_survivors`` freezes the survivors): on a shared VM the
    same fixed work now and then reads 10-15x its usual CPU time, so a long pause that walked
    no more objects than the others is the machine's, not the collector's
    (docs/performance.md, "Review mends (session 12)")."""

    def __init__(self):
        self.longest, self.count, self._t0 = 0.0, 0, 0.0
        self.walked = self.most = 0      # objects: the longest's, the most of any collection

    def __call__(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._t0 = time.thread_time()
            return
        took = time.thread_time() - self._t0
        self.count += 1
        # the survivors are in the next generation (a full collection's stay in the last)
        walked = info["collected"] + len(gc.get_objects(min(info["generation"] + 1, 2)))
        self.most = max(self.most, walked)
        if took > self.longest:
            self.longest, self.walked = took, walked

    def __enter__(self):
        gc.callbacks.insert(0, self)    # before freeze_survivors: the survivors are countable
        return self

    def __exit__(self, *exc):
        gc.callbacks.remove(self)


def _sa_id(i: int, msg: int, flags: int) -> bytes:
    req = newsa_request(i)
    daddr, spi = req[16 + 56:16 + 72], req[16 + 72:16 + 76]
    return N.encode_msg(msg, N.NLM_F_REQUEST | flags, i, 0,
                        struct.pack("=16s4sHBx", daddr, spi, X.AF_INET, X.IPPROTO_ESP))


def _pol_id(i: int, msg: int, flags: int) -> bytes:
    sel = newpolicy_request(i)[16:16 + 56]
    return N.encode_msg(msg, N.NLM_F_REQUEST | flags, i, 0,
                        struct.pack("=56sIB3x", sel, 0, X.XFRM_POLICY_OUT))


TABLES = {
    "sad": (newsa_request, _sa_id, M.GETSA, M.DELSA),
    "spd": (newpolicy_request, _pol_id, M.GETPOLICY, M.DELPOLICY),
}


def _batches(k, s, reqs: list[bytes]) -> list[float]:
    """Seconds per operation of each batch of 20; every answer is read and checked."""
    return [_batch(k, s, reqs[j:j + 20]) for j in range(0, len(reqs), 20)]


def _batch(k, s, batch: list[bytes]) -> float:
    """Seconds per operation of one batch; every answer is read and checked."""
    deliver, recv = k.deliver, k.recv
    t0 = time.process_time()
    for r in batch:
        deliver(s, r)
        a = recv(s)
    took = (time.process_time() - t0) / len(batch)
    t = struct.unpack_from("=H", a, 4)[0]
    assert t != N.NLMSG_ERROR or struct.unpack_from("=i", a, 16)[0] == 0, a[:64]
    return took


def _dump(k, s, msg: int) -> tuple[float, int]:
    """Seconds per entry of a whole dump, and the entries counted: the median over the
    dump's reads of each read's time per entry, plus the request's own time (the snapshot)
    spread over the entries. One read is ≈ 50 entries; timing the dump as one sample let a
    neighbour's time slice move the 1k figure (3.5 ms in all) by up to 1.8×."""
    t0 = time.process_time()
    k.deliver(s, N.encode_msg(msg, N.NLM_F_REQUEST | N.NLM_F_DUMP, 1, 0,
                              bytes(24 if msg == M.GETSA else 64)))
    start = time.process_time() - t0
    n, done, reads = 0, False, []
    while not done:
        t0 = time.process_time()
        d = k.recv(s)
        took = time.process_time() - t0
        assert d is not None, "dump ended without NLMSG_DONE"
        off, entries = 0, 0
        while off < len(d):
            ln, t = struct.unpack_from("=IH", d, off)
            if t == N.NLMSG_DONE:
                done = True
            elif t != N.NLMSG_ERROR:
                entries += 1
            off += (ln + 3) & ~3
        if entries:
            reads.append(took / entries)
        n += entries
    return statistics.median(reads) + start / max(1, n), n


class Table:
    """One kernel's SAD or SPD at ``size`` entries (0 … size-1), and the requests of a pass:
    OPS new entries added, then OPS random entries of the table deleted (an entry as cold as
    the table's, not the one just added); untimed, the deleted ones come back and the new ones
    go, so the table stays at its size."""

    def __init__(self, table: str, rnd: random.Random):
        self.new, self.ident, self.get, self.delete = TABLES[table]
        self.k, self.s = _kernel()
        self.size, self.rnd = 0, rnd
        self.grace = RCU_GRACE if table == "spd" else STATE_GC_GRACE

    def idle(self) -> float | None:
        """The server's idle time after a batch, untimed in it: the deferred work of the
        grace period's end (the SPD: deleted policies' by-index entries and frees, spdb.py
        ``rcu_barrier``; the SAD: deleted states' state_all entries and frees, sadb.py
        ``gc_task``) runs on the kernel's timer as the server's round runs it. Returns its
        CPU seconds (None for a table with none)."""
        if not self.grace:
            return None
        t0 = time.process_time()
        self.k.advance(self.grace)
        return time.process_time() - t0

    def grow(self, size: int) -> None:
        k, s, new = self.k, self.s, self.new
        for i in range(self.size, size):
            k.deliver(s, new(i))
            k.recv(s)
        self.size = size

    def run(self, reqs: list[bytes]) -> None:
        _batches(self.k, self.s, reqs)
        self.idle()

    def pass_requests(self, p: int) -> dict[str, list[bytes]]:
        probe = range(self.size + p * OPS, self.size + (p + 1) * OPS)
        gone = self.rnd.sample(range(self.size), OPS)
        ident, delete = self.ident, self.delete
        return {"add": [self.new(i) for i in probe],
                "delete": [ident(i, delete, N.NLM_F_ACK) for i in gone],
                "put_back": [self.new(i) for i in gone],
                "take_out": [ident(i, delete, N.NLM_F_ACK) for i in probe]}

    def lookups(self) -> list[bytes]:
        return [self.ident(self.rnd.randrange(self.size), self.get, 0) for _ in range(OPS)]


def _paired(big: Table, ref: Table, reqs: list[bytes], ref_reqs: list[bytes],
            out: dict[str, list[float]], op: str, flip: int) -> None:
    """Each batch of 20 on ``big`` with one of the reference's right before or after it (in
    turn): the two share the machine's load of that moment."""
    for j in range(0, len(reqs), 20):
        pair = ((ref, ref_reqs, "ref"), (big, reqs, "big"))
        for t, rs, who in (pair if (j // 20 + flip) % 2 else pair[::-1]):
            out[f"{op}/{who}"].append(_batch(t.k, t.s, rs[j:j + 20]))
            took = t.idle()         # the deferred work (grace period), per entry of the batch
            if took is not None:
                out.setdefault(f"{op}_deferred/{who}", []).append(took / len(rs[j:j + 20]))


def curve(table: str, sizes: list[int]) -> tuple[dict, GcPauses, float]:
    """{size: {op: (seconds, reference seconds, [ratio of each pass])}}, the collector's
    pauses over the curve (:class:`GcPauses`), RSS growth. The reference of every figure is the same operation
    on a 1k table kept alongside, timed in the same window: batch by batch, in turn before and
    after the large table's (add, delete, lookup), and a dump of it right before and right
    after each dump of the large one. (Measured once at the start, the 1k figure took the
    machine's load of that minute, and the 1M one another: single runs of the SAD's 1M delete
    read 1.42× and 2.11×.)"""
    gc.unfreeze()          # the previous table's kernel is garbage: let the collector see it
    gc.collect()
    gc.freeze()
    rnd = random.Random(1)
    ref = Table(table, rnd)
    ref.grow(REF_SIZE)
    big = Table(table, rnd)
    rss0, out = _rss_kib(), {}
    with GcPauses() as pauses:
        for size in sizes:
            big.grow(size)
            times: dict[str, list[float]] = {f"{op}/{who}": [] for op in
                                             ("add", "delete", "lookup") for who in ("ref", "big")}
            per_pass: dict[str, list[float]] = {"add": [], "delete": [], "lookup": []}
            for p in range(PASSES):
                marks = {key: len(v) for key, v in times.items()}
                rq, rr = big.pass_requests(p), ref.pass_requests(p)
                for op in ("add", "delete"):
                    _paired(big, ref, rq[op], rr[op], times, op, p)
                for t, r in ((big, rq), (ref, rr)):
                    t.run(r["put_back"])
                    t.run(r["take_out"])
                for op in per_pass:
                    if op == "lookup":
                        continue
                    per_pass[op].append(statistics.median(times[f"{op}/big"][marks[f"{op}/big"]:])
                                        / statistics.median(times[f"{op}/ref"][marks[f"{op}/ref"]:]))
            res: dict[str, tuple[float, float, list[float]]] = {}
            # the SPD's pure-Python path keeps each policy's message body once built
            # (Policy.wire_body): there the first dump builds those not yet built (all at 1k,
            # 90 % of the table at the larger sizes, where the previous size's dumps built the
            # rest), the second does the same work at every size; the lookups come after it,
            # so that every one finds its body built. The C builder (_poldump) caches nothing:
            # both dumps, and every lookup, build each message. The reference's bodies are
            # built from its first dump on.
            for op in ("first_dump_per_entry", "dump_per_entry"):
                before, _ = _dump(ref.k, ref.s, ref.get)
                sec, n = _dump(big.k, big.s, big.get)
                after, m = _dump(ref.k, ref.s, ref.get)
                assert n == size and m == REF_SIZE, (table, n, size, m)
                res[op] = (sec, (before + after) / 2, [])
            for p in range(PASSES):
                mark = len(times["lookup/big"]), len(times["lookup/ref"])
                _paired(big, ref, big.lookups(), ref.lookups(), times, "lookup", p)
                per_pass["lookup"].append(statistics.median(times["lookup/big"][mark[0]:])
                                          / statistics.median(times["lookup/ref"][mark[1]:]))
            for op, ratios in per_pass.items():
                res[op] = (statistics.median(times[f"{op}/big"]),
                           statistics.median(times[f"{op}/ref"]), ratios)
            if "delete_deferred/big" in times:   # what the deletes left for later
                res["delete_deferred"] = (statistics.median(times["delete_deferred/big"]),
                                          statistics.median(times["delete_deferred/ref"]), [])
            out[size] = res
    return out, pauses, (_rss_kib() - rss0) * 1024


def run(quick: bool = False, long: bool = False,
        tables: tuple[str, ...] = ("sad", "spd")) -> list[dict]:
    tune_gc()
    sizes = [1000, 10_000] if quick else [1000, 10_000, 100_000]
    if long:
        sizes.append(1_000_000)
    rows = []
    for table in tables:
        points, pauses, rss = curve(table, sizes)
        for size in sizes:
            for op, (sec, ref, ratios) in points[size].items():
                # the SPD's first dump is not like for like (curve()); the SAD keeps no body
                like = op != "first_dump_per_entry" or table != "spd"
                if op == "delete_deferred":
                    rows.append({"name": f"{table}_{op}_at_{size // 1000}k", "value": sec * 1e6,
                                 "unit": "µs", "reference": ref * 1e6, "ratio": sec / ref,
                                 "bar": "(per delete, after the batch: the grace period's end, "
                                        "by-index entry and frees; vs 1k, same window)",
                                 "goal": ""})
                    continue
                spread = (f"; passes {min(ratios):.2f}-{max(ratios):.2f}x" if ratios else "")
                rows.append({"name": f"{table}_{op}_at_{size // 1000}k", "value": sec * 1e6,
                             "unit": "µs", "reference": ref * 1e6, "ratio": sec / ref,
                             "bar": f"(vs the same on a 1k table, same window{spread})" if like
                             else "(pure Python: builds the bodies not built yet, all at 1k, "
                                  "90 % above)",
                             "goal": "<= 1.2x" if like else ""})
        top = sizes[-1]
        rows.append({"name": f"{table}_gc_longest_pause_loading_{top // 1000}k",
                     "value": pauses.longest * 1e3, "unit": "ms", "reference": 10.0,
                     "ratio": pauses.longest * 1e3 / 10, "goal": "<= 10 ms",
                     "bar": f"({pauses.count} collections; the longest walked "
                            f"{pauses.walked:,} objects, the most any walked {pauses.most:,})"})
        rows.append({"name": f"{table}_rss_{top // 1000}k_entries", "value": rss / 2**20,
                     "unit": "MiB", "reference": top / 1000, "ratio": rss / top,
                     "bar": "(ratio: bytes per entry)", "goal": ""})
    return rows


if __name__ == "__main__":
    from .__main__ import _fmt
    # --sad / --spd: only that table's curve (the SPD's 1M curve alone: ≈ 1 minute, 1.2 GiB)
    only = tuple(t for t in TABLES if f"--{t}" in sys.argv) or tuple(TABLES)
    rows = run(quick="--quick" in sys.argv, long="--long" in sys.argv, tables=only)
    for row in rows:
        print(_fmt(row))
    # the curves, one line per operation: each size's ratio to its own window's 1k
    curves: dict[str, list[str]] = {}
    for row in rows:
        name, _, at = row["name"].rpartition("_at_")
        if name and row.get("goal"):
            curves.setdefault(name, []).append(f"{at} {row['ratio']:.2f}x")
    for name, points in curves.items():
        print(f"# {name:34} " + "  ".join(points))
