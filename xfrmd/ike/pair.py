"""A kernel pair: two real network namespaces joined by a veth (IKE traffic flows over the
real kernel) and one xfrmd server whose emulated namespaces ``left`` and ``right`` mirror
their devices and addresses. Daemons started with :meth:`KernelPair.env` install their SAs
and policies into xfrmd.

    with KernelPair() as kp:
        left = Charon(kp.real, "left", workdir, kp.env("left"))
        …
        kp.sad("left")        # the SAs xfrmd holds for the left daemon

Every netlink datagram of the pair is recorded (``kp.trace_path``, JSON lines as ``xfrmd run
--trace`` writes them, brought up to date when read: :mod:`xfrmd.trace_tap`); when the ``with`` block ends with an exception, the decoded
conversation is printed on stderr (``xfrmd trace``'s format), so a red CI run explains itself.
``XFRMD_KEEP_TRACE=1`` keeps the file.
"""
from __future__ import annotations

import ipaddress
import json
import os
import shutil
import subprocess
import sys
import tempfile
from contextlib import AbstractContextManager
from typing import IO, Any

from netlink_codec import xfrm as X

from .. import shim
from ..client import Service
from ..clock import SystemClock
from ..embedded import ServerHandle, running_server
from ..kernel import Kernel
from ..netlink_helpers import dump_policies, dump_states
from ..topology import KINDS, from_dict
from ..trace import print_trace
from ..trace_tap import TraceTap
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


SIDES = ("left", "right")
# what extra= may set on the mirrored device, and lower= on a device before it
# (name, kind and address are the pair's own)
EXTRA_KEYS = frozenset({"mac", "up", "carrier", "mtu", "mode", "xmit_hash_policy", "miimon",
                        "lacp_rate", "ad_select", "lag_model", "lag_require", "capabilities",
                        "esp_hw_offload"})
LOWER_KEYS = frozenset({"name", "kind", "nic", "mac", "up", "carrier", "mtu", "master",
                        "capabilities", "esp_hw_offload", "lag_converted", "lag_guarantees"})
# the emulated NICs whose ports share one engine (a bond's slaves on one card)
NIC_KINDS = ("mlx5", "airoha-soe", "netdevsim")


class NamespaceError(RuntimeError):
    """The real network namespaces of a pair could not be made (not root, no iproute2, a
    container without CAP_SYS_ADMIN); the message says which and why."""


def _check_keys(what: str, d, allowed) -> None:
    if not isinstance(d, dict):
        raise TypeError(f"{what} must be a dict with keys from: {', '.join(sorted(allowed))}; "
                        f"got {type(d).__name__} {d!r}")
    unknown = sorted(set(d) - set(allowed))
    if unknown:
        raise ValueError(f"{what}: unknown key {unknown[0]!r}; allowed keys: "
                         f"{', '.join(sorted(allowed))}")


def pair_shape(device_kind: str = "veth", *, lag_model: str | None = None, slaves=None,
               bond_mode: str = "802.3ad", xmit_hash_policy: str = "layer3+4",
               esp_hw_offload: bool | None = None, extra: dict | None = None,
               lower: dict | None = None) -> tuple[dict, dict]:
    """The (extra, lower) per-side dicts of :func:`mirror_topology`, from the arguments a
    person thinks in; every shape is checked, and a wrong key names the allowed ones."""
    if device_kind not in KINDS:
        raise ValueError(f"device_kind {device_kind!r} is not one of {', '.join(KINDS)}")
    _check_keys("extra (per side)", extra or {}, SIDES)
    _check_keys("lower (per side)", lower or {}, SIDES)
    extra = {side: v for side, v in (extra or {}).items()}
    lower = {side: v for side, v in (lower or {}).items()}
    for side in SIDES:
        _check_keys(f"extra[{side!r}]", extra.setdefault(side, {}), EXTRA_KEYS)
        extra[side] = dict(extra[side])
        devs = lower.setdefault(side, [])
        if not isinstance(devs, list):
            raise TypeError(f"lower[{side!r}] must be a list of device dicts, got {devs!r}")
        lower[side] = devs = [dict(d) if isinstance(d, dict) else d for d in devs]
        for i, d in enumerate(devs):
            _check_keys(f"lower[{side!r}][{i}]", d, LOWER_KEYS)
            if "name" not in d or "kind" not in d:
                raise ValueError(f"lower[{side!r}][{i}] needs a name and a kind: {d!r}")
    if device_kind != "bond":
        for arg, value in (("lag_model", lag_model), ("slaves", slaves)):
            if value:
                raise ValueError(f"{arg}= needs device_kind='bond' (got {device_kind!r})")
        for side in SIDES:
            if esp_hw_offload is not None:
                extra[side].setdefault("esp_hw_offload", esp_hw_offload)
        return extra, lower
    for i, sl in enumerate(slaves or []):
        spec = {"kind": sl} if isinstance(sl, str) else dict(sl)
        _check_keys(f"slaves[{i}]", spec, LOWER_KEYS - {"master"})
        for side in SIDES:
            d = {"name": f"p{i}", "nic": f"{side}-nic", **spec, "master": "@"}
            if d["kind"] not in NIC_KINDS:
                d.pop("nic")
            lower[side].append(d)
    for side in SIDES:
        if not any(d.get("master") == "@" for d in lower[side]):
            raise ValueError("a bond needs slaves: slaves=['mlx5', 'mlx5'] (device kinds, or "
                             "dicts of device keys); without them it has nothing to offload to")
        e = extra[side]
        e.setdefault("mode", bond_mode)
        e.setdefault("xmit_hash_policy", xmit_hash_policy)
        if lag_model is not None:
            e.setdefault("lag_model", lag_model)
        if esp_hw_offload is not None:
            e.setdefault("esp_hw_offload", esp_hw_offload)
    return extra, lower


