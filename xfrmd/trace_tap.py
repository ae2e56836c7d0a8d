"""A cheap recorder of the netlink conversation for the test harnesses (the kernel pair, the
``xfrmd_server`` fixture), which read their trace only when a test fails or asks for it.

Like the kernel's netlink taps (``__netlink_deliver_tap`` hands nlmon the skb as it is), the
tap keeps each datagram as it is: recording one appends a tuple of plain values to a list
(the clock, the direction, the socket's id, port id and ext_ack flag, the datagram, the
kernel's ``trace_note``; a socket's namespace and protocol are noted once). The JSON lines of
:class:`xfrmd.trace.TraceWriter` (same keys, same order, same values) are written only when
someone reads :attr:`TraceTap.path`, and then only the records added since the last read.
What a reader is promised:

* :attr:`TraceTap.path` holds every datagram recorded before the read, in order, once;
* a record is written whole or not at all (a chunk of the raw file whose end is not there
  yet waits for the next read, and so does everything after it);
* nothing recorded is lost when the list grows long (the oldest :data:`SPILL_AT` records are
  written to the raw file beside the trace in one write: a :data:`CHUNK` header, then the
  ``marshal`` of the records) or when the process exits normally (``atexit`` writes what is
  still in memory to the raw file); a process that is killed loses what was in memory, as
  the 64 KiB write buffer of the previous design did.

Recording costs about 0.35 µs per datagram, its spill included (0.8 µs when each record was
packed and written at once), against ~8 µs for a JSON line written through a line-buffered
file; a passing test, which discards its trace, never pays
the conversion (benchmarks/bench_trace.py, docs/performance.md). The record step itself is C
(xfrmd/_taprec.c: :class:`TraceTap`'s base holds what a record reads; ≈ 1.3k instructions a
record against 3.7k for :func:`_record`, the reference, which ``XFRMD_PURE_PYTHON=1`` runs)."""
from __future__ import annotations

import atexit
import json
import marshal
import os
import struct
import threading
import weakref
from typing import TYPE_CHECKING, Any

from netlink_codec import cext

from .cext import source
from .clock import SystemClock

if TYPE_CHECKING:
    from .kernel import Kernel
    from .netlink.socket import NetlinkSocket

# a chunk of the raw file: its length, then marshal.dumps of a list of records
# (t, direction, socket id, port id, ext_ack, datagram, trace_note)
CHUNK = struct.Struct("=I")
# records held in memory before they are written to the raw file (~1.5 MB of 300-byte
# datagrams; the charon pair of bench_userland records ~9000)
SPILL_AT = 4096


class _Stopped(list):
    """What a closed tap records into: nothing."""

    def append(self, item: Any) -> None:
        pass


# the record step in C (xfrmd/_taprec.c; _record below is the reference), or None
_taprec = cext.load("xfrmd._taprec", source("xfrmd._taprec"))
_Base: Any = object if _taprec is None else _taprec.Tap


def _record(self: TraceTap, direction: str, sock: NetlinkSocket, datagram: bytes) -> None:
    """:meth:`TraceTap.record` (the C one, xfrmd/_taprec.c, does the same steps in the same
    order)."""
    if type(datagram) is not bytes:   # a caller's buffer may change after the call
        datagram = bytes(datagram)
    sid = sock.id
    if sid not in self.socks:
        self.socks[sid] = (sock.netns.name, sock.protocol)
    pending = self._pending
    pending.append((self._now(), direction, sid, sock.portid, sock.ext_ack, datagram,
                    self.kernel.trace_note))
    if len(pending) >= self._spill_at:
        self.spill()


_live: "weakref.WeakSet[TraceTap]" = weakref.WeakSet()    # taps with records to keep


@atexit.register
def _spill_all() -> None:
    """At exit, what the live taps still hold goes to their raw files."""
    for tap in list(_live):
        try:
            tap.spill()
        except Exception:  # noqa: BLE001 - one tap's full disk must not lose the others'
            pass


