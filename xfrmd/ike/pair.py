"""A kernel pair: two real network namespaces joined by a veth (IKE traffic flows over the
real kernel) and one xfrmd server whose emulated namespaces ``left`` and ``right`` mirror
their devices and addresses. Daemons started with :meth:`KernelPair.env` install their SAs
and policies into xfrmd.

    with KernelPair() as kp:
        left = Charon(kp.real, "left", workdir, kp.env("left"))
        …
        kp.sad("left")        # the SAs xfrmd holds for the left daemon

Every netlink datagram of the pair is recorded (``kp.trace_path``, JSON lines as ``xfrmd run
--trace`` writes them); when the ``with`` block ends with an exception, the decoded
conversation is printed on stderr (``xfrmd trace``'s format), so a red CI run explains itself.
``XFRMD_KEEP_TRACE=1`` keeps the file.
"""
from __future__ import annotations

import os
import sys
import tempfile

from ..netlink_helpers import dump_policies, dump_states
from .netns import RealPair


def mirror_topology(real: RealPair, device_kind: str = "veth", extra: dict | None = None,
                    lower: dict | None = None) -> dict:
    """One emulated namespace per side with the same device name and address. ``extra``
    adds keys to that device per side; ``lower`` lists devices per side that come before it
    (a bond's slaves: ``{"name": "p0", "kind": "mlx5", "master": "@"}``, where ``"@"``
    names the mirrored device)."""
    spec = {"netns": []}
    for side in ("left", "right"):
        dev = {"name": real.dev[side], "kind": device_kind,
               "addresses": [f"{real.addr[side]}/{real.prefixlen}"]}
        dev.update((extra or {}).get(side, {}))
        devices = [dict(d, master=real.dev[side]) if d.get("master") == "@" else dict(d)
                   for d in (lower or {}).get(side, [])] + [dev]
        spec["netns"].append({"name": side, "device": devices})
    return spec


class KernelPair:
    def __init__(self, device_kind: str = "veth", extra: dict | None = None,
                 lower: dict | None = None):
        self.device_kind, self.extra, self.lower = device_kind, extra, lower
        self.real: RealPair | None = None
        self._server = None
        self.handle = None
        self.trace_path: str | None = None
        self._tracer = None

    def __enter__(self) -> "KernelPair":
        from .. import shim
        from ..clock import SystemClock
        from ..kernel import Kernel
        from ..embedded import running_server
        from ..topology import from_dict
        self.shim = shim.path()
        self.real = RealPair()
        try:
            topo = from_dict(mirror_topology(self.real, self.device_kind, self.extra, self.lower))
            self.kernel = Kernel(SystemClock(), topology=topo)
            from ..trace import TraceWriter
            fd, self.trace_path = tempfile.mkstemp(prefix="xfrmd-pair-", suffix=".trace.jsonl")
            os.close(fd)
            self._tracer = TraceWriter.open(self.trace_path, self.kernel)
            self.kernel.tracers.append(self._tracer)
            self._server = running_server(self.kernel)
            self.handle = self._server.__enter__()
        except Exception:
            self.real.close()
            raise
        return self

    def env(self, side: str) -> dict:
        """What a daemon on ``side`` needs to see its emulated kernel."""
        return {"LD_PRELOAD": self.shim, "XFRMD_SOCKET": self.handle.path,
                "XFRMD_NETNS": side}

    def sad(self, side: str) -> list[dict]:
        return dump_states(self.handle.path, side)

    def spd(self, side: str) -> list[dict]:
        return dump_policies(self.handle.path, side)

    def advance(self, seconds: float) -> None:
        """Move the emulated clock (lifetimes, expiry) for both sides."""
        from ..client import Service
        with Service(path=self.handle.path) as svc:
            svc.query("clock_advance", seconds=seconds)

    def xmit(self, side: str, count: int = 1, size: int = 64, **flow) -> dict:
        """``xfrmd ctl xmit`` from ``side``'s address to the other side's: ``count`` UDP
        packets of ``size`` payload bytes through the emulated output path (policy → SA →
        byte/packet counters → soft/hard EXPIRE). ``flow`` overrides src, dst, proto,
        sport, dport. Returns the service's answer (``sent``, ``dropped``, ``batches``)."""
        from ..client import Service
        peer = "right" if side == "left" else "left"
        req = {"netns": side, "src": self.real.addr[side], "dst": self.real.addr[peer],
               "count": count, "size": size, **flow}
        with Service(path=self.handle.path) as svc:
            return svc.query("xmit", **req)

    def expires(self, side: str) -> list[dict]:
        """The XFRM_MSG_EXPIREs the emulated kernel of ``side`` sent, from the trace, each
        once (every listening socket gets its own copy): ``{"spi", "dst", "hard", "t"}`` in
        the order they were first sent."""
        import ipaddress
        import json
        from netlink_codec import xfrm as X
        seen, out = set(), []
        with open(self.trace_path) as f:
            for line in f:
                rec = json.loads(line)
                if rec["netns"] != side or rec["dir"] == "tx" or rec["proto"] != 6:
                    continue
                data = bytes.fromhex(rec["data"])
                if len(data) < 16 or int.from_bytes(data[4:6], sys.byteorder) != X.XfrmMsg.EXPIRE:
                    continue
                e = X.XfrmUserExpire.decode(data, 16)
                fam = e.state.family
                dst = bytes(e.state.id.daddr)[:4 if fam == X.AF_INET else 16]
                key = (e.state.id.spi, str(ipaddress.ip_address(dst)), bool(e.hard))
                if key not in seen:
                    seen.add(key)
                    out.append({"spi": key[0], "dst": key[1], "hard": key[2], "t": rec["t"]})
        return out

    def dump_trace(self, out=None) -> None:
        """The decoded netlink conversation so far, one line per message."""
        from ..trace import print_trace
        out = out or sys.stderr
        out.write(f"--- xfrmd: the kernel pair's netlink conversation ({self.trace_path}) ---\n")
        print_trace(self.trace_path, out)
        out.flush()

    def __exit__(self, *exc) -> None:
        try:
            if self._server is not None:
                self._server.__exit__(*exc)
        finally:
            if self.real is not None:
                self.real.close()
            if self._tracer is not None:
                self._tracer.out.close()
                if exc[0] is not None:
                    self.dump_trace()
                if not os.environ.get("XFRMD_KEEP_TRACE"):
                    os.unlink(self.trace_path)
