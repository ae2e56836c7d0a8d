"""xfrmd/xfrm/_polfast.c, the C half of NEWPOLICY/UPDPOLICY: whatever it accepts, the Python
path (spd.add_policy: verify_newpolicy_info, validate_tmpl, xfrm_policy_construct) accepts,
with an equal policy; the requests `ip` and charon send take it; everything else, every
error included, is left to the Python path. Each request is served twice, by a kernel with
the C half and by one without, and everything a user can see must be the same: the answers
(errno, extack, echo), the dump of the SPD afterwards, the driver's table."""
from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netlink_codec import cext
from netlink_codec import netlink as N
from netlink_codec import xfrm as X
from xfrmd import kconfig
from xfrmd.clock import ManualClock, SystemClock
from xfrmd.kernel import Kernel
from xfrmd.topology import from_dict
from xfrmd.xfrm import spd
from xfrmd.xfrm.addrcache import SEEN
from xfrmd.xfrm.offload import XfrmDevOffload
from xfrmd.xfrm.policy import Policy, Template
from xfrmd.xfrm.spdb import idx_key

from .conftest import require

if cext.pure_python():
    pytest.skip("the pure-Python run: nothing to compare", allow_module_level=True)

A = X.Xfrma
M = X.XfrmMsg
INF = X.XFRM_INF
ESP = X.IPPROTO_ESP
FLAGS = N.NLM_F_REQUEST | N.NLM_F_ACK
SELECTOR = struct.Struct("=16s16sHHHHHBBB3xiI")
TMPL = struct.Struct("=16s4sB3xH2x16sIBBBxIII")
V4 = (bytes([10, 1, 0, 1]).ljust(16, b"\0"), bytes([10, 2, 0, 1]).ljust(16, b"\0"))
V6 = (bytes.fromhex("20010db8000000000000000000000001"),
      bytes.fromhex("20010db8000000000000000000000002"))
GW = (bytes([192, 0, 2, 1]).ljust(16, b"\0"), bytes([192, 0, 2, 2]).ljust(16, b"\0"))
NO_LIMITS = (INF, INF, INF, INF, 0, 0, 0, 0)
IFINDEX = 2          # the mlx5-like port of _kernel()


@pytest.fixture
def fast():
    require(spd._polfast is not None, "needs the C extensions (python3 -m xfrmd.cext build)")
    return spd._polfast


def info(family: int = X.AF_INET, plen: tuple[int, int] = (32, 32), dir: int = 0,
         action: int = 0, share: int = 0, index: int = 0, priority: int = 0x059A7F,
         lft: tuple[int, ...] = NO_LIMITS, flags: int = 0, proto: int = 0) -> bytes:
    d, s = V6 if family == X.AF_INET6 else V4
    sel = SELECTOR.pack(d, s, 0, 0, 0, 0, family, plen[0], plen[1], proto, 0, 0)
    return sel + struct.pack("=8Q4QIIBBBB4x", *lft, 0, 0, 0, 0, priority, index, dir, action,
                             flags, share)


def tmpl(family: int = X.AF_INET, mode: int = X.XFRM_MODE_TUNNEL, proto: int = ESP,
         optional: int = 0, reqid: int = 1, spi: int = 0, aalgos: int = 0xFFFFFFFF) -> bytes:
    d, s = GW
    return TMPL.pack(d, struct.pack(">I", spi), proto, family, s, reqid, mode, 0, optional,
                     aalgos, 0xFFFFFFFF, 7)


def offload(ifindex: int = IFINDEX, flags: int = X.XFRM_OFFLOAD_PACKET) -> bytes:
    return N.nla(A.OFFLOAD_DEV, struct.pack("=iI", ifindex, flags))


def newpolicy(body: bytes, *attrs: bytes, kind: int = M.NEWPOLICY, seq: int = 7) -> bytes:
    return N.encode_msg(kind, FLAGS, seq, 0, body + b"".join(attrs))


