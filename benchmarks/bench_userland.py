"""Userlands: building one cold (into an empty cache; skipped with --quick) and warm
(cached: a no-op), ``xfrmd run --userland trixie-strongswan -- true`` against plain ``xfrmd
run -- true``, and a charon 6.0.1 pair negotiating 200 Child SAs with packet offload on
mlx5-like ports: the time until all 400 SAs are in xfrmd, and xfrmd's share of the CPU
(xfrmd's server thread runs in this process: its CPU is read per thread from /proc, as the
two charons' is)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time

XFRMD = [sys.executable, "-m", "xfrmd.cli"]


def _best(argv, n=5, **kw) -> float:
    best = float("inf")
    for _ in range(n):
        t = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True, **kw)
        best = min(best, time.perf_counter() - t)
    return best


def _task_cpu(task_dir: str) -> float:
    """CPU time of one thread, seconds: the scheduler's own sum (``schedstat``'s first field,
    nanoseconds), not utime + stime, which /proc gives in 10 ms ticks: a side that used
    0.1 s read ±10 %, so single runs of the share swung by points."""
    try:
        with open(f"{task_dir}/schedstat") as f:
            return int(f.read().split()[0]) / 1e9
    except (OSError, ValueError, IndexError):
        return 0.0


def _cpu_of(pid: int) -> float:
    """CPU time of a live process: its threads' sum (charon runs a pool of them)."""
    base = f"/proc/{pid}/task"
    try:
        tids = os.listdir(base)
    except OSError:
        return 0.0
    return sum(_task_cpu(f"{base}/{t}") for t in tids)


def _threads_cpu_but_main() -> float:
    """CPU of this process's threads other than the main one: the xfrmd server's (the
    harness's own polling and decoding run in the main thread and are left out)."""
    import threading
    main = threading.main_thread().native_id
    return sum(_task_cpu(f"/proc/self/task/{t}") for t in os.listdir("/proc/self/task")
               if int(t) != main)


def _sa_count(kp, side: str) -> int:
    """How many SAs ``side`` holds (what GETSADINFO's XFRMA_SAD_CNT says: ``len`` of the
    namespace's ``state_all``), read from the kernel model in this thread, not asked of the
    server. The harness's polling is not the daemons' load on xfrmd, yet a GETSADINFO through
    the server every 50 ms (a new connection each time: accept, HELLO, bind, the request,
    close, and the GIL handed back and forth with the server thread) was charged to xfrmd's
    CPU in this figure. ``len`` of a dict is one step under the GIL: the count is never torn,
    at worst one SA behind."""
    return len(kp.kernel.namespaces[side].xfrm.state_all)


def charon_pair_200(children: int = 200) -> tuple[float, float, float]:
    """(seconds until all SAs are in, xfrmd's CPU seconds, both charons' CPU seconds)"""
    from xfrmd.embedded import tune_gc
    from xfrmd.ike.charon import Charon
    from xfrmd.ike.pair import KernelPair
    # the server's collector settings, as `xfrmd serve` / `xfrmd run` set them (and as
    # bench_scale does, which `python3 -m benchmarks` ran before this one in the same
    # process): under the defaults the server thread made ~20 collections a run, ≈ 3 % of its
    # CPU, and `--charon` alone read differently from the whole run
    tune_gc()
    tmp = tempfile.mkdtemp(prefix="xfrmd-bench-")
    try:
        with KernelPair(device_kind="mlx5") as kp:
            daemons = []
            for side, peer in (("right", "left"), ("left", "right")):
                me, them = (1, 2) if side == "left" else (2, 1)
                ch = {f"c{i}": {"local_ts": f"10.{me}.{i // 250}.{i % 250 + 1}/32",
                                "remote_ts": f"10.{them}.{i // 250}.{i % 250 + 1}/32",
                                "hw_offload": "packet", "esp_proposals": "aes128gcm16",
                                "start_action": "start" if side == "left" else "none"}
                      for i in range(children)}
                daemons.append(Charon(kp.real, side, tmp, kp.env(side), children=ch,
                                      userland="trixie-strongswan"))
            right, left = daemons
            right.start()
            # both sides from the same moment: the right charon's start-up is before it
            cpu0, t0 = _threads_cpu_but_main(), time.perf_counter()
            right_cpu0 = _cpu_of(right.proc.pid)
            left.start()              # loading the config starts every child
            # polled from the kernel model (a count, no request); the SADs are dumped once at
            # the end
            while _sa_count(kp, "left") < 2 * children or _sa_count(kp, "right") < 2 * children:
                if time.perf_counter() - t0 > 300:
                    raise RuntimeError(f"only {_sa_count(kp, 'left')} SAs after 300 s")
                time.sleep(0.05)
            total, xfrmd_cpu = time.perf_counter() - t0, _threads_cpu_but_main() - cpu0
            charon_cpu = sum(_cpu_of(d.proc.pid) for d in daemons) - right_cpu0
            assert all(sa["offload"] for sa in kp.sad("left"))
            for d in daemons:
                d.stop()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return total, xfrmd_cpu, charon_cpu


