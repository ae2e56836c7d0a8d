"""What the server counts about itself, and ``xfrmd ctl stats`` that shows it.

The one place where a handler's unexpected exception becomes an answer: the kernel would have
answered every request, so a request whose handler failed gets EINVAL with the extack
"xfrmd: internal error, see the server log" (:data:`INTERNAL_ERROR`), the server logs one line
naming the exception and where it was raised, and the count per site is kept here, for
``xfrmd ctl stats`` and for the fuzz harness (benchmarks/soak.py), which expects zero.
"""
from __future__ import annotations

import logging
import os
import traceback
from typing import Any

log = logging.getLogger("xfrmd.server")

INTERNAL_ERROR = "xfrmd: internal error, see the server log"
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _where(exc: BaseException) -> str:
    """Where ``exc`` came from in this repository: the innermost frame of the emulated kernel
    (``file:line``), followed by the codec's frame when the codec raised (library frames,
    e.g. ``struct``, say nothing about which parser trusted a length)."""
    ours = []
    for fs in traceback.extract_tb(exc.__traceback__):
        path = os.path.abspath(fs.filename)
        if path.startswith(_ROOT + os.sep):
            ours.append((os.path.relpath(path, _ROOT), fs.lineno))
    if not ours:
        return "?"
    kernel = [f for f in ours if not f[0].startswith("netlink_codec")]
    site = "%s:%d" % (kernel or ours)[-1]
    if kernel and ours[-1] != kernel[-1]:
        site += " via %s:%d" % ours[-1]
    return site


class Stats:
    """Counters of one kernel (one server)."""

    def __init__(self):
        self.datagrams = 0          # sendmsg calls delivered to the kernel
        self.internal_errors = 0    # requests answered INTERNAL_ERROR
        self.sites: dict[str, int] = {}   # "ExcType at file:line" → count
        self.bad_frames = 0         # malformed control frames (their connection was closed)

    def internal_error(self, exc: BaseException, what: str) -> None:
        """Count and log (one line) a handler's exception on ``what`` (a message type, a
        dump, a frame)."""
        site = f"{type(exc).__name__} at {_where(exc)}"
        self.internal_errors += 1
        n = self.sites[site] = self.sites.get(site, 0) + 1
        log.error("internal error #%d on %s: %s: %s (%s; %d at this site)", self.internal_errors,
                  what, type(exc).__name__, exc, site.split(" at ", 1)[1], n)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("".join(traceback.format_exception(exc)))

    def bad_frame(self, conn_pid: int, why: str) -> None:
        self.bad_frames += 1
        log.warning("connection from pid %d closed: malformed control frame (%s)", conn_pid, why)

    def as_dict(self, kernel) -> dict:
        sockets = sum(len(s) for ns in kernel.namespaces.values() for s in ns.sockets.values())
        return {"datagrams": self.datagrams, "internal_errors": self.internal_errors,
                "internal_error_sites": dict(sorted(self.sites.items(), key=lambda kv: -kv[1])),
                "bad_frames": self.bad_frames, "namespaces": len(kernel.namespaces),
                "netlink_sockets": sockets, "rss_kib": _rss_kib()}


def _rss_kib() -> int:
    """The server process's resident set (VmRSS), 0 where /proc does not say."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def format_stats(d: dict) -> str:
    """``xfrmd ctl stats`` without --json: one ``name value`` line each, sites indented."""
    lines = [f"datagrams {d['datagrams']}", f"internal-errors {d['internal_errors']}"]
    for site, n in d.get("internal_error_sites", {}).items():
        lines.append(f"    {n} {site}")
    lines += [f"bad-frames {d['bad_frames']}", f"namespaces {d['namespaces']}",
              f"netlink-sockets {d['netlink_sockets']}", f"rss {d['rss_kib']} KiB"]
    return "\n".join(lines) + "\n"


def stats_service(kernel: Any, ns: Any, request: dict[str, Any]) -> dict[str, Any]:
    """The service op of ``xfrmd ctl stats``."""
    return {"errno": 0, **kernel.stats.as_dict(kernel)}