class TraceTap(_Base):
    """A kernel tracer (``kernel.tracers``; :meth:`record` is the same call without the
    instance call's dispatch). :attr:`path` is the JSON-lines trace, brought up to date on
    each read; :meth:`close` stops recording; :meth:`keep` converts the rest and drops the raw
    file, :meth:`discard` drops the records unconverted, :meth:`remove` deletes both files."""

    def __init__(self, path: str, kernel: Kernel):
        self._path = path
        self.kernel = kernel
        self._raw_path = path + ".raw"           # written only when records spill
        open(path, "w").close()
        self._now = kernel.clock.now
        # the C record reads a SystemClock's time without the call (the pair's clock)
        self._clock = kernel.clock if type(kernel.clock) is SystemClock else None
        # the reactor thread appends; a spill or a reader takes the oldest records with a
        # slice and a del of that slice (each one step under the GIL: an append that lands
        # between them is past the slice, and stays)
        self._pending: list = []
        self._spill_at = SPILL_AT
        self._held = self._pending               # still ours after close()
        self.socks: dict[int, tuple[str, int]] = {}     # socket id → (netns, protocol)
        self._done = 0                    # raw bytes already written as JSON lines
        self._lock = threading.Lock()     # one spill or reader at a time
        _live.add(self)

    record = _record if _taprec is None else _taprec.Tap.record
    __call__ = record

    def _take(self) -> list:
        held = self._held
        n = len(held)
        recs = held[:n]
        del held[:n]
        return recs

    def spill(self) -> None:
        """Write the records held in memory to the raw file, in one write."""
        with self._lock:
            recs = self._take()
            if recs:
                blob = marshal.dumps(recs)
                with open(self._raw_path, "ab") as f:
                    f.write(CHUNK.pack(len(blob)) + blob)

    @property
    def path(self) -> str:
        """The JSON-lines trace, with every datagram recorded so far."""
        self.sync()
        return self._path

    def sync(self) -> None:
        """Append the JSON lines of the records not yet converted: those of the raw file,
        then those still in memory."""
        with self._lock:
            try:
                with open(self._raw_path, "rb") as f:
                    f.seek(self._done)
                    raw = f.read()
            except FileNotFoundError:     # never spilled, or discarded
                raw = b""
            lines, used = [], 0
            while used + CHUNK.size <= len(raw):
                end = used + CHUNK.size + CHUNK.unpack_from(raw, used)[0]
                if end > len(raw):        # the rest of it is not written yet
                    break
                lines += self._lines(marshal.loads(raw[used + CHUNK.size:end]))
                used = end
            self._done += used
            if used == len(raw):          # a chunk cut short waits, and what follows it
                lines += self._lines(self._take())
            if lines:
                with open(self._path, "a") as out:
                    out.writelines(lines)

    def _lines(self, recs: list) -> list[str]:
        """The JSON lines of records, as TraceWriter writes them."""
        lines = []
        for t, d, sid, portid, ext_ack, data, note in recs:
            netns, proto = self.socks[sid]
            rec = {"t": round(t, 6), "dir": d, "netns": netns, "proto": proto, "sock": sid,
                   "portid": portid, "ext_ack": bool(ext_ack), "data": data.hex()}
            # the extack a socket without NETLINK_EXT_ACK was not sent (set by netlink_ack)
            if note is not None and d == "rx" and note[0] == sid:
                rec["extack_not_delivered"] = note[1].hex()
            lines.append(json.dumps(rec) + "\n")
        return lines

    def close(self) -> None:
        """Stop recording (:attr:`path` still converts what was recorded)."""
        self._pending = _Stopped()

    def keep(self) -> str:
        """Convert everything, drop the raw file; the JSON lines' path."""
        path = self.path
        _unlink(self._raw_path)
        _live.discard(self)
        return path

    def discard(self) -> None:
        """Drop the records unconverted (a passing test's: nobody reads them)."""
        self.close()
        with self._lock:
            self._take()
        _unlink(self._raw_path)
        _live.discard(self)

    def remove(self) -> None:
        self.discard()
        _unlink(self._path)


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


__all__ = ["TraceTap", "CHUNK", "SPILL_AT"]