def _kernel(clock=None, **options) -> tuple[Kernel, object]:
    topo = from_dict({"netns": [{"name": "default", "device": [
        {"name": "p0", "kind": "mlx5", "addresses": ["192.0.2.2/24"]}]}]})
    k = Kernel(clock or ManualClock(), topology=topo, seed=1)
    if options:
        kconfig.configure(k, options)
    s = k.socket(N.NETLINK_XFRM)
    k.bind(s)
    return k, s


class _Spy:
    """Stands in for the C module: records what it answered (or answers None: Python)."""

    def __init__(self, real: object | None):
        self.real = real
        self.answers: list[object] = []

    def newpolicy(self, buf, off, attrs, ns):
        got = None if self.real is None else self.real.newpolicy(buf, off, attrs, ns)
        self.answers.append(got)
        return got


def _serve(monkeypatch, fast, requests: list[bytes],
           **options) -> tuple[list[bytes], list[bytes], list, _Spy]:
    """(the answers, the dump afterwards, the policies, what the C half answered). Without
    the C half, its insert is Python's too."""
    spy = _Spy(fast)
    with monkeypatch.context() as m:
        m.setattr(spd, "_newpolicy", spy.newpolicy)
        if fast is None:
            m.setattr(spd, "_insert", lambda db, pol: None)
        k, s = _kernel(**options)
        answers = []
        for r in requests:
            k.deliver(s, r)
            while (d := k.recv(s)) is not None:
                answers.append(d)
    k.deliver(s, N.encode_msg(M.GETPOLICY, N.NLM_F_REQUEST | N.NLM_F_DUMP, 99, 0, bytes(64)))
    dump = []
    while (d := k.recv(s)) is not None:
        dump.append(d)
    db = k.netns("default").xfrm.spd
    pols = list(db.all.values())
    # what GETSPDINFO reports and the next index depends on
    assert not hasattr(spy, "tables")
    spy.tables = (list(db.xnet.spd_counts), list(db.bydst_hmask), db.xnet.policy_idx_hmask,
                  db.idx_generator, list(db.by_selector.items()), list(db.byidx.items()))
    return answers, dump, pols, spy


def _fields(pol: Policy) -> dict:
    slots = [f for c in type(pol).__mro__ for f in getattr(c, "__slots__", ())]   # bases' too
    return {f: getattr(pol, f) for f in slots if f not in ("timer",)}


def _tables(spy: _Spy) -> tuple:
    """The SPD's tables with each policy as its index (the objects differ between runs)."""
    counts, hmask, idx_hmask, gen, by_sel, by_idx = spy.tables
    assert all(k == idx_key(p.index) for k, p in by_idx)   # the by-index table's key
    return (counts, hmask, idx_hmask, gen, [(k, p.index) for k, p in by_sel],
            [(i, p.index, p.key) for i, p in by_idx])


def _xdo(x) -> dict | None:
    """An offload binding's slots, the device as its ifindex."""
    if x is None:
        return None
    return {f: (getattr(x, f).ifindex if f in ("dev", "real_dev") else getattr(x, f))
            for f in XfrmDevOffload.__slots__}


def _same(monkeypatch, fast, requests: list[bytes], **options) -> _Spy:
    """Serve ``requests`` with and without the C half: everything seen is the same."""
    c_answers, c_dump, c_pols, spy = _serve(monkeypatch, fast, requests, **options)
    py_answers, py_dump, py_pols, py_spy = _serve(monkeypatch, None, requests, **options)
    assert c_answers == py_answers
    assert c_dump == py_dump
    assert _tables(spy) == _tables(py_spy)
    assert len(c_pols) == len(py_pols)
    for a, b in zip(c_pols, py_pols):
        fa, fb = _fields(a), _fields(b)
        xa, xb = fa.pop("xdo"), fb.pop("xdo")
        assert fa == fb
        assert _xdo(xa) == _xdo(xb)
        assert all(type(t) is Template for t in a.templates)
    # the C half's answers: accepted ones are what the Python path made
    for pol in spy.answers:
        if pol is not None:
            assert type(pol) is Policy and type(pol.templates) is tuple
            assert all(t.daddr is SEEN.get(t.daddr) and t.saddr is SEEN.get(t.saddr)
                       for t in pol.templates)
    return spy