def run(quick: bool = False) -> list[dict]:
    from xfrmd import userland
    if os.geteuid() != 0 or not userland.is_current(userland.KNOWN["trixie-strongswan"]):
        return []
    rows = []
    if not quick and shutil.which("mmdebstrap"):
        cache = tempfile.mkdtemp(prefix="xfrmd-bench-cache-")
        try:
            env = dict(os.environ, XDG_CACHE_HOME=cache)
            t = time.perf_counter()
            subprocess.run(XFRMD + ["userland", "build", "trixie-strongswan"], check=True,
                           capture_output=True, env=env)
            cold = time.perf_counter() - t
        finally:
            from xfrmd.userland.build import remove_tree
            remove_tree(cache)
        rows.append({"name": "userland_build_cold", "value": cold, "unit": "s",
                     "reference": 60.0, "ratio": cold / 60, "bar": "<= 60 s"})
    warm = _best(XFRMD + ["userland", "build", "trixie-strongswan"], 3)
    rows.append({"name": "userland_build_warm", "value": warm, "unit": "s", "reference": 1.0,
                 "ratio": warm, "bar": "<= 1 s"})
    plain = _best(XFRMD + ["run", "--", "true"])
    inside = _best(XFRMD + ["run", "--userland", "trixie-strongswan", "--", "true"])
    rows.append({"name": "xfrmd_run_userland_true", "value": inside, "unit": "s",
                 "reference": plain, "ratio": inside / plain, "bar": "<= 0.5 s",
                 "gate": "lower"})
    if quick:                 # the charon pair takes ~10 s even with 20 children: not in CI's 60
        return rows
    return rows + charon_rows()


def charon_rows(n: int = 200) -> list[dict]:
    """The charon pair's two rows alone (``python -m benchmarks.bench_userland --charon``)."""
    total, xfrmd_cpu, charon_cpu = charon_pair_200(n)
    share = xfrmd_cpu / (xfrmd_cpu + charon_cpu)
    rows = []
    rows.append({"name": f"charon6_pair_{n}_child_sas_packet_offload", "value": total,
                 "unit": "s", "reference": n, "ratio": total / n, "bar": "(s per Child SA)"})
    rows.append({"name": "  xfrmd_share_of_cpu", "value": share * 100, "unit": "%",
                 "reference": 25.0, "ratio": share / 0.25,
                 "goal": "<= 25 %", "bar": f"(xfrmd {xfrmd_cpu:.2f} s, charons {charon_cpu:.2f} s CPU)"})
    return rows


if __name__ == "__main__":
    from xfrmd import userland as _userland
    if "--charon" in sys.argv:      # only the pair: xfrmd's share of the CPU
        if os.geteuid() == 0 and _userland.is_current(_userland.KNOWN["trixie-strongswan"]):
            for row in charon_rows():
                print(row)
    else:
        for row in run(quick="--quick" in sys.argv):
            print(row)