def describe_sa(sa: dict) -> str:
    """One line a person reads: ``spi 0xc1a2b3c4 192.0.2.1 → 192.0.2.2 reqid 1: crypto
    offload on veth-l (out)`` or ``…: software``."""
    off = sa.get("offload")
    where = f"{off['type']} offload on {off['dev']} ({off['dir']})" if off else "software"
    return f"  spi 0x{sa['spi']:08x} {sa['src']} → {sa['dst']} reqid {sa['reqid']}: {where}"


def make_real_pair() -> RealPair:
    """A :class:`RealPair`, or :class:`NamespaceError` saying why the system refused."""
    if shutil.which("ip") is None:
        raise NamespaceError("cannot make network namespaces: `ip` (iproute2) is not installed")
    if os.geteuid() != 0:
        raise NamespaceError("cannot make network namespaces: needs root (`ip netns add` "
                             "needs CAP_SYS_ADMIN)")
    try:
        return RealPair()
    except subprocess.CalledProcessError as e:
        raise NamespaceError(f"cannot make network namespaces: `{' '.join(e.cmd)}` said: "
                             f"{(e.stderr or '').strip() or e}") from None


class KernelPair:
    """Two real namespaces and their emulated kernels (see the module's doc).

    ``device_kind`` is the kind of the mirrored device on each side (``veth``, ``mlx5``,
    ``netdevsim``, ``airoha-soe``, ``bond`` …). A bond needs ``slaves`` — device kinds
    (``["mlx5", "mlx5"]``, ports of one card per side) or dicts of device keys — and takes
    ``lag_model`` (off, replicated, shared), ``bond_mode``, ``xmit_hash_policy``;
    ``esp_hw_offload`` switches the device's esp-hw-offload feature as ``ethtool -K`` would.
    ``extra`` / ``lower`` (per side: ``{"left": {…}, "right": {…}}``) set any other device
    key; a wrong shape or key raises, naming the allowed keys."""

    def __init__(self, device_kind: str = "veth", extra: dict | None = None,
                 lower: dict | None = None, *, lag_model: str | None = None, slaves=None,
                 bond_mode: str = "802.3ad", xmit_hash_policy: str = "layer3+4",
                 esp_hw_offload: bool | None = None):
        self.device_kind = device_kind
        self.extra, self.lower = pair_shape(
            device_kind, lag_model=lag_model, slaves=slaves, bond_mode=bond_mode,
            xmit_hash_policy=xmit_hash_policy, esp_hw_offload=esp_hw_offload, extra=extra,
            lower=lower)
        self.real: RealPair | None = None
        self._server: AbstractContextManager[ServerHandle] | None = None
        self.handle: ServerHandle | None = None
        self._tracer: TraceTap | None = None

    def __enter__(self) -> "KernelPair":
        self.shim = shim.path()
        self.real = make_real_pair()
        try:
            topo = from_dict(mirror_topology(self.real, self.device_kind, self.extra, self.lower))
            self.kernel = Kernel(SystemClock(), topology=topo)
            fd, path = tempfile.mkstemp(prefix="xfrmd-pair-", suffix=".trace.jsonl")
            os.close(fd)
            self._tracer = TraceTap(path, self.kernel)
            self.kernel.tracers.append(self._tracer.record)
            self._server = running_server(self.kernel)
            self.handle = self._server.__enter__()
        except Exception:
            self.real.close()
            raise
        return self

    @property
    def trace_path(self) -> str | None:
        """The JSON-lines trace, with every datagram so far (None before ``__enter__``)."""
        return self._tracer.path if self._tracer is not None else None

    def env(self, side: str) -> dict:
        """What a daemon on ``side`` needs to see its emulated kernel."""
        # the daemon runs under `ip netns exec <real namespace>`: the shim must enter it
        return {"LD_PRELOAD": self.shim, "XFRMD_SOCKET": self.handle.path,
                "XFRMD_NETNS": side, "XFRMD_HOST_NETNS": "enter"}

    def sad(self, side: str) -> list[dict]:
        return dump_states(self.handle.path, side)

    def assert_offloaded(self, side: str, dev: str | None = None, mode: str = "crypto") -> None:
        """Every SA of ``side`` is offloaded (``mode``: crypto or packet) to ``dev`` (default:
        the mirrored device, e.g. ``veth-l``). An empty SAD fails: nothing was installed."""
        dev = dev or self.real.dev[side]
        sas = self.sad(side)
        if not sas:
            raise AssertionError(f"{side}: the SAD is empty (no SA was installed; the daemon's "
                                 "log and kp.dump_trace() say why)")
        wrong = [sa for sa in sas if not sa["offload"] or sa["offload"]["dev"] != dev
                 or sa["offload"]["type"] != mode]
        if wrong:
            raise AssertionError(f"{side}: not every SA is {mode}-offloaded to {dev}:\n"
                                 + "\n".join(describe_sa(sa) for sa in sas))

    def assert_not_offloaded(self, side: str) -> None:
        """``side`` has SAs, and all of them are software SAs."""
        sas = self.sad(side)
        if not sas:
            raise AssertionError(f"{side}: the SAD is empty (no SA was installed)")
        if any(sa["offload"] for sa in sas):
            raise AssertionError(f"{side}: some SAs are offloaded:\n"
                                 + "\n".join(describe_sa(sa) for sa in sas))

    def spd(self, side: str) -> list[dict]:
        return dump_policies(self.handle.path, side)

    def _query(self, op: str, **req: Any) -> dict:
        """One service query to the pair's server (the namespace of the request, if any,
        named in ``req``)."""
        with Service(path=self.handle.path) as svc:
            return svc.query(op, **req)

    def advance(self, seconds: float) -> None:
        """Move the emulated clock (lifetimes, expiry) for both sides."""
        self._query("clock_advance", seconds=seconds)

    def fault(self, type: str, action: str, **opts: Any) -> int:
        """Arm an ``xfrmd ctl fault`` rule (docs/faults.md): ``kp.fault("XFRM_MSG_NEWSA",
        "fail", errno="ENOMEM", netns="left")``. Returns its id; ValueError if refused."""
        res = self._query("fault_add", type=type, action=action, **opts)
        if res.get("errno"):
            raise ValueError(res.get("error"))
        return res["id"]

    def faults(self) -> list[dict]:
        """Every rule armed so far, spent ones included (``hits``: how often it fired)."""
        return self._query("fault_list")["faults"]

    def xmit(self, side: str, count: int = 1, size: int = 64, **flow: Any) -> dict:
        """``xfrmd ctl xmit`` from ``side``'s address to the other side's: ``count`` UDP
        packets of ``size`` payload bytes through the emulated output path (policy → SA →
        byte/packet counters → soft/hard EXPIRE). ``flow`` overrides src, dst, proto,
        sport, dport. Returns the service's answer (``sent``, ``dropped``, ``batches``)."""
        peer = "right" if side == "left" else "left"
        req = {"netns": side, "src": self.real.addr[side], "dst": self.real.addr[peer],
               "count": count, "size": size, **flow}
        return self._query("xmit", **req)

    def expires(self, side: str) -> list[dict]:
        """The XFRM_MSG_EXPIREs the emulated kernel of ``side`` sent, from the trace, each
        once (every listening socket gets its own copy): ``{"spi", "dst", "hard", "t"}`` in
        the order they were first sent."""
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

    def dump_trace(self, out: IO[str] | None = None) -> None:
        """The decoded netlink conversation so far, one line per message."""
        out = out or sys.stderr
        out.write(f"--- xfrmd: the kernel pair's netlink conversation ({self.trace_path}) ---\n")
        print_trace(self.trace_path, out)
        out.flush()

    def __exit__(self, *exc: Any) -> None:
        try:
            if self._server is not None:
                self._server.__exit__(*exc)
        finally:
            if self.real is not None:
                self.real.close()
            if self._tracer is not None:
                self._tracer.close()
                if exc[0] is not None:
                    self.dump_trace()
                if os.environ.get("XFRMD_KEEP_TRACE"):
                    self._tracer.keep()
                else:
                    self._tracer.remove()