def _errno(ack: bytes) -> int:
    return struct.unpack_from("=i", ack, 16)[0]


COMMON = [
    ("ip: one template", [newpolicy(info(), N.nla(A.TMPL, tmpl()))]),
    ("charon in, offloaded", [newpolicy(info(dir=0), N.nla(A.TMPL, tmpl()), offload())]),
    ("charon out, offloaded", [newpolicy(info(dir=1), N.nla(A.TMPL, tmpl(spi=0xC2000001)),
                                         offload())]),
    ("fwd", [newpolicy(info(dir=2), N.nla(A.TMPL, tmpl()))]),
    ("no template", [newpolicy(info(action=1))]),
    ("v6, transport, two templates", [newpolicy(info(family=X.AF_INET6, plen=(128, 64)), N.nla(
        A.TMPL, tmpl(X.AF_INET6, X.XFRM_MODE_TRANSPORT) + tmpl(X.AF_INET6, 0, X.IPPROTO_AH)))]),
    ("lifetimes, index", [newpolicy(info(lft=(1, 2, 3, 4, 5, 6, 7, 8), index=0x11, dir=1),
                                    N.nla(A.TMPL, tmpl()))]),
    ("updpolicy", [newpolicy(info(), N.nla(A.TMPL, tmpl()), kind=M.UPDPOLICY),
                   newpolicy(info(priority=3), N.nla(A.TMPL, tmpl(reqid=9)), kind=M.UPDPOLICY)]),
]


@pytest.mark.parametrize("name, requests", COMMON, ids=[c[0] for c in COMMON])
def test_ip_and_charons_requests_take_the_c_half(fast, monkeypatch, name, requests):
    spy = _same(monkeypatch, fast, requests)
    assert spy.answers and all(a is not None for a in spy.answers), \
        f"{name}: the C half left it to Python"


def test_an_existing_policy_is_eexist_and_its_offload_is_given_back(fast, monkeypatch):
    req = newpolicy(info(dir=1), N.nla(A.TMPL, tmpl()), offload())
    _same(monkeypatch, fast, [req, req])
    answers, _dump, pols, spy = _serve(monkeypatch, fast, [req, req])
    assert [_errno(a) for a in answers] == [0, -17]
    assert all(a is not None for a in spy.answers)
    drv = pols[0].xdo.dev.xfrmdev_ops
    assert list(drv.policies.values()) == pols      # the refused one's was released


REJECTED = [
    ("bad share", [newpolicy(info(share=4), N.nla(A.TMPL, tmpl()))]),
    ("bad action", [newpolicy(info(action=2), N.nla(A.TMPL, tmpl()))]),
    ("v4 prefix 33", [newpolicy(info(plen=(33, 32)), N.nla(A.TMPL, tmpl()))]),
    ("selector family", [newpolicy(info(family=7), N.nla(A.TMPL, tmpl()))]),
    ("direction 3", [newpolicy(info(dir=3), N.nla(A.TMPL, tmpl()))]),
    ("index of another direction", [newpolicy(info(index=0x11), N.nla(A.TMPL, tmpl()))]),
    ("seven templates", [newpolicy(info(), N.nla(A.TMPL, tmpl() * 7))]),
    ("template family 0 then an error", [newpolicy(info(), N.nla(
        A.TMPL, tmpl(0) + tmpl(X.AF_INET, X.XFRM_MODE_TRANSPORT, proto=17)))]),
    ("template family 0, then EEXIST", [newpolicy(info(), N.nla(A.TMPL, tmpl(0)))] * 2),
    ("optional tunnel out", [newpolicy(info(dir=1), N.nla(A.TMPL, tmpl(optional=1)))]),
    ("family change in transport", [newpolicy(info(), N.nla(
        A.TMPL, tmpl(X.AF_INET6, X.XFRM_MODE_TRANSPORT)))]),
    ("mode 6", [newpolicy(info(), N.nla(A.TMPL, tmpl(mode=6)))]),
    ("template protocol", [newpolicy(info(), N.nla(A.TMPL, tmpl(proto=17)))]),
    ("offload of a forward policy", [newpolicy(info(dir=2), N.nla(A.TMPL, tmpl()), offload())]),
    ("offload to no device", [newpolicy(info(), N.nla(A.TMPL, tmpl()), offload(ifindex=99))]),
    ("crypto offload of a policy", [newpolicy(info(), N.nla(A.TMPL, tmpl()), offload(flags=0))]),
    ("mark", [newpolicy(info(), N.nla(A.TMPL, tmpl()), N.nla(A.MARK, struct.pack("=II", 5, 1)))]),
    ("sub policy", [newpolicy(info(), N.nla(A.TMPL, tmpl()),
                              N.nla(A.POLICY_TYPE, struct.pack("=BxHBx", 1, 0, 0)))]),
]


