"""The test harnesses' cheap trace (xfrmd/trace_tap.py): raw datagrams recorded, the JSON lines
of ``xfrmd run --trace`` written only when read — the same lines, key for key."""
from __future__ import annotations

import io
import os

from netlink_codec import netlink as N
from netlink_codec import xfrm as X
from xfrmd.trace import TraceWriter, print_trace
from xfrmd.trace_tap import RECORD, TraceTap

from .sad_helpers import AEAD, A, Nl, msg, newsa, usersa_info

BAD_DIR = msg(X.XfrmMsg.NEWSA, usersa_info() + AEAD + N.nla_u8(A.SA_DIR, 3), seq=7)


def _pair(kernel, tmp_path):
    """A TraceWriter and a TraceTap recording the same kernel."""
    writer = TraceWriter.open(str(tmp_path / "writer.jsonl"), kernel)
    tap = TraceTap(str(tmp_path / "tap.jsonl"), kernel)
    kernel.tracers += [writer, tap]
    return writer, tap


def test_the_tap_writes_the_lines_the_trace_writer_writes(kernel, tmp_path):
    writer, tap = _pair(kernel, tmp_path)
    quiet = Nl(kernel, ext_ack=False, pid=1)          # its extack is "not delivered"
    loud = Nl(kernel, groups=(X.XfrmNlGrp.SA,), pid=2)  # gets the NEWSA event
    quiet.send(BAD_DIR)
    loud.send(newsa(seq=8))
    kernel.clock.advance(1.5)
    loud.send(msg(X.XfrmMsg.GETSADINFO, b"\xff" * 4, seq=9))
    writer.out.close()
    want = open(writer.out.name).read().splitlines()
    got = open(tap.path).read().splitlines()
    assert got == want
    dirs = {line.split('"dir": "')[1].split('"')[0] for line in got}
    assert dirs == {"tx", "rx", "event"}
    assert sum("extack_not_delivered" in line for line in got) == 1
    out = io.StringIO()
    print_trace(tap.path, out)
    assert "(not delivered: the socket did not set NETLINK_EXT_ACK)" in out.getvalue()


def test_each_read_appends_only_what_is_new(kernel, tmp_path):
    _, tap = _pair(kernel, tmp_path)
    nl = Nl(kernel)
    nl.send(newsa(seq=1))
    first = open(tap.path).read().splitlines()
    assert len(first) == 2                                 # the request and its ack
    nl.send(msg(X.XfrmMsg.GETSADINFO, b"\xff" * 4, seq=2))
    second = open(tap.path).read().splitlines()
    assert second[:2] == first and len(second) == 5          # request, answer, ack
    assert open(tap.path).read().splitlines() == second  # nothing new: nothing added


def test_a_record_half_flushed_waits_for_its_rest(kernel, tmp_path):
    """A reader that finds the end of a record still missing converts up to the record before
    it, and the whole record on the next read."""
    tap = TraceTap(str(tmp_path / "t.jsonl"), kernel)
    tap.close()                        # write the raw file by hand from here
    data = b"\x14\0\0\0" + bytes(16)
    rec = RECORD.pack(2.0, 1, 0, N.NETLINK_XFRM, 3, 77, 1, len(data), 0) + data
    tap._names.append("default")
    with open(tmp_path / "t.jsonl.raw", "ab") as f:
        f.write(rec[:-5])
    assert open(tap.path).read() == ""
    with open(tmp_path / "t.jsonl.raw", "ab") as f:
        f.write(rec[-5:])
    assert open(tap.path).read() == (
        '{"t": 2.0, "dir": "rx", "netns": "default", "proto": 6, "sock": 3, "portid": 77, '
        f'"ext_ack": true, "data": "{data.hex()}"}}\n')


def test_keep_discard_and_remove(kernel, tmp_path):
    taps = {}
    for name in ("keep", "discard", "remove"):
        taps[name] = TraceTap(str(tmp_path / f"{name}.jsonl"), kernel)
    kernel.tracers += list(taps.values())
    Nl(kernel).send(newsa(seq=1))
    for tap in taps.values():
        tap.close()
    kept = taps["keep"].keep()
    assert len(open(kept).read().splitlines()) == 2
    taps["discard"].discard()
    assert open(taps["discard"].path).read() == ""     # never read: never converted
    taps["remove"].remove()
    assert sorted(os.listdir(tmp_path)) == ["discard.jsonl", "keep.jsonl"]
