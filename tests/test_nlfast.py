"""netlink_codec/_nlfast.c against the Python it replaces (the reference): for random and
malformed datagrams, attribute streams and policies, the C functions give the same Header
and RawAttr tuples, the same attribute tables, the same errors (errno, extack text, offset,
policy TLV) and warnings, and the same ACK bytes. Skipped where the extension is not built
(fails in CI); the pure-Python run (``XFRMD_PURE_PYTHON=1``) checks only which path runs."""
from __future__ import annotations

import os
import struct
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netlink_codec import cext
from netlink_codec import netlink as N
from netlink_codec import xfrm as X
from xfrmd.netlink import nlattr as NA
from xfrmd.netlink.nlattr import NlaPolicy
from xfrmd.rtnl import link, netns
from xfrmd.rtnl import policy as rtnl_policy
from xfrmd.xfrm import policy_table

from .conftest import require

C = N._C
SETTINGS = settings(max_examples=400, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


def _need_c() -> None:
    if cext.pure_python():
        pytest.skip("the pure-Python run: no C path to compare")
    require(C is not None, "netlink_codec._nlfast is not built (python3 -m xfrmd.cext build)")


def _outcome(f, *args, **kw):
    """What a call gave: its value, or the class of what it raised."""
    try:
        return ("value", f(*args, **kw))
    except Exception as e:  # noqa: BLE001 - the comparison is the point
        return ("raised", type(e))


def _reply(r):
    return None if r is None else (r.error, r.ext, r.echo)


# ---------------------------------------------------------------------------------------
# data

def _nlmsg(type_: int, flags: int, seq: int, pid: int, payload: bytes, claim: int | None) -> bytes:
    n = N.NLMSG_HDRLEN + len(payload)
    return struct.pack("=IHHII", n if claim is None else claim, type_, flags, seq, pid) + payload


messages = st.builds(_nlmsg, st.integers(0, 0xFFFF), st.integers(0, 0xFFFF),
                     st.integers(0, 0xFFFFFFFF), st.integers(0, 0xFFFFFFFF),
                     st.binary(max_size=40),
                     st.none() | st.integers(0, 0xFFFFFFFF) | st.integers(0, 80))
# a datagram: messages one after another, padded or not, maybe a truncated tail
datagrams = st.builds(lambda ms, pad, tail: b"".join(m + bytes(-len(m) & 3 if pad else 0)
                                                     for m in ms) + tail,
                      st.lists(messages, max_size=4), st.booleans(), st.binary(max_size=20))


def _nla(t: int, payload: bytes, claim: int | None) -> bytes:
    n = 4 + len(payload)
    return struct.pack("=HH", n if claim is None else claim, t) + payload + bytes(-n & 3)


# attribute types mostly in a small range so that policies match them; the two flag bits
attr_types = st.integers(0, 12) | st.integers(0, 0xFFFF) | st.integers(0, 12).map(lambda t: t | 0x8000)
# integers at and around the bounds policies use, for payloads and for the bounds
EDGES = [0, 1, 2, 3, 7, 254, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**64 - 1]
# strings of every length up to 17, with and without their NUL (NLA_STRING's .len bound)
strings = st.builds(lambda k, nul: b"a" * k + (b"\0" if nul else b""), st.integers(0, 17),
                    st.booleans())
payloads = (st.binary(max_size=24) | strings | st.sampled_from([b"", b"\0", bytes(16)])
            | (st.sampled_from(EDGES) | st.integers(0, 2**64 - 1)).flatmap(lambda v: st.sampled_from(
                [v.to_bytes(8, sys.byteorder), (v & 0xFF).to_bytes(1, sys.byteorder),
                 (v & 0xFFFF).to_bytes(2, sys.byteorder), (v & 0xFFFFFFFF).to_bytes(4, sys.byteorder)])))
attrs = st.builds(_nla, attr_types, payloads, st.none() | st.none() | st.integers(0, 0xFFFF))
streams = st.builds(lambda a, tail: b"".join(a) + tail, st.lists(attrs, max_size=8),
                    st.binary(max_size=7))

KINDS = [NA.NLA_UNSPEC, NA.NLA_U8, NA.NLA_U16, NA.NLA_U32, NA.NLA_U64, NA.NLA_STRING,
         NA.NLA_FLAG, NA.NLA_NESTED, NA.NLA_BINARY, NA.NLA_S32, NA.NLA_NUL_STRING]
bounds = st.none() | st.sampled_from(EDGES) | st.integers(-5, 2**64 + 5)
policies = st.dictionaries(st.integers(0, 14),
                           st.builds(NlaPolicy, st.sampled_from(KINDS),
                                     st.sampled_from([0, 0, 1, 2, 3, 4, 8, 16]), bounds, bounds),
                           max_size=10)

# every policy table the families declare (all must compile: the C path runs for each)
REAL_POLICIES = {
    f"{mod.__name__}.{name}": (value, maxtype)
    for mod, maxtypes in ((policy_table, {"XFRMA_POLICY": X.XFRMA_MAX,
                                          "XFRMA_SPD_POLICY": X.XFRMA_SPD_MAX}),
                          (link, {}), (netns, {}), (rtnl_policy, {}))
    for name, value in vars(mod).items()
    if name.endswith("_POLICY") and isinstance(value, dict)
    and all(isinstance(v, NlaPolicy) for v in value.values())
    for maxtype in [maxtypes.get(name, max(value, default=0))]}


# ---------------------------------------------------------------------------------------
# kernel_messages

@SETTINGS
@given(datagrams)
def test_kernel_messages_same_headers(d):
    _need_c()
    want = list(N.kernel_messages_py(d))
    for buf in (d, bytearray(d), memoryview(d)):
        got = C.kernel_messages(buf)
        assert got == want
        assert all(type(h) is N.Header for h in got)


def test_kernel_messages_stops_where_netlink_rcv_skb_stops():
    _need_c()
    ok = N.encode_msg(0x10, N.NLM_F_REQUEST, 1, 0, b"abc")           # 19 bytes, padded to 20
    short = struct.pack("=IHHII", 15, 0x10, 0, 2, 0)                 # nlmsg_len < 16
    assert C.kernel_messages(ok + ok) == [N.Header(19, 0x10, 1, 1, 0, 0),
                                          N.Header(19, 0x10, 1, 1, 0, 20)]
    assert C.kernel_messages(ok + short + ok) == [N.Header(19, 0x10, 1, 1, 0, 0)]
    assert C.kernel_messages(ok[:15]) == []


# ---------------------------------------------------------------------------------------
# kernel_attrs

@SETTINGS
@given(streams, st.binary(max_size=6), st.data())
def test_kernel_attrs_same_walk(stream, prefix, data):
    _need_c()
    buf = prefix + stream
    start = data.draw(st.integers(0, len(buf)))
    end = data.draw(st.integers(start, len(buf)))
    want = N.kernel_attrs_py(buf, start, end)
    got = C.kernel_attrs(buf, start, end)
    assert got == want
    assert all(type(ra) is N.RawAttr for ra in got[0])
    assert C.kernel_attrs(memoryview(buf), start, end) == want


def test_kernel_attrs_never_reads_outside_the_buffer():
    """The Python walk reads what struct allows; C refuses a range outside the buffer."""
    _need_c()
    with pytest.raises(ValueError, match="outside a buffer of 8 bytes"):
        C.kernel_attrs(bytes(8), 0, 12)
    with pytest.raises(ValueError):
        C.kernel_attrs(bytes(8), -1, 8)


# ---------------------------------------------------------------------------------------
# parse_attrs

def _parse_both(buf, start, end, policy, maxtype, hdr_offset, strict):
    kw = dict(hdr_offset=hdr_offset, strict_start_type=strict)
    want = _outcome(NA.parse_attrs_py, buf, start, end, policy, maxtype, **kw)
    got = _outcome(NA.parse_attrs_c, buf, start, end, policy, maxtype, **kw)
    bound = _outcome(NA.attr_parser(policy, maxtype, strict), buf, start, end, hdr_offset)
    if want[0] == "value":
        want = ("value", (want[1][0], _reply(want[1][1]), _reply(want[1][2])))
        for o in (got, bound):
            assert o[0] == "value", o
        got = ("value", (got[1][0], _reply(got[1][1]), _reply(got[1][2])))
        bound = ("value", (bound[1][0], _reply(bound[1][1]), _reply(bound[1][2])))
    assert got == want
    assert bound == want
    return want


@SETTINGS
@given(streams, policies, st.integers(0, 16), st.sampled_from([0, 0, 1, 3, 8]),
       st.integers(0, 64))
def test_parse_attrs_same_table_errors_and_warnings(stream, policy, maxtype, strict, hdr_off):
    _need_c()
    buf = bytes(hdr_off) + stream
    _parse_both(buf, hdr_off, len(buf), policy, maxtype, hdr_off // 2, strict)


WIDTH = {NA.NLA_U8: 1, NA.NLA_U16: 2, NA.NLA_U32: 4, NA.NLA_U64: 8}


@SETTINGS
@given(st.sampled_from(sorted(WIDTH)), st.none() | st.sampled_from(EDGES),
       st.none() | st.sampled_from(EDGES), st.sampled_from(EDGES), st.sampled_from([0, 1, 2, 4, 8]),
       st.booleans(), st.sampled_from([0, 0, 16]))
def test_parse_attrs_ranges_at_their_edges(kind, lo, hi, v, width, strict, plen):
    """Integer attributes at, under and over the bounds (inclusive both ends, validate_nla)."""
    _need_c()
    policy = {3: NlaPolicy(kind, plen, lo, hi)}
    width = width or WIDTH[kind]
    buf = _nla(3, (v & (2 ** (8 * width) - 1)).to_bytes(width, sys.byteorder), None)
    _parse_both(buf, 0, len(buf), policy, 3, 0, 3 if strict else 0)


@SETTINGS
@given(st.sampled_from(sorted(REAL_POLICIES)), st.lists(st.tuples(st.integers(0, 45), payloads),
                                                        max_size=8),
       st.binary(max_size=5), st.sampled_from([0, 1, 33]))
def test_parse_attrs_real_policies(name, items, tail, strict):
    """The families' own tables with random attributes of their types."""
    _need_c()
    policy, maxtype = REAL_POLICIES[name]
    buf = bytes(16) + b"".join(_nla(t, p, None) for t, p in items) + tail
    _parse_both(buf, 16, len(buf), policy, maxtype, 0, strict)


def test_every_family_policy_compiles():
    """A policy C cannot express would quietly take the Python path: none of ours does."""
    _need_c()
    assert len(REAL_POLICIES) >= 10
    for name, (policy, _) in REAL_POLICIES.items():
        assert NA.compile_policy(policy) is not None, name


def test_what_c_cannot_check_is_left_to_python():
    _need_c()
    assert NA.compile_policy({1: NlaPolicy(NA.NLA_S32, min=0)}) is None
    assert NA.compile_policy({1: NlaPolicy(NA.NLA_U32, len=2, max=7)}) is None
    assert NA.compile_policy({1: NlaPolicy(NA.NLA_U8, min=-1)}) is None
    assert NA.compile_policy({1: NlaPolicy(NA.NLA_U32, len=8, max=7)}) is not None


def test_the_first_failure_is_reported_as_the_python_code_says():
    """A u8 out of range after a good attribute, then a second bad one: the error names the
    first (offset from the nlmsghdr, the range in NLMSGERR_ATTR_POLICY) and the table holds
    what came before it."""
    _need_c()
    policy = {1: NlaPolicy(NA.NLA_U32), 2: NlaPolicy(NA.NLA_U8, min=1, max=2)}
    buf = bytes(20) + N.nla_u32(1, 7) + N.nla_u8(2, 9) + N.nla_u8(2, 0)
    tb, err, warn = _parse_both(buf, 20, len(buf), policy, 2, 4, 0)[1]
    assert list(tb) == [1] and warn is None
    assert err[0] == -34 and err[1].msg == "integer out of range" and err[1].offset == 24
    assert err[1].policy == NA.policy_tlv(policy[2])


def test_leftover_bytes_warn():
    _need_c()
    buf = N.nla_u32(1, 7) + b"\x09\x00"
    tb, err, warn = _parse_both(buf, 0, len(buf), {1: NlaPolicy(NA.NLA_U32)}, 1, 0, 0)[1]
    assert err is None and warn[1].msg == "bytes leftover after parsing attributes"


# ---------------------------------------------------------------------------------------
# encode_ack

ext_acks = st.none() | st.builds(
    N.ExtAck, st.none() | st.text(max_size=30), st.none() | st.integers(0, 0xFFFFFFFF),
    st.none() | st.binary(max_size=24).map(lambda b: b[:len(b) & ~3]),
    st.none() | st.binary(max_size=9), st.none() | st.integers(0, 0xFFFFFFFF),
    st.none() | st.integers(0, 0xFFFFFFFF))


@SETTINGS
@given(datagrams, st.sampled_from([0, 0, -1, -22, -34, -95, -(2**31)]),
       st.integers(0, 0xFFFFFFFF), st.booleans(), st.booleans(), ext_acks)
def test_encode_ack_same_bytes(d, error, portid, cap_ack, ext_ack, ext):
    _need_c()
    for hdr in N.kernel_messages_py(d):
        want = N.encode_ack_py(d, hdr, error, portid, cap_ack=cap_ack, ext_ack=ext_ack, ext=ext)
        for buf in (d, bytearray(d), memoryview(d)):
            assert C.encode_ack(buf, hdr, error, portid, cap_ack=cap_ack, ext_ack=ext_ack,
                                ext=ext) == want
        if not ext_ack:
            assert C.encode_ack(d, hdr, error, portid, cap_ack=cap_ack) == want


def test_encode_ack_echo_and_capped():
    """An error on a socket without NETLINK_CAP_ACK echoes the whole request; success or
    CAP_ACK echo only its header and say NLM_F_CAPPED."""
    _need_c()
    req = N.encode_msg(0x10, N.NLM_F_REQUEST | N.NLM_F_ACK, 7, 0, b"payload!")
    hdr = C.kernel_messages(req)[0]
    full = C.encode_ack(req, hdr, -22, 9)
    assert full[20:] == req and struct.unpack_from("=IHHII", full) == (20 + len(req), 2, 0, 7, 9)
    capped = C.encode_ack(req, hdr, -22, 9, cap_ack=True)
    assert capped[20:] == req[:16] and struct.unpack_from("=H", capped, 6)[0] == N.NLM_F_CAPPED
    ok = C.encode_ack(req, hdr, 0, 9)
    assert ok[20:] == req[:16] and struct.unpack_from("=IHHIIi", ok) == (36, 2, N.NLM_F_CAPPED,
                                                                        7, 9, 0)
    with pytest.raises(TypeError):
        C.encode_ack(req, hdr, 0, 9, nonsense=True)


# ---------------------------------------------------------------------------------------
# dump_fill: one dump step's skb fill

class _Boom(Exception):
    pass


def _items(spec):
    """A dump callback's output: messages (bytes), a bytearray, an error object, or raising."""
    for kind, n in spec:
        if kind == "raise":
            raise _Boom(n)
        yield {"bytes": lambda: bytes([n % 256]) * n, "bytearray": lambda: bytearray(n),
               "reply": lambda: ("Reply", n)}[kind]()


def _fill_outcome(fill, spec, parts, used, size):
    it = _items(spec)
    parts = list(parts)
    out = _outcome(fill, it, parts, used, size)
    return out, parts, _outcome(list, it) if out[0] == "value" else None


@SETTINGS
@given(st.lists(st.tuples(st.sampled_from(["bytes"] * 6 + ["bytearray", "reply", "raise"]),
                          st.integers(0, 300)), max_size=30),
       st.lists(st.binary(max_size=40), max_size=2), st.integers(0, 400),
       st.integers(0, 2000))
def test_dump_fill_same_parts_and_stop(spec, parts, used, size):
    """The same messages appended, bytes used, item stopped at, and what the iterator still
    holds (or the same exception) from C and Python."""
    _need_c()
    assert _fill_outcome(C.dump_fill, spec, parts, used, size) == \
        _fill_outcome(N.dump_fill_py, spec, parts, used, size)


def test_dump_fill_stops_at_what_does_not_fit():
    """A step holds what fits; the first message of a step goes in however long it is."""
    _need_c()
    parts: list[bytes] = []
    it = iter([b"a" * 100, b"b" * 100, b"c" * 100])
    assert C.dump_fill(it, parts, 0, 250) == (200, b"c" * 100)
    assert parts == [b"a" * 100, b"b" * 100]
    parts = []
    assert C.dump_fill(iter([b"x" * 50, b"y"]), parts, 0, 10) == (50, b"y")
    assert parts == [b"x" * 50]
    assert C.dump_fill(iter([]), parts, 50, 10) == (50, None)


# ---------------------------------------------------------------------------------------
# which path runs

_WHICH = ("from netlink_codec import netlink as N; from xfrmd.netlink import nlattr as A;"
          "from xfrmd.xfrm import user as U;"
          "print(N.kernel_messages is N.kernel_messages_py, N.encode_ack is N.encode_ack_py,"
          " A.parse_attrs is A.parse_attrs_py, type(U._parse_attrs).__name__,"
          " N.dump_fill is N.dump_fill_py)")


def _which(pure: bool) -> str:
    env = {**os.environ, cext.PURE_ENV: "1" if pure else ""}
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return subprocess.run([sys.executable, "-c", _WHICH], env=env, cwd=root, check=True,
                          capture_output=True, text=True).stdout.split()


def test_pure_python_runs_the_python_versions():
    assert _which(True) == ["True", "True", "True", "function", "True"]


def test_the_built_extension_runs_the_c_versions():
    _need_c()
    assert _which(False) == ["False", "False", "False", "Parser", "False"]