@pytest.mark.parametrize("name, requests", REJECTED, ids=[c[0] for c in REJECTED])
def test_every_error_and_every_uncommon_request_is_the_python_paths(fast, monkeypatch, name,
                                                                    requests):
    spy = _same(monkeypatch, fast, requests)
    if name.startswith(("offload of", "offload to", "crypto")):
        return          # the C half takes these: the driver's refusal is the Python code's
    assert all(a is None for a in spy.answers), f"{name}: the C half took it"


def test_a_buffer_that_is_not_bytes_or_attributes_that_are_not_a_dict_go_to_python(fast):
    body = info()
    assert fast.newpolicy(bytearray(body), 0, {}, None) is None
    assert fast.newpolicy(body, 0, [], None) is None
    assert fast.newpolicy(body, 1, {}, None) is None          # too short
    assert fast.newpolicy(body, 0, {}, None) is not None


_EXTRA = [N.nla(A.MARK, struct.pack("=II", 1, 3)), N.nla(A.IF_ID, struct.pack("=I", 7)),
          N.nla(A.POLICY_TYPE, struct.pack("=BxHBx", 1, 0, 0)),
          N.nla(A.SEC_CTX, struct.pack("=HHBBH", 8, 0, 1, 1, 0)), offload(),
          offload(flags=X.XFRM_OFFLOAD_PACKET | X.XFRM_OFFLOAD_INBOUND), offload(ifindex=1),
          N.nla(A.OFFLOAD_DEV, b"\x02\x00"), N.nla(A.SA_DIR, b"\x01")]
_TMPL = st.builds(tmpl, family=st.sampled_from([X.AF_INET, X.AF_INET, X.AF_INET6, 0, 3]),
                  mode=st.integers(0, 6), proto=st.sampled_from([ESP, ESP, 51, 108, 43, 60, 0, 17]),
                  optional=st.integers(0, 1), reqid=st.sampled_from([0, 1]),
                  aalgos=st.sampled_from([0xFFFFFFFF, 3]))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.function_scoped_fixture])
@given(family=st.sampled_from([X.AF_INET, X.AF_INET6, 0, 7]),
       plen=st.sampled_from([(0, 0), (32, 32), (33, 0), (128, 128), (0, 129)]),
       dir=st.integers(0, 3), action=st.integers(0, 2), share=st.sampled_from([0, 3, 4]),
       index=st.sampled_from([0, 0, 8, 9, 0x12]), lft=st.sampled_from([NO_LIMITS, (1,) * 8]),
       proto=st.sampled_from([0, 6, 50]),
       tmpls=st.none() | st.lists(_TMPL, max_size=7),
       tail=st.sampled_from([0, 0, 5]), extra=st.lists(st.sampled_from(_EXTRA), max_size=2),
       kind=st.sampled_from([M.NEWPOLICY, M.UPDPOLICY]), twice=st.booleans())
