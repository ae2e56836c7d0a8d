"""The C version of ESP's common packet (xfrmd/datapath/_espfast.c) against the Python one
(xfrmd/datapath/esp.py, the reference): the same ESP packets, plaintexts, exceptions,
counters and replay-window state, over random payloads, sequence numbers, window positions
and corrupt packets. Each SA pair shares its key and seqiv salt; the C side is the SA's own
methods (the extension's), the Python side the class's functions called on the twin."""
from __future__ import annotations

import gc
import weakref
from unittest import mock

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from netlink_codec import cext
from xfrmd.datapath import esp
from xfrmd.datapath.esp import EspGcmSA

from .conftest import require

if cext.pure_python():
    pytest.skip("the pure-Python run: nothing to compare", allow_module_level=True)

U32 = 0xFFFFFFFF
KEY = bytes(range(16)) + b"salt"
SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(autouse=True)
def _built():
    require(esp._C is not None, "the C extension is not built (python3 -m xfrmd.cext build)")


def twins(**kw) -> tuple[EspGcmSA, EspGcmSA]:
    """Two SAs alike in everything, the seqiv salt included."""
    with mock.patch.object(esp.os, "urandom", lambda n: bytes(range(7, 7 + n))):
        return EspGcmSA(0x1234, KEY, **kw), EspGcmSA(0x1234, KEY, **kw)


def outcome(fn, *args, **kw):
    try:
        return ("ok", fn(*args, **kw))
    except Exception as e:     # the type and the message must match
        return ("raised", type(e), str(e))


def state(sa: EspGcmSA) -> tuple:
    r, s = sa.replay, sa.stats
    return (r.oseq, r.top, r.bitmap, s.bytes, s.packets, s.replay, s.integrity_failed)


def test_the_common_sa_runs_c_and_the_others_python():
    sa, _ = twins()
    for name in ("encapsulate", "encapsulate_batch", "decapsulate"):
        assert type(getattr(sa, name)).__name__ == "builtin_function_or_method", name
    for kw in ({"esn": True}, {"icv_len": 12}):
        other, _ = twins(**kw)
        assert all(getattr(other, n).__func__ is getattr(EspGcmSA, n)
                   for n in ("encapsulate", "decapsulate", "encapsulate_batch"))
    caller_iv, _ = twins(iv_source=lambda seq: bytes(8))
    assert caller_iv.encapsulate.__func__ is EspGcmSA.encapsulate
    assert type(caller_iv.decapsulate).__name__ == "builtin_function_or_method"


@SETTINGS
@given(ops=st.lists(st.tuples(
    st.binary(max_size=90),
    st.one_of(st.integers(0, 255), st.sampled_from([-1, 256, True])),
    st.one_of(st.none(), st.integers(0, U32), st.sampled_from([-1, U32 + 1, 1 << 64])),
    st.booleans()), min_size=1, max_size=8),
    oseq=st.one_of(st.integers(0, U32), st.sampled_from([U32 - 2, U32 - 1, U32])))
def test_encapsulate_matches_python(ops, oseq):
    c, py = twins(replay_window=0)
    c.replay.oseq = py.replay.oseq = oseq
    for payload, nh, seq, as_kw in ops:
        args, kw = ((payload, nh), {"seq": seq}) if as_kw else ((payload, nh, seq), {})
        assert outcome(c.encapsulate, *args, **kw) == \
            outcome(EspGcmSA.encapsulate, py, *args, **kw)
        assert state(c) == state(py)


@SETTINGS
@given(payloads=st.lists(st.binary(max_size=70), max_size=6), nh=st.integers(0, 255),
       first=st.one_of(st.integers(0, U32), st.sampled_from([U32 - 3, U32, U32 + 1, -1])),
       outer=st.one_of(st.none(), st.lists(st.binary(max_size=24), max_size=7)),
       inner=st.one_of(st.none(), st.lists(st.binary(max_size=24), max_size=7)))
