"""The test harnesses' netlink trace: recording one 340-byte datagram with the kernel pair's
and the xfrmd_server fixture's TraceTap (``TraceTap.record``, the call they install: a tuple
appended to a list, spilled in bulk; JSON lines written when read) against
``xfrmd run --trace``'s TraceWriter (a JSON line per datagram, line-buffered), both measured in
the same run; and what the tap's conversion costs when a failed test reads the trace."""
from __future__ import annotations

import os
import shutil
import tempfile
import time

from netlink_codec import netlink as N
from xfrmd.clock import ManualClock
from xfrmd.kernel import Kernel
from xfrmd.trace import TraceWriter
from xfrmd.trace_tap import SPILL_AT, TraceTap

from .bench_esp import _best


def run(quick: bool = False) -> list[dict]:
    # whole multiples of the tap's spill: every round pays its share of the bulk writes
    n = SPILL_AT if quick else 5 * SPILL_AT
    kernel = Kernel(ManualClock(), seed=1)
    sock = kernel.socket(N.NETLINK_XFRM, "default", pid=1)
    datagram = os.urandom(340)
    tmp = tempfile.mkdtemp(prefix="xfrmd-bench-trace-")
    try:
        tap = TraceTap(os.path.join(tmp, "tap.jsonl"), kernel)
        writer = TraceWriter.open(os.path.join(tmp, "writer.jsonl"), kernel)
        ours, ref = _best(lambda: tap.record("rx", sock, datagram),
                          lambda: writer("rx", sock, datagram), n)
        t0 = time.process_time()
        tap.path                                   # noqa: B018 - converts what was recorded
        per_line = (time.process_time() - t0) / (n * 9)
        tap.close()
        writer.out.close()
    finally:
        shutil.rmtree(tmp)
    return [{"name": "trace_tap_per_datagram", "value": ours * 1e6, "unit": "µs",
             "reference": ref * 1e6, "ratio": ours / ref, "goal": "<= 2 µs", "gate": "lower",
             "bar": "(reference: TraceWriter's JSON line, same run)"},
            {"name": "  trace_tap_conversion_on_read", "value": per_line * 1e6, "unit": "µs",
             "reference": ref * 1e6, "ratio": per_line / ref,
             "bar": "(per datagram, paid only when a test reads the trace)"}]


if __name__ == "__main__":
    import sys
    for row in run(quick="--quick" in sys.argv):
        print(row)