def test_what_the_c_half_accepts_the_python_path_accepts(fast, monkeypatch, family, plen, dir,
                                                         action, share, index, lft, proto,
                                                         tmpls, tail, extra, kind, twice):
    """Requests near the usual ones (a field, a template or an attribute off): the C half
    and the Python path answer the same and leave the same SPD."""
    attrs = list(extra)
    if tmpls is not None:
        attrs.insert(0, N.nla(A.TMPL, b"".join(tmpls) + bytes(tail)))
    req = newpolicy(info(family, plen, dir, action, share, index, lft=lft, proto=proto),
                    *attrs, kind=kind)
    _same(monkeypatch, fast, [req, req] if twice else [req])


def _setup(fast, cls) -> bool:
    from xfrmd.xfrm import policy
    from xfrmd.xfrm.addrcache import shared
    return fast.setup(cls, Template, policy.NO_LIMITS, spd._NO_MARK, policy._ANY, SEEN, shared)


class _Computed:
    """An __init__ that does more than store its arguments and constants."""
    __slots__ = ("args", "seen")

    def __init__(self, *args):
        self.args = args
        self.seen: list = []


class _Stores:
    __slots__ = ("key", "dir", "dead", "unset")

    def __init__(self, key, lft, priority, index, action, flags, ptype, templates, mark, if_id,
                 dir, family):
        self.key, self.dir, self.dead = key, dir, False


def test_policies_are_made_as_policy_init_makes_them_else_by_calling_it(fast):
    assert spd._NO_INIT_FRAME, "the server's policies go through Policy.__init__"
    body = info(dir=1)
    try:
        assert _setup(fast, _Computed) is False
        a, b = fast.newpolicy(body, 0, {}, None), fast.newpolicy(body, 0, {}, None)
        assert type(a) is _Computed and a.seen == [] and a.seen is not b.seen
        assert a.args[0] == body[:56] + bytes([1]) + bytes(13) and a.args[10] == 1
        assert _setup(fast, _Stores) is True
        c = fast.newpolicy(body, 0, {}, None)
        assert (c.key, c.dir, c.dead) == (a.args[0], 1, False)
        assert not hasattr(c, "unset")
    finally:
        assert _setup(fast, Policy) is True


# -- xfrm_policy_insert's common case in C (_polfast.insert) ----------------------------------

def _policy_at(i: int, dir: int, index: int = 0, lft: tuple[int, ...] = NO_LIMITS,
               kind: int = M.NEWPOLICY, off: bool = False) -> bytes:
    """A policy whose selector is the i-th /32 source (distinct selectors for distinct i)."""
    body = bytearray(info(dir=dir, index=index, lft=lft))
    body[16:20] = bytes([10, 9, i >> 8, i & 255])
    attrs = [N.nla(A.TMPL, tmpl())] + ([offload()] if off else [])
    return newpolicy(bytes(body), *attrs, kind=kind)


def test_a_direction_past_its_bydst_mask_is_resized_as_the_python_insert_resizes_it(fast,
                                                                                 monkeypatch):
    """The ninth policy of a direction is the Python insert's (xfrm_bydst_should_resize);
    the others are linked in C with the indexes xfrm_gen_index gives."""
    reqs = [_policy_at(i, 1) for i in range(20)] + [_policy_at(100 + i, 0) for i in range(3)]
    spy = _same(monkeypatch, fast, reqs)
    counts, hmask, *_ = spy.tables
    assert counts[:2] == [3, 20] and hmask[1] == 31 and hmask[0] == 7


def test_a_taken_user_index_gets_the_generators_as_in_python(fast, monkeypatch):
    """xfrm_gen_index: the user's index when free, else the generator's; an index of 0
    becomes 8."""
    reqs = [_policy_at(1, 1, index=0x11), _policy_at(2, 1, index=0x11), _policy_at(3, 0),
            _policy_at(4, 0, index=8), _policy_at(5, 0)]
    spy = _same(monkeypatch, fast, reqs)
    assert [i for _k, i, _s in _tables(spy)[5]] == [0x11, 1, 8, 0x10, 0x18]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.function_scoped_fixture])