def test_encapsulate_batch_matches_python(payloads, nh, first, outer, inner):
    c, py = twins(replay_window=0)
    assert outcome(c.encapsulate_batch, payloads, nh, first, outer, inner) == \
        outcome(EspGcmSA.encapsulate_batch, py, payloads, nh, first, outer, inner)
    assert state(c) == state(py)
    if payloads and first + len(payloads) - 1 <= U32 and first >= 0:
        # and each packet is what encapsulate gives for its number, behind its header
        one, _ = twins(replay_window=0)
        heads = [bytes([i]) * i for i in range(len(payloads))]
        assert c.encapsulate_batch(payloads, nh, first, heads) == \
            [h + one.encapsulate(p, nh, seq) for h, (seq, p) in
             zip(heads, enumerate(payloads, first))]
        assert {len(e) - len(h) for h, e in zip(heads, c.encapsulate_batch(
            payloads, nh, first, heads))} <= {c.esp_len(len(p)) for p in payloads}
        assert c.encapsulate_batch(payloads, nh, first, None, heads) == \
            [one.encapsulate(h + p, nh, seq) for h, (seq, p) in
             zip(heads, enumerate(payloads, first))]


def _corrupt(pkt: bytes, how: int, where: int) -> bytes:
    if how == 1:                                    # a flipped bit anywhere
        i = where % len(pkt)
        return pkt[:i] + bytes([pkt[i] ^ 0x10]) + pkt[i + 1:]
    if how == 2:                                    # cut short
        return pkt[:where % len(pkt)]
    if how == 3:                                    # another SA's SPI
        return b"\0\0\x99\x99" + pkt[4:]
    return pkt


@SETTINGS
@given(window=st.sampled_from([0, 1, 8, 32, 64, 128]),
       start=st.one_of(st.integers(0, 200), st.integers(U32 - 100, U32 - 1)),
       packets=st.lists(st.tuples(st.integers(-70, 70), st.binary(max_size=60),
                                  st.integers(0, 255), st.integers(0, 3),
                                  st.integers(0, 10_000)), min_size=1, max_size=12))
def test_decapsulate_matches_python(window, start, packets):
    """Numbers around the window's top (new ones, inside it, left of it, replays), with
    corrupt packets among them."""
    sender, _ = twins(replay_window=0)
    c, py = twins(replay_window=window)
    if start:                                       # the window somewhere along the numbers
        first = sender.encapsulate(b"x", 4, start)
        assert c.decapsulate(first) == EspGcmSA.decapsulate(py, first)
    for delta, payload, nh, how, where in packets:
        seq = max(0, min(U32, c.replay.top + delta))
        pkt = _corrupt(sender.encapsulate(payload, nh, seq), how, where)
        got = outcome(c.decapsulate, pkt)
        assert got == outcome(EspGcmSA.decapsulate, py, pkt)
        assert state(c) == state(py)
        if got[0] == "ok" and how == 0:
            assert got[1] == (payload, nh, seq)


@SETTINGS
@given(plain=st.binary(min_size=2, max_size=40), seq=st.integers(1, U32), iv=st.binary(
    min_size=8, max_size=8))
