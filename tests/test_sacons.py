"""xfrmd/xfrm/_sacons.c, the C half of NEWSA/UPDSA state construction: whatever it builds,
the Python path (sa_verify.checked_newsa_info + state_construct) builds the same, slot for
slot; the requests charon and `ip` send take it; everything else, every error included, is
left to the Python path. Each request sequence is served twice, by a kernel with the C half
and by one without, and everything a user can see must be the same: the answers (errno,
extack, the SA events), the dump of the SAD afterwards, the driver's table."""
from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netlink_codec import cext
from netlink_codec import netlink as N
from netlink_codec import xfrm as X
from xfrmd import kconfig
from xfrmd.clock import ManualClock
from xfrmd.kernel import Kernel
from xfrmd.topology import from_dict
from xfrmd.xfrm import algos, sa_verify, sadb, types
from xfrmd.xfrm.addrcache import SEEN
from xfrmd.xfrm.state import Algo, LifetimeCfg, SecurityAssociation, StateId

from .conftest import require
from .sad_helpers import AEAD, CBC, GCM_KEY, M, algo2, msg, selector, usersa_info

if cext.pure_python():
    pytest.skip("the pure-Python run: nothing to compare", allow_module_level=True)

A = X.Xfrma
IFINDEX = 2                 # the mlx5-like port of _kernel()
IN, OUT = N.nla(A.SA_DIR, b"\x01"), N.nla(A.SA_DIR, b"\x02")
# charon's endpoints: the port's own address and its peer
LOCAL, PEER = "192.0.2.2", "192.0.2.1"


@pytest.fixture
def fast():
    require(sa_verify._sacons is not None, "needs the C extensions (python3 -m xfrmd.cext build)")
    return sa_verify._sacons


def offload(flags: int = X.XFRM_OFFLOAD_PACKET, ifindex: int = IFINDEX) -> bytes:
    return N.nla(A.OFFLOAD_DEV, struct.pack("=iI", ifindex, flags))


def sa(*attrs: bytes, t: int = M.NEWSA, seq: int = 5, **info) -> bytes:
    return msg(t, usersa_info(**info) + b"".join(attrs), seq=seq)


def allocspi(seq: int = 3, src: str = PEER, dst: str = LOCAL) -> bytes:
    info = usersa_info(src=src, dst=dst, spi=0, reqid=0, replay_window=0)
    return msg(M.ALLOCSPI, info + struct.pack("=II", 0xC0000000, 0xC0000000) + IN,
               flags=N.NLM_F_REQUEST, seq=seq)


def charon_in(**kw) -> bytes:
    """charon's inbound UPDSA of the SPI ALLOCSPI gave (0xc0000000 here)."""
    kw = {"src": PEER, "dst": LOCAL, "spi": 0xC0000000, "reqid": 1,
          "flags": X.XFRM_STATE_AF_UNSPEC, **kw}
    return sa(AEAD, IN, offload(X.XFRM_OFFLOAD_INBOUND | X.XFRM_OFFLOAD_PACKET), t=M.UPDSA,
              **kw)


def charon_out(**kw) -> bytes:
    kw = {"src": LOCAL, "dst": PEER, "spi": 0xC2000001, "reqid": 1, "replay_window": 0,
          "flags": X.XFRM_STATE_AF_UNSPEC, **kw}
    return sa(AEAD, OUT, offload(), **kw)


def _kernel(configure=None) -> tuple[Kernel, object]:
    topo = from_dict({"netns": [{"name": "default", "device": [
        {"name": "p0", "kind": "mlx5", "addresses": ["192.0.2.2/24"]}]}]})
    k = Kernel(ManualClock(), topology=topo, seed=1)
    if configure is not None:
        configure(k)
    s = k.socket(N.NETLINK_XFRM)
    k.bind(s)
    k.setsockopt(s, N.SOL_NETLINK, N.NETLINK_EXT_ACK, 1)
    k.setsockopt(s, N.SOL_NETLINK, N.NETLINK_ADD_MEMBERSHIP, X.XfrmNlGrp.SA)
    return k, s


class _Spy:
    """Stands in for the C module: records what it built (or answers None: Python)."""

    def __init__(self, real: object | None):
        self.real = real
        self.answers: list[object] = []

    def construct(self, *args):
        got = None if self.real is None else self.real.construct(*args)
        self.answers.append(got)
        return got


