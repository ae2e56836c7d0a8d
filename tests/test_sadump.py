"""xfrmd/xfrm/_sadump.c, the C half of dump_one_state: for any state, the NEWSA message it
answers is byte for byte the one the Python method (SecurityAssociation.dump_message, the
reference) builds -- both families, lifetimes, counters, statistics, replay state, the
algorithms, mark, if_id, direction, last use, the event types -- and whatever it cannot build
(an offload binding, an encapsulation, ESN, a rare field of the state's own, a field out of
its C range, another object) comes from the Python method, errors included."""
from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netlink_codec import cext
from netlink_codec import netlink as N
from netlink_codec import xfrm as X
from xfrmd.cext import source
from xfrmd.clock import ManualClock
from xfrmd.kernel import Kernel
from xfrmd.xfrm import state
from xfrmd.xfrm.state import (DEFAULT_LFT, Algo, LifetimeCfg, LifetimeCur, ReplayEsn,
                              SecurityAssociation, StateId)

from .conftest import require
from .sad_helpers import AEAD, CBC, M, msg, usersa_info

U8, U16, U32, U64 = (st.integers(0, 2 ** b - 1) for b in (8, 16, 32, 64))
ADDR = st.one_of(st.binary(min_size=4, max_size=4).map(lambda a: a.ljust(16, b"\0")),
                 st.binary(min_size=16, max_size=16))
NAME = st.one_of(st.sampled_from(["rfc4106(gcm(aes))", "cbc(aes)", "hmac(sha256)"]),
                 st.text(max_size=70))


@pytest.fixture(scope="module")
def fast():
    if cext.pure_python():
        pytest.skip("the pure-Python run: nothing to compare")
    require(state._sadump is not None, "needs the C extensions (python3 -m xfrmd.cext build)")
    return state._sadump


def test_which_builder_runs():
    """XFRMD_PURE_PYTHON=1: the Python method; else the C half when it is built."""
    if cext.pure_python():
        assert state._sadump is None
        assert state.dump_message is SecurityAssociation.dump_message
    else:
        built = cext.find("xfrmd.xfrm._sadump", source("xfrmd.xfrm._sadump"))
        require(built is not None, "needs the C extensions (python3 -m xfrmd.cext build)")
        assert state._sadump is not None, "built, but setup() refused the state's slots"
        assert state.dump_message is state._sadump.message


algos_ = st.builds(Algo, NAME, U32, st.binary(max_size=40), U32, U32)


@st.composite
def states(draw) -> SecurityAssociation:
    lft = draw(st.one_of(st.just(DEFAULT_LFT), st.tuples(*[U64] * 8).map(
        lambda t: LifetimeCfg(*t))))
    x = SecurityAssociation(lft, StateId(draw(ADDR), draw(U32), draw(st.sampled_from([50, 51,
                                                                                      108]))),
                            draw(st.binary(min_size=56, max_size=56)),
                            draw(st.sampled_from([X.AF_INET, X.AF_INET6])), draw(ADDR),
                            draw(st.integers(0, 5)), draw(U32), draw(U8), draw(U8), draw(U64))
    x.curlft.bytes, x.curlft.packets, x.curlft.use_time = draw(U64), draw(U64), draw(U64)
    x.km_seq = draw(U32)
    kind = draw(st.integers(0, 2))
    if kind == 0:
        x.aead = draw(algos_)
    elif kind == 1:
        x.enc = draw(algos_)
        x.auth = draw(st.one_of(st.none(), algos_))
    else:
        x.auth = draw(algos_)
    x.stats = draw(st.one_of(st.just((0, 0, 0)), st.lists(U32, min_size=3, max_size=3)))
    x.replay = draw(st.one_of(st.just((0, 0, 0)), st.lists(U32, min_size=3, max_size=3)))
    x.mark = draw(st.one_of(st.just((0, 0)), st.tuples(U32, U32)))
    x.if_id = draw(st.one_of(st.just(0), U32))
    x.dir = draw(st.sampled_from([0, 1, 2]))
    x.lastused = draw(st.one_of(st.just(0), U64))
    return x


class _Fallback:
    """The C half set up with a recording stand-in for the Python method (restored after)."""

    def __init__(self, fast):
        self.fast, self.calls = fast, []

    def __enter__(self):
        self.fast.setup(SecurityAssociation, LifetimeCur, Algo,
                        lambda *a: self.calls.append(a) or b"python")
        return self

    def __exit__(self, *exc):
        self.fast.setup(SecurityAssociation, LifetimeCur, Algo, SecurityAssociation.dump_message)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(x=states(), seq=U32, portid=U32, flags=st.sampled_from([0, N.NLM_F_MULTI]),
       msg_type=st.sampled_from([M.NEWSA, M.UPDSA]))
