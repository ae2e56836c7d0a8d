"""The test harnesses' cheap trace (xfrmd/trace_tap.py): raw datagrams recorded, the JSON lines
of ``xfrmd run --trace`` written only when read — the same lines, key for key."""
from __future__ import annotations

import io
import marshal
import os

from netlink_codec import netlink as N
from netlink_codec import xfrm as X
from xfrmd.trace import TraceWriter, print_trace
from xfrmd import trace_tap
from xfrmd.trace_tap import CHUNK, TraceTap

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


def test_a_chunk_half_written_waits_for_its_rest(kernel, tmp_path):
    """A reader that finds the end of a spilled chunk still missing converts nothing of it
    (nor what is still in memory, which comes after it), and all of it on the next read."""
    tap = TraceTap(str(tmp_path / "t.jsonl"), kernel)
    data = b"\x14\0\0\0" + bytes(16)
    tap.socks[3] = ("default", N.NETLINK_XFRM)
    blob = marshal.dumps([(2.0, "rx", 3, 77, True, data, None)])
    chunk = CHUNK.pack(len(blob)) + blob
    with open(tmp_path / "t.jsonl.raw", "ab") as f:      # a spill, cut short
        f.write(chunk[:-5])
    tap.record("tx", Nl(kernel, pid=78).s, data)      # recorded after it, in memory
    assert open(tap.path).read() == ""
    with open(tmp_path / "t.jsonl.raw", "ab") as f:
        f.write(chunk[-5:])
    lines = open(tap.path).read().splitlines()
    assert lines[0] == (
        '{"t": 2.0, "dir": "rx", "netns": "default", "proto": 6, "sock": 3, "portid": 77, '
        f'"ext_ack": true, "data": "{data.hex()}"}}')
    assert len(lines) == 2 and '"portid": 78' in lines[1]


def test_a_long_conversation_spills_in_order(kernel, tmp_path, monkeypatch):
    """Past SPILL_AT records the oldest go to the raw file; a read converts them first, then
    what is still in memory: every datagram once, in order, as the TraceWriter wrote them."""
    monkeypatch.setattr(trace_tap, "SPILL_AT", 4)
    writer, tap = _pair(kernel, tmp_path)
    nl = Nl(kernel)
    for seq in range(1, 6):
        nl.send(msg(X.XfrmMsg.GETSADINFO, b"\xff" * 4, seq=seq))   # 3 datagrams each
    assert os.path.getsize(tap._raw_path) > 0                       # spilled
    writer.out.flush()
    assert open(tap.path).read().splitlines() == open(writer.out.name).read().splitlines()
    nl.send(newsa(seq=9))
    writer.out.close()
    assert open(tap.keep()).read().splitlines() == open(writer.out.name).read().splitlines()
    assert not os.path.exists(tap._raw_path)


def test_what_is_in_memory_is_spilled_at_exit(kernel, tmp_path):
    """The atexit hook writes the records still in memory to the raw file; a tap discarded
    before (a passing test's) writes nothing."""
    kept, dropped = (TraceTap(str(tmp_path / f"{n}.jsonl"), kernel) for n in ("kept", "dropped"))
    kernel.tracers += [kept.record, dropped.record]
    Nl(kernel).send(newsa(seq=1))
    dropped.discard()
    trace_tap._spill_all()
    raw = open(kept._raw_path, "rb").read()
    assert CHUNK.unpack_from(raw)[0] == len(raw) - CHUNK.size
    assert len(marshal.loads(raw[CHUNK.size:])) == 2               # the request, its ack
    assert not os.path.exists(dropped._raw_path)
    assert len(open(kept.path).read().splitlines()) == 2           # converted from the file


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