@given(reqs=st.lists(st.tuples(st.integers(0, 11), st.integers(0, 2),
                               st.sampled_from([0, 0, 0, 0x10, 0x11, 0x1A, 0x22]),
                               st.sampled_from([NO_LIMITS, NO_LIMITS, (1,) * 8]),
                               st.sampled_from([M.NEWPOLICY, M.NEWPOLICY, M.UPDPOLICY]),
                               st.booleans()), min_size=1, max_size=24))
def test_what_the_c_insert_links_the_python_insert_links(fast, monkeypatch, reqs):
    """Sequences of adds and updates over a few selectors, with user indexes (free, taken,
    of another direction), lifetimes, offloads and enough policies of one direction to
    resize it: the same answers, policies and tables."""
    requests = []
    for i, dir, index, lft, kind, off in reqs:
        if index and index & 7 != dir:
            index = (index & ~7) | dir
        requests.append(_policy_at(i, dir, index, lft, kind, off))
    _same(monkeypatch, fast, requests)


def test_the_c_insert_leaves_what_it_does_not_know_to_python(fast):
    """insert() returns None and changes nothing for a policy it did not make, one with a
    mark or a lifetime, an SPD whose tables are not the ones it knows."""
    k, _s = _kernel()
    db = k.netns("default").xfrm.spd
    body = info(dir=1)
    pol = fast.newpolicy(body, 0, {}, None)
    other = fast.newpolicy(info(dir=1, lft=(1,) * 8), 0, {}, None)
    marked = fast.newpolicy(info(dir=0), 0, {}, None)
    marked.mark = (1, 1)
    before = (dict(db.by_selector), dict(db.byidx), list(db.xnet.spd_counts))
    assert fast.insert(db, object()) is None
    assert fast.insert(db, other) is None and fast.insert(db, marked) is None
    assert (dict(db.by_selector), dict(db.byidx), list(db.xnet.spd_counts)) == before
    assert fast.insert(db, pol) == 0
    assert db.by_selector[pol.key] is pol and db.byidx[idx_key(pol.index)] is pol
    assert fast.insert(db, fast.newpolicy(body, 0, {}, None)) is None   # EEXIST: Python's
    assert len(db.byidx) == 1


def test_offloads_the_config_or_the_device_refuses_are_the_python_paths(fast, monkeypatch):
    """XFRM_OFFLOAD off (accepted, not offloaded), a device without policy offload, a
    FWD policy the driver refuses: the same answers and SPD either way."""
    reqs = [_policy_at(1, 1, off=True), _policy_at(2, 0, off=True), _policy_at(3, 2, off=True)]
    spy = _same(monkeypatch, fast, reqs, XFRM_OFFLOAD=False)
    assert spy.answers == [None] * 3
    spy = _same(monkeypatch, fast, reqs)
    assert all(a is not None for a in spy.answers)         # the driver refuses FWD itself


def test_a_listener_of_the_policy_group_hears_the_c_halfs_policies(fast):
    k, s = _kernel()
    lis = k.socket(N.NETLINK_XFRM)
    k.bind(lis, groups=1 << (X.XfrmNlGrp.POLICY - 1))
    k.deliver(s, _policy_at(1, 1, off=True))
    assert _errno(k.recv(s)) == 0
    note = k.recv(lis)
    assert note is not None and struct.unpack_from("=H", note, 4)[0] == M.NEWPOLICY
    assert k.recv(lis) is None


# -- the server's clock read in C (_polfast.wall) ----------------------------------------------