def _serve(monkeypatch, fast, requests: list[bytes], configure=None):
    """(the answers, the dump afterwards, the states, the driver's table, the spy)."""
    spy = _Spy(fast)
    with monkeypatch.context() as m:
        m.setattr(sa_verify, "_sacons", spy if fast is not None else None)
        if fast is None:        # the SAD's C pieces too: the larval state, the bydst key
            m.setattr(sadb, "_larval", None)
            m.setattr(sadb, "bydst_key", sadb._no_key)
        k, s = _kernel(configure)
        answers = []
        for r in requests:
            k.deliver(s, r)
            while (d := k.recv(s)) is not None:
                answers.append(d)
    k.deliver(s, N.encode_msg(M.GETSA, N.NLM_F_REQUEST | N.NLM_F_DUMP, 99, 0, bytes(32)))
    dump = []
    while (d := k.recv(s)) is not None:
        dump.append(d)
    states = list(k.netns("default").xfrm.sad.all.values())
    drv = k.netns("default").links.by_index(IFINDEX).xfrmdev_ops
    table = [] if drv is None else [{f: v for f, v in e.items()} for e in drv.sadb.values()]
    return answers, dump, states, table, spy


_SKIP = {"timer", "net", "__dict__", "__weakref__", "curlft", "xso"}


def _fields(x: SecurityAssociation) -> dict:
    f = {n: getattr(x, n) for n in SecurityAssociation.__slots__ if n not in _SKIP}
    f["__dict__"] = dict(vars(x))
    c = x.curlft
    f["curlft"] = (c.bytes, c.packets, c.add_time, c.use_time)
    xso = x.xso
    f["xso"] = None if xso is None else (xso.dev.ifindex, xso.dir, xso.type, xso.flags,
                                         xso.offload_handle)
    return f


def _same(monkeypatch, fast, requests: list[bytes], configure=None) -> _Spy:
    """Serve ``requests`` with and without the C half: everything seen is the same."""
    c_answers, c_dump, c_states, c_table, spy = _serve(monkeypatch, fast, requests, configure)
    py_answers, py_dump, py_states, py_table, _ = _serve(monkeypatch, None, requests, configure)
    assert c_answers == py_answers
    assert c_dump == py_dump
    assert c_table == py_table
    assert [_fields(x) for x in c_states] == [_fields(x) for x in py_states]
    # the C half's states are made of the shared pieces the Python path uses
    for x in spy.answers:
        if x is not None:
            assert type(x) is SecurityAssociation and type(x.id) is StateId
            assert type(x.aead) is Algo and type(x.lft) is LifetimeCfg
            assert x.id.daddr is SEEN.get(x.id.daddr) and x.saddr is SEEN.get(x.saddr)
            assert not vars(x)      # no rare field set: no __dict__ of its own
    return spy


def _errno(ack: bytes) -> int:
    return struct.unpack_from("=i", ack, 16)[0]


LFT = (1 << 40, 1 << 41, 5000, 6000, 3000, 3600, 0, 0)
COMMON = [
    ("charon: ALLOCSPI, UPDSA in offloaded", [allocspi(), charon_in()]),
    ("charon: NEWSA out offloaded", [charon_out()]),
    ("charon: both, lifetimes", [allocspi(), charon_in(lft=LFT), charon_out(lft=LFT)]),
    ("ip: aead tunnel", [sa(AEAD)]),
    ("ip: v6 transport", [sa(AEAD, src="2001:db8::1", dst="2001:db8::2",
                             mode=X.XFRM_MODE_TRANSPORT)]),
    ("beet, /32 selector", [sa(AEAD, mode=X.XFRM_MODE_BEET,
                               sel=selector("10.0.0.1", "10.0.0.2", 32, 32, X.AF_INET))]),
    ("v6 selector over v4 tunnel", [sa(AEAD, sel=selector("2001:db8::1", "2001:db8::2", 128,
                                                          128, X.AF_INET6))]),
    ("replay window 128 (kept at 32), seq", [sa(AEAD, IN, replay_window=128, seq=77)]),
    ("96-bit ICV (the driver refuses its offload)",
     [sa(N.nla(A.ALG_AEAD, algo2("rfc4106(gcm(aes))", GCM_KEY, 96)), OUT, offload(),
         replay_window=0, src=LOCAL, dst=PEER)]),
    ("UPDSA of a valid state in place", [sa(AEAD), sa(AEAD, t=M.UPDSA, lft=LFT)]),
    ("the same SA twice: EEXIST, its offload given back", [charon_out(), charon_out()]),
    ("crypto offload", [sa(AEAD, OUT, offload(0), replay_window=0, src=LOCAL, dst=PEER)]),
]