def test_every_usual_state_is_built_in_c_as_python_builds_it(fast, x, seq, portid, flags,
                                                             msg_type):
    with _Fallback(fast) as fb:
        got = fast.message(x, seq, portid, flags, msg_type)
    assert not fb.calls, "the C half left a usual state to Python"
    assert got == SecurityAssociation.dump_message(x, seq, portid, flags, msg_type)


def _rare(x: SecurityAssociation, what: str) -> None:
    if what == "comp":
        x.comp = Algo("deflate", 0, b"")
    elif what == "coaddr":
        x.coaddr = bytes(16)
    elif what == "tfcpad":
        x.tfcpad = 9
    elif what == "pcpu":
        x.pcpu_num = 1
    elif what == "extra_flags":
        x.extra_flags = 1
    elif what == "smark":
        x.smark = (1, 2)
    elif what == "id_pad":
        x.id_pad = b"\1\2\3"
    elif what == "esn":
        x.replay_esn = ReplayEsn(1, 2, 3, 0, 0, 32, [5])
    elif what == "encap":
        x.encap = X.XfrmEncapTmpl(encap_type=2, encap_sport=4500, encap_dport=4500)
    elif what == "big reqid":
        x.reqid = 2 ** 32
    elif what == "negative spi":
        x.id = StateId(x.id.daddr, -1, 50)
    elif what == "short saddr":
        x.saddr = bytes(4)


RARE = ["comp", "coaddr", "tfcpad", "pcpu", "extra_flags", "smark", "id_pad", "esn", "encap",
        "big reqid", "negative spi", "short saddr"]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(x=states(), what=st.sampled_from(RARE))
def test_everything_else_comes_from_the_python_method(fast, x, what):
    _rare(x, what)
    with _Fallback(fast) as fb:
        fast.message(x, 7, 9, 0)
    assert fb.calls == [(x, 7, 9, 0)], f"C built a state with {what}"
    try:
        want: object = SecurityAssociation.dump_message(x, 7, 9, 0)
    except (struct.error, OverflowError, TypeError, ValueError) as e:
        want = type(e)
    try:
        got: object = fast.message(x, 7, 9, 0)
    except (struct.error, OverflowError, TypeError, ValueError) as e:
        got = type(e)
    assert got == want


def test_an_object_that_is_not_a_state_goes_to_python(fast):
    with pytest.raises(AttributeError):
        fast.message(object(), 1, 2)


def _kernel():
    k = Kernel(ManualClock(), seed=1)
    s = k.socket(N.NETLINK_XFRM)
    k.bind(s)
    return k, s


def test_allocspi_getsa_and_the_dump_answer_the_same_with_either_builder(fast, monkeypatch):
    """What a key manager reads: ALLOCSPI's larval state, GETSA, the dump, with the C half
    and with the Python method."""
    def serve():
        k, s = _kernel()
        out = []
        reqs = [msg(M.NEWSA, usersa_info(spi=0x1000) + AEAD),
                msg(M.NEWSA, usersa_info(spi=0x2000, dst="2001:db8::1", src="2001:db8::2") + CBC),
                msg(M.ALLOCSPI, usersa_info(spi=0, reqid=3) + struct.pack("=II", 0x100, 0x100)),
                msg(M.GETSA, struct.pack("=16s4sHBx", bytes([198, 51, 100, 1]).ljust(16, b"\0"),
                                         struct.pack(">I", 0x1000), X.AF_INET, 50)),
                msg(M.GETSA, b"", flags=N.NLM_F_REQUEST | N.NLM_F_DUMP)]
        for r in reqs:
            k.deliver(s, r)
            while (d := k.recv(s)) is not None:
                while d:        # a dump's datagram holds several messages
                    n = struct.unpack_from("=I", d)[0]
                    out.append(d[:n])
                    d = d[(n + 3) & ~3:]
        return out

    with_c = serve()
    monkeypatch.setattr(state, "dump_message", SecurityAssociation.dump_message)
    monkeypatch.setattr("xfrmd.xfrm.sad.dump_message", SecurityAssociation.dump_message)
    assert with_c == serve()
    # ALLOCSPI's answer, GETSA's, the dump's three states
    assert sum(struct.unpack_from("=H", m, 4)[0] == M.NEWSA for m in with_c) == 5