def test_the_system_clocks_wall_is_read_as_its_python_reads_it(fast):
    """The same seconds, the same shared int object, after an advance too; any other clock
    (a ManualClock, a subclass) is asked."""
    assert spd._WALL_IN_C
    c = SystemClock()
    for step in (0.0, 3600.25, 0.5, 86400 * 365.0):
        c.advance(step)
        a = fast.wall(c)
        assert a == c.wall() and a is c.wall() and a is c._last_wall
    m = ManualClock(wall_start=1_234)
    m.advance(7.9)
    assert fast.wall(m) == 1_241

    class Later(SystemClock):
        def wall(self) -> int:
            return 5
    assert fast.wall(Later()) == 5


def test_policies_added_under_the_system_clock_carry_its_add_time(fast, monkeypatch):
    clock = SystemClock()
    clock.advance(-1_000_000.0)
    k, s = _kernel(clock)
    k.deliver(s, _policy_at(1, 1))
    assert _errno(k.recv(s)) == 0
    pol = next(iter(k.netns("default").xfrm.spd.all.values()))
    assert pol.curlft_add == clock.wall() and pol.curlft_add is clock._last_wall


def test_a_deleted_policys_index_is_taken_over_as_in_python(fast, monkeypatch):
    """A DELPOLICY leaves the policy's by-index entry, dead, until its grace period ends:
    xfrm_gen_index takes a dead entry's index (the user's, or the generator's) as free."""
    def delete(i: int, dir: int) -> bytes:
        sel = _policy_at(i, dir)[16:16 + 56]
        return N.encode_msg(M.DELPOLICY, FLAGS, 7, 0, sel + struct.pack("=IB3x", 0, dir))
    reqs = [_policy_at(1, 1), _policy_at(2, 1), delete(1, 1), _policy_at(3, 1, index=1),
            delete(2, 1), _policy_at(4, 1), _policy_at(5, 1, index=9)]
    spy = _same(monkeypatch, fast, reqs)
    assert [i for _k, i, _s in _tables(spy)[5]] == [1, 9, 0x11]


@given(st.binary(min_size=56, max_size=56), st.integers(0, 255))
def test_ahead_makes_the_key_of_a_request_without_attributes(sel, dir):
    """_polfast.ahead's key is policy_key(sel, dir, MAIN, 0, 0, 0), whatever the table."""
    from xfrmd.xfrm.policy import policy_key
    require(spd._polfast is not None, "needs the C extensions (python3 -m xfrmd.cext build)")
    fast = spd._polfast
    want = policy_key(sel, dir, X.XFRM_POLICY_TYPE_MAIN, 0, 0, 0)
    big = {i.to_bytes(2, "little") * 35: i for i in range(3000)}
    for table in ({}, {want: 1}, {i: i for i in range(300)}, big):
        key = fast.ahead(table, sel, dir)
        assert key == want and hash(key) == hash(want)
        assert fast.ahead_entry(table, key) is None
    assert fast.ahead({}, sel[:55], dir) is None and fast.ahead({}, sel, 256) is None


def test_a_lookup_by_selector_with_attributes_takes_the_python_key():
    """A GETPOLICY with a mark finds the marked policy, not the unmarked one ahead's key
    names (the key made ahead is used only for a request without attributes)."""
    k, s = _kernel()
    mark = N.nla(A.MARK, struct.pack("=II", 5, 0xF))
    plain = newpolicy(info(dir=1, priority=1), N.nla(A.TMPL, tmpl()))
    marked = newpolicy(info(dir=1, priority=9), N.nla(A.TMPL, tmpl()), mark)
    for r in (plain, marked):
        k.deliver(s, r)
        assert struct.unpack_from("=i", k.recv(s), 16)[0] == 0
    sel = info(dir=1)[:56]
    for attrs, prio in ((b"", 1), (mark, 9)):
        body = sel + struct.pack("=IB3x", 0, 1) + attrs
        k.deliver(s, N.encode_msg(M.GETPOLICY, N.NLM_F_REQUEST, 1, 0, body))
        got = k.recv(s)
        assert struct.unpack_from("=H", got, 4)[0] == M.NEWPOLICY
        assert struct.unpack_from("=I", got, 16 + 152)[0] == prio