@pytest.mark.parametrize("name, requests", COMMON, ids=[c[0] for c in COMMON])
def test_charon_and_ips_requests_take_the_c_half(fast, monkeypatch, name, requests):
    spy = _same(monkeypatch, fast, requests)
    assert spy.answers and all(a is not None for a in spy.answers), \
        f"{name}: the C half left it to Python"


def test_charons_child_sa_is_installed_and_offloaded(fast, monkeypatch):
    answers, _dump, states, table, spy = _serve(monkeypatch, fast,
                                                [allocspi(), charon_in(), charon_out()])
    assert [_errno(a) for a in answers if struct.unpack_from("=H", a, 4)[0] == 2] == [0, 0]
    assert len(states) == 2 and all(x.xso is not None for x in states)
    assert [(e["spi"], e["dir"], e["type"]) for e in table] == [
        (0xC0000000, "in", "packet"), (0xC2000001, "out", "packet")]


def _unbuilt(option: str):
    return lambda k: kconfig.configure(k, {option: False})


REJECTED = [
    ("auth + crypt", [sa(CBC)], None),
    ("unknown algorithm", [sa(N.nla(A.ALG_AEAD, algo2("gcm(nothing)", GCM_KEY, 128)))], None),
    ("key length the cipher refuses", [sa(N.nla(A.ALG_AEAD, algo2("rfc4106(gcm(aes))",
                                                                  bytes(7), 128)))], None),
    ("ICV length without an entry", [sa(N.nla(A.ALG_AEAD, algo2("rfc4106(gcm(aes))",
                                                                GCM_KEY, 100)))], None),
    ("aead switched off in this kernel",
     [sa(AEAD)], lambda k: algos.set_available(k, ["rfc4106(gcm(aes))"], False)),
    ("esp4 not built", [sa(AEAD)], _unbuilt("INET_ESP")),
    ("family change in transport mode", [sa(AEAD, mode=X.XFRM_MODE_TRANSPORT,
                                            sel=selector("2001:db8::1", "2001:db8::2", 128,
                                                         128, X.AF_INET6))], None),
    ("route optimisation", [sa(AEAD, mode=X.XFRM_MODE_ROUTEOPTIMIZATION)], None),
    ("ESN", [sa(AEAD, flags=X.XFRM_STATE_ESN, replay_window=0)], None),
    ("out with a replay window", [sa(AEAD, OUT)], None),
    ("in with NOPMTUDISC", [sa(AEAD, IN, flags=X.XFRM_STATE_NOPMTUDISC)], None),
    ("a mark", [sa(AEAD, N.nla(A.MARK, struct.pack("=II", 1, 3)))], None),
    ("an AH state", [sa(N.nla(A.ALG_AUTH_TRUNC, algo2("hmac(sha256)", bytes(32), 128)),
                        proto=X.IPPROTO_AH)], None),
    ("selector prefix 33", [sa(AEAD, sel=selector(plen_d=33, family=X.AF_INET))], None),
    ("bad family", [sa(AEAD, family=7)], None),
]


@pytest.mark.parametrize("name, requests, configure", REJECTED, ids=[c[0] for c in REJECTED])
def test_everything_else_is_the_python_paths(fast, monkeypatch, name, requests, configure):
    spy = _same(monkeypatch, fast, requests, configure)
    assert spy.answers and all(a is None for a in spy.answers), f"{name}: C built it"


def test_an_algorithm_or_type_missing_from_every_kernel_goes_to_python(fast, monkeypatch):
    monkeypatch.setattr(algos, "UNAVAILABLE", algos.UNAVAILABLE)    # restored afterwards
    algos.UNAVAILABLE.add("rfc4106(gcm(aes))")
    try:
        spy = _same(monkeypatch, fast, [sa(AEAD)])
    finally:
        algos.UNAVAILABLE.discard("rfc4106(gcm(aes))")
    assert spy.answers == [None]
    types.DISABLED_TYPES.add(X.IPPROTO_ESP)
    try:
        spy = _same(monkeypatch, fast, [sa(AEAD)])
    finally:
        types.DISABLED_TYPES.discard(X.IPPROTO_ESP)
    assert spy.answers == [None]


