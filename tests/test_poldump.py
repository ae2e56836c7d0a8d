"""xfrmd/xfrm/_poldump.c, the C half of dump_one_policy: for any policy, the NEWPOLICY message
it answers is byte for byte the one the Python method (Policy.dump_message, the reference)
builds -- selectors and templates of both families, lifetimes, use and add times, mark,
if_id, the sub type, several templates -- and whatever it cannot build (an offload binding,
a field out of its C range, another object) comes from the Python method, errors included."""
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
from xfrmd.xfrm import offload, policy, spd
from xfrmd.xfrm.policy import NO_LIMITS, Policy, Template, policy_key

from .conftest import require

U8, U16, U32, U64 = (st.integers(0, 2 ** b - 1) for b in (8, 16, 32, 64))
ADDR = st.one_of(st.binary(min_size=4, max_size=4).map(lambda a: a.ljust(16, b"\0")),
                 st.binary(min_size=16, max_size=16))


@pytest.fixture(scope="module")
def fast():
    if cext.pure_python():
        pytest.skip("the pure-Python run: nothing to compare")
    require(policy._poldump is not None, "needs the C extensions (python3 -m xfrmd.cext build)")
    return policy._poldump


def test_which_builder_runs():
    """XFRMD_PURE_PYTHON=1: the Python method; else the C half when it is built."""
    if cext.pure_python():
        assert policy._poldump is None and policy.dump_message is Policy.dump_message
    else:
        built = cext.find("xfrmd.xfrm._poldump", source("xfrmd.xfrm._poldump"))
        require(built is not None, "needs the C extensions (python3 -m xfrmd.cext build)")
        assert policy._poldump is not None, "built, but setup() refused Policy's slots"
        assert policy.dump_message is policy._poldump.message


def reference(pol: Policy, *args) -> bytes:
    """What the Python method builds, not what an earlier call cached."""
    pol.invalidate()
    return Policy.dump_message(pol, *args)


templates = st.builds(
    Template, daddr=ADDR, spi=U32, proto=st.sampled_from([50, 51, 108, 255]),
    family=st.sampled_from([X.AF_INET, X.AF_INET6, 0]), saddr=ADDR, reqid=U32,
    mode=st.integers(0, 4), share=U8, optional=st.integers(0, 1),
    aalgos=st.one_of(st.just(0xFFFFFFFF), U32), ealgos=st.one_of(st.just(0xFFFFFFFF), U32),
    calgos=st.one_of(st.just(0xFFFFFFFF), U32))


@st.composite
def policies(draw) -> Policy:
    sel = draw(st.binary(min_size=56, max_size=56))
    dir_ = draw(st.integers(0, 2))
    ptype = draw(st.sampled_from([X.XFRM_POLICY_TYPE_MAIN, X.XFRM_POLICY_TYPE_SUB]))
    mark = draw(st.one_of(st.just((0, 0)), st.tuples(U32, U32)))
    if_id = draw(st.one_of(st.just(0), U32))
    lft = draw(st.one_of(st.just(NO_LIMITS), st.tuples(*[U64] * 8)))
    tmpls = draw(st.one_of(st.lists(templates, max_size=6).map(tuple),
                           st.lists(templates, max_size=3)))
    pol = Policy(policy_key(sel, dir_, ptype, if_id, *mark), lft, draw(U32), draw(U32),
                 draw(st.integers(0, 1)), draw(U8), ptype, tmpls, mark, if_id, dir_,
                 draw(st.sampled_from([X.AF_INET, X.AF_INET6, 0])))
    pol.curlft_add, pol.curlft_use = draw(U64), draw(U64)
    return pol


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pol=policies(), seq=U32, portid=U32, flags=st.sampled_from([None, 0, N.NLM_F_MULTI]))
def test_any_policy_same_bytes(fast, pol, seq, portid, flags):
    args = (seq, portid) if flags is None else (seq, portid, flags)
    assert fast.message(pol, *args) == reference(pol, *args)


BAD = [("lft", (2 ** 64,) + NO_LIMITS[1:]), ("lft", (-1,) + NO_LIMITS[1:]),
       ("priority", 2 ** 32), ("index", -1), ("dir", 256), ("flags", "x"),
       ("type", 2), ("mark", (2 ** 32, 0)), ("if_id", 2 ** 32), ("curlft_use", 2 ** 64),
       ("templates", (Template(bytes(16), 2 ** 32, 50, 2, bytes(16), 0, 0),)),
       ("templates", ((1, 2),))]


