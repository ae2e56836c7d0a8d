"""A cheap recorder of the netlink conversation for the test harnesses (the kernel pair, the
``xfrmd_server`` fixture), which read their trace only when a test fails or asks for it.

Like the kernel's netlink taps (``__netlink_deliver_tap`` hands nlmon the skb as it is), the
tap copies each datagram raw: one fixed header and the bytes, into a buffered file beside the
trace. The JSON lines of :class:`xfrmd.trace.TraceWriter` (same keys, same order, same
values) are written only when someone reads :attr:`TraceTap.path`, and then only the records
added since the last read. Recording costs about a microsecond per datagram instead of the
~20 µs of a JSON line written through a line-buffered file (a third of xfrmd's CPU while a
charon pair negotiates 200 Child SAs: benchmarks/bench_userland.py)."""
from __future__ import annotations

import json
import os
import struct
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .kernel import Kernel
    from .netlink.socket import NetlinkSocket

# t, direction, netns (index into names), protocol, socket id, port id, ext_ack,
# len(data), len(extack_not_delivered)
RECORD = struct.Struct("=dBHBqqBII")
DIRS = ("tx", "rx", "event")
_DIR_CODE = {d: i for i, d in enumerate(DIRS)}


class TraceTap:
    """A kernel tracer (``kernel.tracers``). :attr:`path` is the JSON-lines trace, brought
    up to date on each read; :meth:`close` stops recording; :meth:`keep` converts the rest
    and drops the raw file, :meth:`discard` drops it unconverted, :meth:`remove` deletes
    both files."""

    def __init__(self, path: str, kernel: Kernel, buffering: int = 1 << 16):
        self._path = path
        self.kernel = kernel
        self._raw_path = path + ".raw"
        # the reactor thread writes; a reader's flush takes BufferedWriter's own lock, so a
        # flush never splits a record (each is one write())
        self._raw = open(self._raw_path, "wb", buffering=buffering)
        open(path, "w").close()
        self._names: list[str] = []
        self._index: dict[str, int] = {}
        self._done = 0                    # raw bytes already written as JSON lines
        self._lock = threading.Lock()     # one reader converts at a time

    def __call__(self, direction: str, sock: NetlinkSocket, datagram: bytes) -> None:
        name = sock.netns.name
        idx = self._index.get(name)
        if idx is None:
            idx = self._index[name] = len(self._names)
            self._names.append(name)
        note = getattr(self.kernel, "trace_note", None)     # set by netlink_ack
        extra = note[1] if note is not None and direction == "rx" and note[0] == sock.id \
            else b""
        self._raw.write(RECORD.pack(self.kernel.clock.now(), _DIR_CODE[direction], idx,
                                    sock.protocol, sock.id, sock.portid, sock.ext_ack,
                                    len(datagram), len(extra)) + datagram + extra)

    @property
    def path(self) -> str:
        """The JSON-lines trace, with every datagram recorded so far."""
        self.sync()
        return self._path

    def sync(self) -> None:
        """Append the JSON lines of the records not yet converted."""
        with self._lock:
            if not self._raw.closed:
                self._raw.flush()
            try:
                with open(self._raw_path, "rb") as f:
                    f.seek(self._done)
                    raw = f.read()
            except FileNotFoundError:     # discarded: the JSON lines are all there is
                return
            lines, used = [], 0
            while used + RECORD.size <= len(raw):
                t, d, idx, proto, sock, portid, ext_ack, n, m = RECORD.unpack_from(raw, used)
                end = used + RECORD.size + n + m
                if end > len(raw):        # the rest of it is still in the writer's buffer
                    break
                data = raw[used + RECORD.size:used + RECORD.size + n]
                rec = {"t": round(t, 6), "dir": DIRS[d], "netns": self._names[idx],
                       "proto": proto, "sock": sock, "portid": portid,
                       "ext_ack": bool(ext_ack), "data": data.hex()}
                if m:
                    rec["extack_not_delivered"] = raw[end - m:end].hex()
                lines.append(json.dumps(rec) + "\n")
                used = end
            if lines:
                with open(self._path, "a") as out:
                    out.writelines(lines)
            self._done += used

    def close(self) -> None:
        """Stop recording (:attr:`path` still converts what was recorded)."""
        with self._lock:
            self._raw.close()

    def keep(self) -> str:
        """Convert everything, drop the raw file; the JSON lines' path."""
        path = self.path
        _unlink(self._raw_path)
        return path

    def discard(self) -> None:
        """Drop the raw file unconverted (a passing test's: nobody reads it)."""
        _unlink(self._raw_path)

    def remove(self) -> None:
        _unlink(self._path)
        _unlink(self._raw_path)


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


__all__ = ["TraceTap", "RECORD"]
