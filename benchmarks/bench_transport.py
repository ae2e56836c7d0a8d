"""The server's transport per request, outside ``Kernel.deliver``: one reactor round serving
a kept netlink connection that sends what the shim sends for a charon request — a BATCH of
the READ frame (the count of answers read) and one XFRM_MSG_GETSADINFO — and reads the one
answer. The round is the server's own code, driven one round at a time in this thread (no
server thread, no wake-ups): the C round (``xfrmd/_transport.c``: ``Pump.round`` and
``Pump.flush``, ``Server._round_end``) against the Python one (``Server._serve_events`` over
``ep.poll``, ``_round_end`` with ``_after_kernel_work``), measured in the same run.

Rows: thread CPU µs per request of the C round (reference: the Python round, same run;
median of a block, best of the rounds), and of ``Kernel.deliver`` alone (not gated).

``python3 -m benchmarks.bench_transport --loop N --mode c|py|deliver`` runs N requests for
``valgrind --tool=callgrind --toggle-collect=functools_reduce``: only what runs inside
``functools.reduce`` is counted — the server's round (c, py) or ``Kernel.deliver`` and the
reading of its answer off the emulated socket (deliver) —, not the client's send and recv;
docs/performance.md has the figures.
"""
from __future__ import annotations

import functools
import os
import socket
import statistics
import struct
import time

from netlink_codec import netlink as N
from netlink_codec import xfrm as X

from xfrmd import transport as T

GETSADINFO = N.encode_msg(X.XfrmMsg.GETSADINFO, N.NLM_F_REQUEST, 1, 0, b"\xff" * 4)


class Harness:
    """A Server that never serves: one connection on a socketpair, its rounds driven here."""

    def __init__(self) -> None:
        from xfrmd.embedded import DrivenServer, make_kernel
        d = self.driven = DrivenServer(make_kernel("bare"), os.getpid())
        self.kernel, self.server, self.client = d.kernel, d.server, d.client
        self.conn, self.pump = d.conn, d.pump
        self.client.send(T.hello(N.NETLINK_XFRM))
        self.client.send(T.bind(0, 0))
        self.py_round()
        assert T.parse_frame(self.client.recv(4096))[1] == T.F_BIND_REPLY
        self.reads = 0
        self.sock = self.conn.sock

    def close(self) -> None:
        self.driven.close()

    def request(self) -> bytes:
        return T.batch([T.read_report(self.reads), GETSADINFO])

    def py_round(self, _a=None, _b=None) -> None:
        self.driven.py_round()

    def c_round(self, _a=None, _b=None) -> None:
        srv = self.server
        self.pump.round(0.0)
        self.pump.end()

    def deliver(self, _a=None, _b=None) -> None:
        """What the round leaves to the kernel: deliver, and the answer off the socket."""
        self.kernel.deliver(self.sock, GETSADINFO)
        self.sock.pop_skb()

    def exchange(self, step, n: int, counted: bool = False) -> None:
        """``n`` requests, each served by ``step`` (inside functools.reduce when ``counted``)."""
        client, reduce = self.client, functools.reduce
        for _ in range(n):
            if step == self.deliver:
                reduce(step, (0, 0)) if counted else step()
                continue
            client.send(self.request())
            reduce(step, (0, 0)) if counted else step()
            client.recv(65536)
            self.reads += 1


def per_request(h: Harness, step, n: int) -> float:
    """Median thread CPU µs per request over blocks of 50."""
    took = []
    for _ in range(max(1, n // 50)):
        t = time.thread_time_ns()
        h.exchange(step, 50)
        took.append((time.thread_time_ns() - t) / 50 / 1e3)
    return statistics.median(took)


def run(quick: bool = False) -> list[dict]:
    h = Harness()
    try:
        n, rounds = (500, 3) if quick else (2000, 7)
        h.exchange(h.py_round, 200)                    # warm
        c = py = d = float("inf")
        for _ in range(rounds):
            py = min(py, per_request(h, h.py_round, n))
            if h.pump is not None:
                c = min(c, per_request(h, h.c_round, n))
            d = min(d, per_request(h, h.deliver, n))
    finally:
        h.close()
    rows = []
    if h.pump is not None:
        rows.append({"name": "transport_round_charon_request", "value": c, "unit": "µs",
                     "reference": py, "ratio": c / py, "gate": "lower",
                     "bar": "(C round; ref.: the Python round, same run; both with the client's send+recv)"})
    rows.append({"name": "  of which Kernel.deliver", "value": d, "unit": "µs",
                 "reference": py, "ratio": d / py,
                 "bar": "(GETSADINFO deliver + pop_skb; reference: the Python round)"})
    return rows


def main(argv: list[str]) -> int:
    if "--loop" in argv:
        n = int(argv[argv.index("--loop") + 1])
        mode = argv[argv.index("--mode") + 1] if "--mode" in argv else "c"
        h = Harness()
        step = {"c": h.c_round, "py": h.py_round, "deliver": h.deliver}[mode]
        h.exchange(step, 100)
        h.exchange(step, n, counted=True)
        h.close()
        return 0
    for r in run(quick="--quick" in argv):
        print(f"{r['name']:34} {r['value']:8.2f} {r['unit']}  ref {r['reference']:8.2f}  "
              f"ratio {r['ratio']:.2f}  {r['bar']}")
    return 0


if __name__ == "__main__":
    import sys
    sys.exit(main(sys.argv[1:]))