@pytest.mark.parametrize("field,value", BAD, ids=[f"{f}={v!r}"[:40] for f, v in BAD])
def test_out_of_range_is_the_python_error(fast, field, value):
    """A field the C widths cannot carry: the Python method's exception, not other bytes."""
    pol = Policy(policy_key(bytes(56), 0, 0, 0, 0, 0), NO_LIMITS, 0, 8, 0, 0, 0, (), (0, 0),
                 0, 0, X.AF_INET)
    setattr(pol, field, value)
    with pytest.raises(Exception) as py:
        reference(pol, 1, 2)
    with pytest.raises(type(py.value)):
        fast.message(pol, 1, 2)


def test_unusual_inputs_go_to_python(fast):
    """Odd but valid: a key shorter than a selector (zero-filled), a bool, a template
    address longer than 16 bytes (cut), a header flag beyond u16 (struct's error)."""
    t = Template(bytes(range(20)), 1, 50, 2, b"\x01", 7, 1)
    pol = Policy(b"\x05" * 10, NO_LIMITS, True, 8, 0, 0, 0, (t, t), (1, 0), 3, 1, X.AF_INET)
    assert fast.message(pol, 1, 2, 0) == reference(pol, 1, 2, 0)
    with pytest.raises(struct.error):
        fast.message(pol, 1, 2, 2 ** 16)
    with pytest.raises(AttributeError):          # not a Policy: the method's own error
        fast.message(object(), 1, 2)


def test_offload_binding_is_built_by_python(fast):
    """copy_user_offload stays in Python: a policy bound to a device gets its
    XFRMA_OFFLOAD_DEV from the Python method."""
    class Dev:
        ifindex = 7
    pol = Policy(policy_key(bytes(56), 0, 0, 0, 0, 0), NO_LIMITS, 0, 8, 0, 0, 0, (), (0, 0),
                 0, 0, X.AF_INET)
    pol.xdo = offload.XfrmDevOffload(Dev(), offload.XFRM_DEV_OFFLOAD_OUT,  # type: ignore[arg-type]
                                     offload.XFRM_DEV_OFFLOAD_PACKET)
    out = fast.message(pol, 1, 2)
    assert out == reference(pol, 1, 2)
    assert N.nla(X.Xfrma.OFFLOAD_DEV, struct.pack("=iB3x", 7, X.XFRM_OFFLOAD_PACKET)) in out


def _dump(k, s) -> list[bytes]:
    k.deliver(s, N.encode_msg(X.XfrmMsg.GETPOLICY, N.NLM_F_REQUEST | N.NLM_F_DUMP, 9, 0))
    out = []
    while (d := k.recv(s)) is not None:
        out.append(d)
    return out


def test_dump_through_the_kernel_is_the_python_dump(fast, monkeypatch):
    """`ip xfrm policy list` of policies as `ip` adds them (IPv4 and IPv6, mark, if_id,
    sub type, lifetimes, two templates): the same datagrams from both builders."""
    from tests.differential.test_policy_diff import TMPL1, V6, add, sel, tmpl
    k = Kernel(ManualClock(), seed=1)
    s = k.socket(N.NETLINK_XFRM)
    k.bind(s)
    A = X.Xfrma
    v6 = N.nla(A.TMPL, tmpl("2001:db8::1", "2001:db8::2", family=X.AF_INET6, reqid=3, spi=77))
    reqs = [add(TMPL1, s=sel(dst=f"10.0.{i}.0"), priority=i) for i in range(40)]
    reqs += [add(TMPL1, N.nla(A.MARK, struct.pack("=II", 5, 0xFF)),
                 N.nla(A.IF_ID, struct.pack("=I", 9)), s=sel(dst="10.1.0.0")),
             add(TMPL1, N.nla(A.POLICY_TYPE, struct.pack("=BxHBx", 1, 0, 0)),
                 s=sel(dst="10.2.0.0"), dir=X.XFRM_POLICY_IN),
             add(N.nla(A.TMPL, tmpl() + tmpl(proto=51, optional=1)), s=sel(dst="10.3.0.0"),
                 dir=X.XFRM_POLICY_IN, lft=(1 << 40, 1 << 41, 10, 20, 300, 400, 30, 40)),
             add(v6, s=V6, dir=X.XFRM_POLICY_FWD),
             add(s=sel(dst="10.4.0.0"), action=1)]
    for r in reqs:
        k.deliver(s, r)
        assert struct.unpack_from("=i", k.recv(s), 16) == (0,)     # the ACK: added
    with_c = _dump(k, s)
    monkeypatch.setattr(spd, "dump_message", Policy.dump_message)
    assert _dump(k, s) == with_c
    types = [h.type for d in with_c for h in N.split_messages(d)]
    assert types == [X.XfrmMsg.NEWPOLICY] * len(reqs) + [N.NLMSG_DONE]
