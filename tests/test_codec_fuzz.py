"""Properties of the codec and of the kernel's input path:
* valid XFRM messages re-encode to the same bytes;
* random, truncated and mutated datagrams make the codec raise only DecodeError;
* ≥ 10,000 such datagrams through the sans-IO kernel give only well-formed replies (or the
  kernel's silent drops), never an exception, and the namespace keeps working."""
from __future__ import annotations

import random
import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netlink_codec import netlink as N
from netlink_codec import xfrm as X
from netlink_codec.errors import DecodeError
from netlink_codec.xfrm import XFRM
from xfrmd.clock import ManualClock
from xfrmd.kernel import Kernel

from .sad_helpers import AEAD, CBC, msg, usersa_info

A = X.Xfrma
SEEDS = [
    msg(X.XfrmMsg.NEWSA, usersa_info() + AEAD),
    msg(X.XfrmMsg.NEWSA, usersa_info(flags=0) + CBC + N.nla_u8(A.SA_DIR, 2)),
    msg(X.XfrmMsg.GETSA, struct.pack("=16s4sHBx", bytes(16), b"\0\0\x10\0", 2, 50)),
    msg(X.XfrmMsg.NEWPOLICY, bytes(X.XfrmUserpolicyInfo()) + N.nla(A.TMPL, bytes(X.XfrmUserTmpl()))),
    msg(X.XfrmMsg.FLUSHSA, b"\0"),
    msg(X.XfrmMsg.GETSPDINFO, b"\xff\xff\xff\xff"),
    msg(X.XfrmMsg.GETPOLICY, b"", N.NLM_F_REQUEST | N.NLM_F_DUMP),
]


def _mutate(draw_bytes, seed: bytes, data) -> bytes:
    b = bytearray(seed)
    for _ in range(data.draw(st.integers(1, 6))):
        kind = data.draw(st.sampled_from(["flip", "truncate", "insert", "len"]))
        if kind == "flip" and b:
            i = data.draw(st.integers(0, len(b) - 1))
            b[i] = data.draw(st.integers(0, 255))
        elif kind == "truncate" and b:
            del b[data.draw(st.integers(0, len(b) - 1)):]
        elif kind == "insert":
            i = data.draw(st.integers(0, len(b)))
            b[i:i] = draw_bytes
        elif kind == "len" and len(b) >= 4:
            struct.pack_into("=I", b, 0, data.draw(st.integers(0, 0xFFFFFFFF)))
    return bytes(b)


@given(st.sampled_from(SEEDS))
def test_valid_messages_round_trip(m):
    assert XFRM.encode(XFRM.decode(m)) == m


@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(SEEDS), st.binary(max_size=12), st.data())
def test_malformed_datagrams_raise_only_decode_error(seed, junk, data):
    d = _mutate(junk, seed, data)
    try:
        for h in N.split_messages(d):
            XFRM.decode(d, h)
    except DecodeError as e:
        assert 0 <= e.offset <= len(d)


@settings(max_examples=600)
@given(st.binary(max_size=300))
def test_random_bytes_raise_only_decode_error(d):
    try:
        for h in N.split_messages(d):
            XFRM.decode(d, h)
    except DecodeError:
        pass


def _well_formed_replies(datagrams):
    for d in datagrams:
        for h in N.split_messages(d):          # strict framing
            if h.type == N.NLMSG_ERROR:
                (err,) = struct.unpack_from("=i", d, h.offset + 16)
                assert -4095 < err <= 0


def test_ten_thousand_bad_datagrams_through_the_kernel():
    """Deterministic mutation of the seeds (a fixed PRNG), delivered to one socket; after
    all of them the socket still gets correct answers."""
    rnd = random.Random(7)
    k = Kernel(ManualClock())
    s = k.socket(N.NETLINK_XFRM, "default", pid=99)
    k.bind(s)
    k.setsockopt(s, N.SOL_NETLINK, N.NETLINK_EXT_ACK, 1)
    for i in range(10_000):
        b = bytearray(rnd.choice(SEEDS))
        for _ in range(rnd.randint(1, 5)):
            op = rnd.random()
            if op < 0.4 and b:
                b[rnd.randrange(len(b))] = rnd.randrange(256)
            elif op < 0.6 and b:
                del b[rnd.randrange(len(b)):]
            elif op < 0.8:
                b[rnd.randrange(len(b) + 1):0] = bytes(rnd.randrange(256) for _ in range(rnd.randrange(9)))
            elif len(b) >= 8:
                struct.pack_into("=H", b, 4, rnd.randrange(0x10, 0x30))
        struct.pack_into("=H", b, 6, struct.unpack_from("=H", b, 6)[0] | N.NLM_F_REQUEST) \
            if len(b) >= 8 and rnd.random() < 0.7 else None
        k.deliver(s, bytes(b))
        out = []
        while (d := k.recv(s)) is not None:
            out.append(d)
        _well_formed_replies(out)
    # still serving: a GETSADINFO gets its answer
    k.deliver(s, msg(X.XfrmMsg.GETSADINFO, b"\xff\xff\xff\xff", N.NLM_F_REQUEST))
    d = k.recv(s)
    assert d is not None and N.split_messages(d)[0].type == X.XfrmMsg.NEWSADINFO