@example(plain=b"\x01\x04", seq=1, iv=bytes(8))      # the pad length one byte past the start
@example(plain=b"\xff\x04", seq=1, iv=bytes(8))
def test_any_trailer_a_peer_sealed_matches_python(plain, seq, iv):
    """A peer's own plaintext, pad length and next header whatever they are (a pad length
    past the start leaves an empty payload, as the Python slice does)."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    hdr = (0x1234).to_bytes(4, "big") + seq.to_bytes(4, "big")
    pkt = hdr + iv + AESGCM(KEY[:16]).encrypt(KEY[16:] + iv, plain, hdr)
    c, py = twins()
    assert outcome(c.decapsulate, pkt) == outcome(EspGcmSA.decapsulate, py, pkt)
    assert state(c) == state(py)


def test_odd_arguments_go_to_python():
    c, py = twins()
    for args in ((bytearray(b"abc"), 4), (memoryview(b"abc"), 4), (b"abc",), ("abc", 4)):
        assert outcome(c.encapsulate, *args) == outcome(EspGcmSA.encapsulate, py, *args)
    assert outcome(c.encapsulate, b"a", 4, payload=1) == \
        outcome(EspGcmSA.encapsulate, py, b"a", 4, payload=1)
    pkt = c.encapsulate(b"abc", 17)
    assert pkt == EspGcmSA.encapsulate(py, b"abc", 17) and state(c) == state(py)
    for arg in (bytearray(pkt), memoryview(pkt)):
        c2, py2 = twins()
        assert outcome(c2.decapsulate, arg) == outcome(EspGcmSA.decapsulate, py2, arg)
        assert state(c2) == state(py2)
    assert outcome(c.encapsulate_batch, (b"a", b"b"), 4, 1) == \
        outcome(EspGcmSA.encapsulate_batch, py, (b"a", b"b"), 4, 1)
    assert state(c) == state(py)
    for attr in ("bytes", "packets"):               # a deleted counter: Python's error
        c3, py3 = twins()
        pkt = c3.encapsulate(b"x", 4)
        EspGcmSA.encapsulate(py3, b"x", 4)
        delattr(c3.stats, attr)
        delattr(py3.stats, attr)
        assert outcome(c3.encapsulate, b"x", 4) == outcome(EspGcmSA.encapsulate, py3, b"x", 4)
        assert outcome(c3.encapsulate_batch, [b"x"], 4, 9) == \
            outcome(EspGcmSA.encapsulate_batch, py3, [b"x"], 4, 9)
        c4, py4 = twins()
        delattr(c4.stats, attr)
        delattr(py4.stats, attr)
        assert outcome(c4.decapsulate, pkt) == outcome(EspGcmSA.decapsulate, py4, pkt)
        assert (c3.replay.oseq, c4.replay.top) == (py3.replay.oseq, py4.replay.top)


def test_an_icv_mismatch_counts_once_and_raises_the_python_error():
    sender, _ = twins(replay_window=0)
    c, _ = twins()
    pkt = bytearray(sender.encapsulate(b"payload", 4))
    pkt[-1] ^= 1
    with pytest.raises(esp.IntegrityError, match="ICV mismatch") as e:
        c.decapsulate(bytes(pkt))
    assert e.value.__suppress_context__                  # `from None`, as the Python code
    assert (c.stats.integrity_failed, c.stats.packets, c.replay.top) == (1, 0, 0)


def test_an_sa_is_freed_with_its_c_half():
    sa, _ = twins()
    ref = weakref.ref(sa)
    del sa
    gc.collect()
    assert ref() is None


def test_the_output_path_numbers_through_c():
    """output.esp_output calls encapsulate(body, nh, seq=…): the keyword takes C too."""
    c, py = twins(replay_window=0)
    assert c.encapsulate(b"body", 4, seq=7) == \
        EspGcmSA.encapsulate(py, b"body", 4, seq=7)
    assert state(c) == state(py)


def test_a_window_not_in_plain_slots_is_refused_and_a_base_class_slot_is_not():
    """The C half reads oseq, top and bitmap at their slots' offsets (xfrmd/_slots.h): a
    window class whose oseq is a property is refused with TypeError (the caller keeps the
    Python methods); one whose slots are its base's numbers as the Python does."""
    sa, twin = twins()
    Window = type(sa.replay)

    class Sub(Window):
        __slots__ = ()

    class Prop(Window):
        __slots__ = ()
        oseq = property(lambda self: 0)

    def esp_with(replay):
        seal = sa._seal[:4] + (replay,) + sa._seal[5:]
        return esp._C.Esp(seal, None, twin.encapsulate, twin.decapsulate,
                          twin.encapsulate_batch)

    with pytest.raises(TypeError, match="oseq"):
        esp_with(Prop.__new__(Prop))
    sub = Sub.__new__(Sub)
    for f in ("oseq", "top", "bitmap"):
        setattr(sub, f, getattr(sa.replay, f))
    fast = esp_with(sub)
    assert fast.encapsulate(b"x" * 20, 4) == twin.encapsulate(b"x" * 20, 4)
    assert sub.oseq == twin.replay.oseq == 1
