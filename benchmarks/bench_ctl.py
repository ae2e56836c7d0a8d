"""``xfrmd ctl VERB`` start-up: the CPU time of one call (a scenario script makes dozens,
tests/test_lag_scenarios_cli.py) against ``python3 -c pass`` in the same run (goal ≤ 0.1 s
CPU); and the CPU time of ``xfrmd run -- true`` (its private server, CMD and the exit; goal
≤ 0.1 s, whose wall-clock row is bench_ip_batch's ``xfrmd_run_true_startup``) against the
same reference. The children's CPU time (``RUSAGE_CHILDREN``), best of the rounds, interleaved; the
server runs in a thread of this process, so its work is not counted. Before the verb modules
left the subsystems' packages (xfrmd/ctl/), a call loaded the whole kernel model: 0.33 s."""
from __future__ import annotations

import resource
import subprocess
import sys

from xfrmd.embedded import make_kernel, running_server


def _cpu(argv: list[str]) -> float:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def run(quick: bool = False) -> list[dict]:
    rounds = 5 if quick else 15
    with running_server(make_kernel("default")) as srv:
        ctl = [sys.executable, "-m", "xfrmd.cli", "ctl", "--socket", srv.path,
               "show-offload", "eth0", "--json"]
        run = [sys.executable, "-m", "xfrmd.cli", "run", "--", "true"]
        ours, runs, bare = [], [], []
        for _ in range(rounds):
            ours.append(_cpu(ctl))
            runs.append(_cpu(run))
            bare.append(_cpu([sys.executable, "-c", "pass"]))
    o, r, b = min(ours), min(runs), max(min(bare), 1e-3)     # a clock tick is 1 ms on some kernels
    return [{"name": "xfrmd_ctl_call_cpu", "value": o, "unit": "s CPU", "reference": b,
             "ratio": o / b, "bar": "<= 0.1 s CPU", "goal": "<= 0.1 s", "gate": "lower"},
            {"name": "xfrmd_run_true_cpu", "value": r, "unit": "s CPU", "reference": b,
             "ratio": r / b, "bar": "<= 0.1 s CPU", "goal": "<= 0.1 s", "gate": "lower"}]