def test_a_buffer_that_is_not_bytes_goes_to_python(fast):
    req = sa(AEAD)
    k, s = _kernel()
    db = k.netns("default").xfrm.sad
    ra = N.RawAttr(A.ALG_AEAD, 0, 16 + 224, 16 + 228, len(req))
    args = ({A.ALG_AEAD: ra}, db, 0, frozenset(), None, 2, 100)
    assert fast.construct(bytearray(req), 16, *args) is None
    assert fast.construct(req, 16, *args) is not None
    assert fast.construct(req, len(req) - 100, *args) is None     # too short
    assert fast.construct(req, 16, [], *args[1:]) is None


_ATTRS = [IN, OUT, offload(), offload(X.XFRM_OFFLOAD_INBOUND | X.XFRM_OFFLOAD_PACKET),
          offload(0), offload(ifindex=99), N.nla(A.IF_ID, struct.pack("=I", 7)),
          N.nla(A.ALG_AEAD, algo2("rfc4106(gcm(aes))", bytes(36), 128)),
          N.nla(A.ALG_AEAD, algo2("rfc4106(gcm(aes))", GCM_KEY, 128, key_bits=400)),
          N.nla(A.ALG_AEAD, algo2("rfc7539esp(chacha20,poly1305)", bytes(36), 128)),
          N.nla(A.TFCPAD, struct.pack("=I", 9)), N.nla(A.SA_PCPU, struct.pack("=I", 0))]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from([M.NEWSA, M.NEWSA, M.UPDSA]),
       family=st.sampled_from([X.AF_INET, X.AF_INET6, 7]),
       sel_family=st.sampled_from([0, X.AF_INET, X.AF_INET6, 3]),
       plen=st.sampled_from([0, 32, 33, 128]), mode=st.integers(0, 6),
       flags=st.sampled_from([0, 0, X.XFRM_STATE_AF_UNSPEC, 2, 4, 8, 16, 128, 255]),
       replay_window=st.sampled_from([0, 32, 64]),
       lft=st.sampled_from([(X.XFRM_INF,) * 4 + (0,) * 4, LFT]),
       reqid=st.sampled_from([0, 1]), seq=st.sampled_from([0, 9]),
       algs=st.sampled_from([[AEAD], [AEAD], [CBC], []]),
       attrs=st.lists(st.sampled_from(_ATTRS), max_size=3), twice=st.booleans())
def test_what_the_c_half_builds_the_python_path_builds(fast, monkeypatch, kind, family,
                                                       sel_family, plen, mode, flags,
                                                       replay_window, lft, reqid, seq, algs,
                                                       attrs, twice):
    """Requests near the usual ones (a field or an attribute off, an offload the driver
    refuses, the same SA again): every answer, the dump, every slot, the driver's table."""
    v6 = family == X.AF_INET6
    req = sa(*algs, *attrs, t=kind, family=family, mode=mode, flags=flags, reqid=reqid,
             replay_window=replay_window, lft=lft, seq=seq,
             src="2001:db8::1" if v6 else LOCAL, dst="2001:db8::2" if v6 else PEER,
             sel=selector(plen_d=plen, plen_s=plen, family=sel_family))
    _same(monkeypatch, fast, [req, req] if twice else [req])


def test_a_larval_state_made_in_c_is_the_one_init_makes(fast):
    """_sacons.state(*args), __find_acq_core's xfrm_state_alloc: every slot as
    SecurityAssociation(*args) fills it."""
    k, _s = _kernel()
    db = k.netns("default").xfrm.sad
    args = (db._acq_lft(), StateId(bytes(16), 0, 50), bytes(56), X.AF_INET, bytes(16), 1, 7, 0,
            0, 1234, db)
    a, b = fast.state(*args), SecurityAssociation(*args)
    assert type(a) is SecurityAssociation
    assert _fields(a) == _fields(b)
    assert a.curlft is not b.curlft and a.lft is b.lft and a.net is db
    with pytest.raises(TypeError):
        fast.state(*args[:-1])


