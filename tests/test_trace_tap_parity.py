"""The trace tap's record step in C (xfrmd/_taprec.c) against the Python it replaces
(trace_tap._record, the reference): for random conversations — sockets of several
namespaces, with and without NETLINK_EXT_ACK, datagrams given as bytes or as buffers that
change afterwards, the kernel's trace note set or not, spills, a close in the middle — both
hold the same records, write the same raw chunks (as loaded) and the same JSON lines; both
raise the same errors. Skipped where the extension is not built (fails in CI); the pure-Python
run (``XFRMD_PURE_PYTHON=1``) checks only which path runs."""
from __future__ import annotations

import marshal
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netlink_codec import cext
from netlink_codec import netlink as N
from xfrmd import trace_tap
from xfrmd.clock import ManualClock, SystemClock
from xfrmd.kernel import Kernel
from xfrmd.topology import load_topology
from xfrmd.trace_tap import CHUNK, TraceTap

from .conftest import require

C = trace_tap._taprec
SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow,
                                           HealthCheck.function_scoped_fixture])


def _need_c() -> None:
    if cext.pure_python():
        pytest.skip("the pure-Python run: no C path to compare")
    require(C is not None, "xfrmd._taprec is not built (python3 -m xfrmd.cext build)")


class PyTap(TraceTap):
    """The same tap, recording through the reference."""
    record = trace_tap._record


def test_the_pure_python_run_records_in_python():
    if cext.pure_python():
        assert C is None and TraceTap.record is trace_tap._record
    else:
        _need_c()
        assert TraceTap.record is C.Tap.record


def _raw(tap: TraceTap) -> list:
    """The records of the tap's raw file, as sync reads them."""
    try:
        raw = open(tap._raw_path, "rb").read()
    except FileNotFoundError:
        return []
    out, used = [], 0
    while used < len(raw):
        end = used + CHUNK.size + CHUNK.unpack_from(raw, used)[0]
        out += marshal.loads(raw[used + CHUNK.size:end])
        used = end
    return out


OPS = st.lists(st.one_of(
    st.tuples(st.just("rec"), st.sampled_from(["tx", "rx", "event"]), st.integers(0, 3),
              st.binary(max_size=40), st.sampled_from(["bytes", "bytearray", "memoryview"]),
              st.one_of(st.none(), st.tuples(st.integers(0, 3), st.binary(max_size=8)))),
    st.tuples(st.just("tick"), st.floats(0, 5)),
    st.tuples(st.just("read")),
    st.tuples(st.just("close"))), max_size=40)


@SETTINGS
@given(ops=OPS, spill_at=st.sampled_from([1, 2, 3, 5, 4096]))
def test_c_and_python_record_the_same(tmp_path_factory, ops, spill_at):
    _need_c()
    tmp = tmp_path_factory.mktemp("parity")
    k = Kernel(ManualClock(), topology=load_topology("bare"), seed=1)
    socks = [k.socket(N.NETLINK_XFRM, pid=10 + i) for i in range(4)]
    for i, s in enumerate(socks):
        s.ext_ack = bool(i % 2)
        s.portid = 100 + i if i != 3 else 0
    socks[3].protocol = N.NETLINK_ROUTE
    taps = [cls(str(tmp / f"{cls.__name__}.jsonl"), k) for cls in (TraceTap, PyTap)]
    for tap in taps:
        tap._spill_at = spill_at
        assert tap._now == k.clock.now and tap._clock is None
    for op in ops:
        if op[0] == "rec":
            _, d, i, data, kind, note = op
            k.trace_note = None if note is None else (socks[note[0]].id, note[1])
            for tap in taps:
                buf = {"bytes": bytes, "bytearray": bytearray,
                       "memoryview": lambda b: memoryview(bytearray(b))}[kind](data)
                tap.record(d, socks[i], buf)
                if kind != "bytes":
                    buf[:1] = b"\xff" if buf else b""    # the caller's buffer changes after
        elif op[0] == "tick":
            k.clock.advance(op[1])
        elif op[0] == "read":
            lines = [open(tap.path).read() for tap in taps]
            assert lines[0] == lines[1]
        else:
            for tap in taps:
                tap.close()
        c, py = taps
        assert c._held == py._held and c.socks == py.socks
        assert _raw(c) == _raw(py)
    c, py = taps
    assert open(c.keep()).read() == open(py.keep()).read()
    for tap in taps:
        tap.remove()


class _Sock:
    """A socket of another class (its fields found by attribute lookup, not slot offsets)."""

    def __init__(self, base, **kw):
        self.netns, self.protocol = base.netns, base.protocol
        self.id, self.portid, self.ext_ack = base.id, base.portid, base.ext_ack
        self.__dict__.update(kw)


class _NoExtAck:
    __slots__ = ("id", "portid", "netns", "protocol")


def test_other_socket_classes_and_errors_match(kernel, tmp_path):
    _need_c()
    s = kernel.socket(N.NETLINK_XFRM, pid=5)
    taps = [cls(str(tmp_path / f"{cls.__name__}.jsonl"), kernel) for cls in (TraceTap, PyTap)]
    odd = _NoExtAck()
    odd.id, odd.portid, odd.netns, odd.protocol = 77, 1, s.netns, 6
    for tap in taps:
        tap.record("tx", _Sock(s, portid=9), b"ab")
        tap.record("rx", s, b"cd")
        with pytest.raises(AttributeError, match="ext_ack"):
            tap.record("rx", odd, b"ef")
        with pytest.raises(AttributeError, match="'id'"):
            tap.record("rx", object(), b"ef")
        with pytest.raises(TypeError):
            tap.record("rx", s)                          # a tracer takes three arguments
    c, py = taps
    assert c._held == py._held and len(c._held) == 2
    assert c.socks == py.socks == {s.id: ("default", N.NETLINK_XFRM), 77: ("default", 6)}
    del kernel.trace_note                             # a kernel without it: the same error
    for tap in taps:
        with pytest.raises(AttributeError, match="trace_note"):
            tap.record("rx", s, b"gh")
    assert c._held == py._held


def test_a_system_clock_is_read_with_its_offset(tmp_path):
    """The pair's clock, read without the call: monotonic time plus the offset that
    ``xfrmd ctl clock advance`` moves, between what now() said before and after."""
    _need_c()
    k = Kernel(SystemClock(), seed=1)
    s = k.socket(N.NETLINK_XFRM, pid=1)
    tap = TraceTap(str(tmp_path / "t.jsonl"), k)
    assert tap._clock is k.clock
    for advance in (0.0, 1000.5, 3.25):
        k.clock.advance(advance)
        before = k.clock.now()
        tap.record("tx", s, b"x")
        after = k.clock.now()
        assert before <= tap._held[-1][0] <= after
    k.clock.offset = 7          # an int offset: the float's add, as now() does it
    before = k.clock.now()
    tap.record("tx", s, b"x")
    assert before <= tap._held[-1][0] <= k.clock.now()
    tap.discard()
    tap.remove()


def test_a_closed_tap_records_nothing_and_spills_nothing(kernel, tmp_path):
    _need_c()
    s = kernel.socket(N.NETLINK_XFRM, pid=5)
    tap = TraceTap(str(tmp_path / "t.jsonl"), kernel)
    tap._spill_at = 1
    tap.record("tx", s, b"a")                      # spilled at once
    assert os.path.getsize(tap._raw_path) > 0 and tap._held == []
    tap.close()
    size = os.path.getsize(tap._raw_path)
    tap.record("tx", s, b"b")
    assert tap._held == [] and os.path.getsize(tap._raw_path) == size
    assert len(open(tap.keep()).read().splitlines()) == 1
