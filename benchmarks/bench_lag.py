"""The LAG evaluation: ``xfrmd lag-report``'s full matrix (bar ≤ 30 s), and ESP through a
packet-offloaded 802.3ad bond with delivery into the peer (the lag-report bench, SOE ports of
one engine under the ``shared`` model): packets/s, against bare ``EspGcmSA.encapsulate`` of
the same payload in the same run (goal ≥ 50k packets/s).

Both are gated in ``--quick`` (benchmarks/baseline.json) against a reference measured in the
same run: the matrix's CPU time against that of 10,000 bare encapsulations (the machine's
speed; the matrix's own work is mostly ESP and table lookups), the bond's packets/s against
the bare ones."""
from __future__ import annotations

import os
import time

from xfrmd.datapath.esp import EspGcmSA
from xfrmd.lagreport.lab import PAIRINGS, Lab
from xfrmd.lagreport.report import run_report


def _bond_pps(count: int) -> float:
    lab = Lab(PAIRINGS[1], "shared")
    best = 0.0
    for _ in range(5):
        t0 = time.process_time()
        res = lab.dut_send(count)
        got = lab.to_peer([p for p, _ in res.packets])
        dt = time.process_time() - t0
        assert got.delivered == count, got.to_dict()
        best = max(best, count / dt)
    return best


def _bare_pps(count: int) -> float:
    sa = EspGcmSA(0x100, os.urandom(20), replay_window=0)
    payload = os.urandom(92)            # what the bench's 64-byte UDP packet is inside ESP
    best = 0.0
    for _ in range(5):
        t0 = time.process_time()
        for _ in range(count):
            sa.encapsulate(payload, 4)
        best = max(best, count / (time.process_time() - t0))
    return best


def run(quick: bool = False) -> list[dict]:
    n = 500 if quick else 5000
    t0 = time.process_time()       # in-process and single-threaded: CPU time, less noisy
    report = run_report()
    matrix = time.process_time() - t0
    assert len(report.cells) == 84
    ours, bare = _bond_pps(n), _bare_pps(n)
    ref = 10_000 / bare            # CPU seconds of 10,000 bare encapsulations, this run
    return [
        {"name": "lag_report_full_matrix", "value": matrix, "unit": "s CPU", "reference": ref,
         "ratio": matrix / ref, "bar": "<= 30 s", "goal": "<= 30 s", "gate": "lower"},
        {"name": "bond_xmit_deliver_packets_per_s", "value": ours, "unit": "packets/s",
         "reference": bare, "ratio": ours / bare, "bar": ">= 50k packets/s",
         "goal": ">= 50k/s", "gate": "higher"},
    ]