@pytest.mark.parametrize("lo, hi", [(0xC0000000, 0xCFFFFFFF), (0x100, 0x103), (0x200, 0x200)])
def test_allocspi_draws_the_spis_randrange_draws(fast, monkeypatch, lo, hi):
    """ALLOCSPI's SPIs from a seeded kernel: the inlined draw gives randrange's sequence
    (the generic path runs for a random source that is not a plain random.Random)."""
    from xfrmd.xfrm import sad

    def spis():
        k, s = _kernel()
        got = []
        for i in range(6):
            info = usersa_info(src=PEER, dst=LOCAL, spi=0, reqid=i, replay_window=0)
            k.deliver(s, msg(M.ALLOCSPI, info + struct.pack("=II", lo, hi),
                             flags=N.NLM_F_REQUEST, seq=i + 1))
            d = k.recv(s)
            t = struct.unpack_from("=H", d, 4)[0]
            got.append(struct.unpack_from(">I", d, 16 + 72)[0] if t == M.NEWSA else
                       ("error", _errno(d)))
        return got

    inlined = spis()
    monkeypatch.setattr(sad, "Random", type("NotRandom", (), {}))
    assert inlined == spis()
    assert len({x for x in inlined if isinstance(x, int)}) == min(6, hi - lo + 1)


def test_charons_requests_carry_the_binding_the_python_path_makes(fast, monkeypatch):
    """The offload binding in C (xfrm_dev_state_add before the driver): charon's two states
    take it, and the device, its direction and type are the Python path's."""
    spy = _same(monkeypatch, fast, [allocspi(), charon_in(), charon_out()])
    built = [x for x in spy.answers if x is not None]
    assert len(built) == 2
    assert [(x.xso.dev.ifindex, x.xso.dir, x.xso.type) for x in built] == [
        (IFINDEX, 1, 2), (IFINDEX, 2, 2)]


@pytest.mark.parametrize("configure", [
    lambda k: kconfig.configure(k, {"XFRM_OFFLOAD": False}),
    lambda k: setattr(k.netns("default").links.by_index(IFINDEX), "xfrmdev_ops", None)],
    ids=["no CONFIG_XFRM_OFFLOAD", "a device without xfrmdev ops"])
def test_an_offload_the_c_binding_does_not_follow_is_pythons(fast, monkeypatch, configure):
    """No CONFIG_XFRM_OFFLOAD (the stub accepts, nothing bound) or a device without ops
    (packet offload: EINVAL): the whole request is the Python path's, the same answers."""
    spy = _same(monkeypatch, fast, [charon_out(), sa(AEAD, OUT, offload(0), replay_window=0,
                                                     src=LOCAL, dst=PEER, spi=0x2000)],
                configure)
    assert spy.answers == [None, None]


@settings(max_examples=200, deadline=None)
@given(d=st.binary(max_size=20), s=st.binary(max_size=20), reqid=st.integers(0, 2**32 - 1),
       family=st.sampled_from([X.AF_INET, X.AF_INET6, 0, 7]))
def test_the_bydst_key_in_c_is_the_python_key(d, s, reqid, family):
    """_sacons.dst_key: addr_key's addresses (4 bytes for AF_INET), each the object
    addrcache holds, as sadb._dst_key_py makes them; anything not bytes: None."""
    fast = sa_verify._sacons
    require(fast is not None, "needs the C extensions (python3 -m xfrmd.cext build)")
    got = fast.dst_key(d, s, reqid, family)
    want = sadb._dst_key_py(d, s, reqid, family)
    assert got == want and got[0] is want[0] and got[1] is want[1]
    assert got[0] is SEEN.get(got[0]) and got[1] is SEEN.get(got[1])
    assert fast.dst_key(bytearray(d), s, reqid, family) is None


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.function_scoped_fixture])
@given(v6=st.booleans(), host=st.integers(1, 250), reqid=st.sampled_from([0, 3]),
       mode=st.sampled_from([0, 1, 4]), lo=st.sampled_from([0, 0x100, 0xC0000000]),
       again=st.booleans())
def test_a_larval_state_made_by_find_acq_in_c_is_pythons(fast, monkeypatch, v6, host, reqid,
                                                       mode, lo, again):
    """ALLOCSPI's larval state (_sacons.larval, the bydst key in C) against find_acq's
    Python: every answer, the dump, every slot, for IPv4 and IPv6, a SPI range that may draw
    0 (ENOENT, the state kept), the same request twice (the larval state found again)."""
    src, dst = (f"2001:db8::{host:x}", "2001:db8::1") if v6 else (f"10.0.0.{host}", LOCAL)
    info = usersa_info(src=src, dst=dst, spi=0, reqid=reqid, replay_window=0, mode=mode)
    req = msg(M.ALLOCSPI, info + struct.pack("=II", lo, lo + 1) + IN, flags=N.NLM_F_REQUEST,
              seq=3)
    _same(monkeypatch, fast, [req, req] if again else [req])
