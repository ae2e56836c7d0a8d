"""xfrmd/xfrm/_safast.c, the C half of NEWSA/UPDSA checking: whatever it accepts, the Python
path (sa_verify.usersa_info + verify_newsa_info) accepts with the same fields; the common
requests of a key manager take it; everything else, every error included, is left to the
Python path, which answers with the kernel's errno and message."""
from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netlink_codec import cext
from netlink_codec import netlink as N
from netlink_codec import xfrm as X
from xfrmd.clock import ManualClock
from xfrmd.errors import KernelError
from xfrmd.kernel import Kernel
from xfrmd.xfrm import sa_verify, sad

from .conftest import require
from .sad_helpers import AEAD, CBC, GCM_KEY, M, algo, algo2, msg, selector, usersa_info

if cext.pure_python():
    pytest.skip("the pure-Python run: nothing to compare", allow_module_level=True)

A = X.Xfrma


def newsa(*attrs: bytes, **info) -> bytes:
    """A NEWSA with these attributes; ``info``: usersa_info's fields (``flags`` the SA's)."""
    return msg(M.NEWSA, usersa_info(**info) + b"".join(attrs))


@pytest.fixture
def fast():
    require(sa_verify._safast is not None, "needs the C extensions (python3 -m xfrmd.cext build)")
    return sa_verify._safast


def _run(fast, monkeypatch, request: bytes) -> tuple[object, object, object]:
    """(what the C half answered, what the Python path answered, what NEWSA was served: each
    a UsersaInfo or the error) for one request delivered to a fresh kernel."""
    seen: list[tuple[object, object, object]] = []

    def spy(req):
        c = fast.newsa_info(req.buf, req.payload_offset, req.attrs, sa_verify.UsersaInfo)
        try:
            p = sa_verify.usersa_info(req.buf, req.payload_offset)
            sa_verify.verify_newsa_info(req, p)
        except KernelError as e:
            py: object = e
        else:
            py = p
        try:
            real: object = sa_verify.checked_newsa_info(req)
        except KernelError as e:
            seen.append((c, py, e))
            raise
        seen.append((c, py, real))
        return real

    monkeypatch.setattr(sad, "checked_newsa_info", spy)
    # the whole construction in C (_sacons, tests/test_sacons.py) would bypass the spy
    monkeypatch.setattr(sa_verify, "_sacons", None)
    k = Kernel(ManualClock(), seed=1)
    s = k.socket(N.NETLINK_XFRM)
    k.bind(s)
    k.deliver(s, request)
    return seen[0] if seen else (None, None, None)


def _agrees(c: object, py: object) -> None:
    if c is not None:
        assert isinstance(py, sa_verify.UsersaInfo), f"C accepted what Python rejects: {py}"
        assert type(c) is sa_verify.UsersaInfo and tuple(c) == tuple(py)


AUTH = N.nla(A.ALG_AUTH, algo("hmac(sha1)", bytes(20)))
AH_TRUNC = N.nla(A.ALG_AUTH_TRUNC, algo2("hmac(sha256)", bytes(32), 128))
COMMON = [
    ("aead tunnel", newsa(AEAD)),
    ("cbc + auth_trunc", newsa(CBC)),
    ("ah", newsa(AUTH, proto=X.IPPROTO_AH)),
    ("v6 transport", newsa(AEAD, src="2001:db8::1", dst="2001:db8::2", mode=X.XFRM_MODE_TRANSPORT)),
    ("out, mark, if_id", newsa(AEAD, N.nla(A.SA_DIR, b"\x02"), N.nla(A.MARK, struct.pack("=II", 1, 3)),
                               N.nla(A.IF_ID, struct.pack("=I", 7)), replay_window=0)),
    ("in, /32 selector", newsa(AEAD, N.nla(A.SA_DIR, b"\x01"),
                               sel=selector("10.0.0.1", "10.0.0.2", 32, 32, X.AF_INET))),
]


@pytest.mark.parametrize("name, request_", COMMON, ids=[c[0] for c in COMMON])
def test_a_key_managers_usual_requests_take_the_c_half(fast, monkeypatch, name, request_):
    c, py, real = _run(fast, monkeypatch, request_)
    assert c is not None, f"{name}: the C half left it to Python"
    _agrees(c, py)
    assert type(real) is sa_verify.UsersaInfo and tuple(real) == tuple(c)


SHORT_AEAD = N.nla(A.ALG_AEAD, algo2("rfc4106(gcm(aes))", GCM_KEY, 128, key_bits=400))
REJECTED = [
    ("bad family", newsa(AEAD, family=7)),
    ("v4 prefix 33", newsa(AEAD, sel=selector(plen_d=33, family=X.AF_INET))),
    ("selector family", newsa(AEAD, sel=selector(family=1))),
    ("esp without algorithm", newsa(N.nla(A.MARK, struct.pack("=II", 1, 1)))),
    ("aead with crypt", newsa(AEAD + CBC)),
    ("ah with aead", newsa(AUTH + AEAD, proto=X.IPPROTO_AH)),
    ("ah without auth", newsa(AEAD, proto=X.IPPROTO_AH)),
    ("aead key longer than attribute", newsa(SHORT_AEAD)),
    ("unknown mode", newsa(AEAD, mode=3)),
    ("iptfs without dir", newsa(AEAD, mode=X.XFRM_MODE_IPTFS)),
    ("esn without attribute", newsa(AEAD, flags=X.XFRM_STATE_ESN, replay_window=0)),
    ("out with replay window", newsa(AEAD, N.nla(A.SA_DIR, b"\x02"), replay_window=32)),
    ("out with icmp flag", newsa(AEAD, N.nla(A.SA_DIR, b"\x02"), replay_window=0,
                                 flags=X.XFRM_STATE_ICMP)),
    ("in with nopmtudisc", newsa(AEAD, N.nla(A.SA_DIR, b"\x01"), flags=X.XFRM_STATE_NOPMTUDISC)),
    ("tfcpad in transport", newsa(AEAD, N.nla(A.TFCPAD, struct.pack("=I", 9)),
                                  mode=X.XFRM_MODE_TRANSPORT)),
    ("pcpu without dir", newsa(AEAD, N.nla(A.SA_PCPU, struct.pack("=I", 0)))),
    ("unsupported protocol", newsa(AEAD, proto=17)),
]


@pytest.mark.parametrize("name, request_", REJECTED, ids=[c[0] for c in REJECTED])
def test_every_error_is_the_python_paths(fast, monkeypatch, name, request_):
    c, py, real = _run(fast, monkeypatch, request_)
    assert isinstance(py, KernelError), f"{name}: the Python path accepts it"
    assert c is None
    # what NEWSA answers is the Python path's error: the kernel's errno and message
    assert isinstance(real, KernelError) and (real.errno, real.msg) == (py.errno, py.msg)


def test_a_buffer_that_is_not_bytes_or_attributes_that_are_not_a_dict_go_to_python(fast):
    info = newsa(AEAD)[16:16 + 224]
    assert fast.newsa_info(bytearray(info), 0, {}, sa_verify.UsersaInfo) is None
    assert fast.newsa_info(info, 0, [], sa_verify.UsersaInfo) is None
    assert fast.newsa_info(info, 1, {}, sa_verify.UsersaInfo) is None       # too short


_ATTRS = [AEAD, CBC, AUTH, AH_TRUNC, SHORT_AEAD,
          N.nla(A.ALG_COMP, algo("deflate", b"")),
          N.nla(A.ALG_CRYPT, algo("cbc(aes)", bytes(16), key_bits=1024)),
          N.nla(A.SA_DIR, b"\x01"), N.nla(A.SA_DIR, b"\x02"),
          N.nla(A.TFCPAD, struct.pack("=I", 9)), N.nla(A.MARK, struct.pack("=II", 1, 3)),
          N.nla(A.IF_ID, struct.pack("=I", 7)), N.nla(A.SA_PCPU, struct.pack("=I", 0)),
          N.nla(A.SA_EXTRA_FLAGS, struct.pack("=I", 3)),
          N.nla(A.REPLAY_VAL, struct.pack("=III", 0, 5, 1)),
          N.nla(A.REPLAY_ESN_VAL, struct.pack("=6I", 0, 0, 0, 0, 0, 0)),
          N.nla(A.MTIMER_THRESH, struct.pack("=I", 5)),
          N.nla(A.IPTFS_PKT_SIZE, struct.pack("=I", 1400)),
          N.nla(A.LTIME_VAL, struct.pack("=4Q", 1, 2, 3, 4)),
          N.nla(A.SEC_CTX, struct.pack("=HHBBH", 8, 0, 1, 1, 0))]


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.function_scoped_fixture])
@given(proto=st.sampled_from([X.IPPROTO_ESP, X.IPPROTO_ESP, X.IPPROTO_AH, X.IPPROTO_COMP, 43, 0]),
       family=st.sampled_from([X.AF_INET, X.AF_INET6, 7]),
       sel_family=st.sampled_from([0, X.AF_INET, X.AF_INET6, 3]),
       plen=st.sampled_from([0, 24, 32, 33, 128, 129]),
       mode=st.integers(0, 6), flags=st.sampled_from([0, 0, 1, 2, 4, 8, 16, 32, 64, 128, 255]),
       replay_window=st.sampled_from([0, 32]),
       algs=st.sampled_from([[AEAD], [CBC], [AUTH], [AH_TRUNC], [SHORT_AEAD], []]),
       attrs=st.lists(st.sampled_from(_ATTRS), max_size=2))
def test_what_the_c_half_accepts_the_python_path_accepts(fast, monkeypatch, proto, family,
                                                         sel_family, plen, mode, flags,
                                                         replay_window, algs, attrs):
    """Requests near the usual ones (an algorithm or two, a field or an attribute off):
    whatever the C half accepts, the Python path accepts with the same fields."""
    req = newsa(*algs, *attrs, proto=proto, family=family, mode=mode, flags=flags,
                replay_window=replay_window,
                sel=selector(plen_d=plen, plen_s=plen, family=sel_family))
    c, py, _real = _run(fast, monkeypatch, req)
    _agrees(c, py)


def _alg_both(fast, monkeypatch, buf, start: int, end: int, head: int):
    """(the C half's reading of the algorithm attribute at start:end, sa_verify._alg's
    Python reading of it)."""
    from types import SimpleNamespace
    ra = N.RawAttr(A.ALG_AEAD, 0, start - 4, start, end)
    req = SimpleNamespace(buf=buf, attrs={A.ALG_AEAD: ra})
    c = fast.alg(buf, ra, head)
    monkeypatch.setattr(sa_verify, "_safast", None)
    try:
        py = sa_verify._alg(req, A.ALG_AEAD, head)     # type: ignore[arg-type]
    finally:
        monkeypatch.undo()
    return c, py


@settings(max_examples=400, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.binary(max_size=70), key_len=st.sampled_from([0, 1, 7, 8, 160, 288, 2**31, 2**32 - 1]),
       second=st.integers(0, 2**32 - 1), key=st.binary(max_size=48),
       cut=st.integers(0, 140), lead=st.integers(0, 8), head=st.sampled_from([68, 72]))
def test_an_algorithm_attribute_reads_the_same_in_c(fast, monkeypatch, name, key_len, second,
                                                    key, cut, lead, head):
    """_safast.alg reads name (to its NUL, at most 63 bytes, latin-1), key length, the
    second field and the key of any attribute, short or truncated ones included, as the
    Python path does (whatever the attach then makes of them)."""
    payload = name.ljust(64, b"\0")[:64] + struct.pack("=II", key_len, second) + key
    payload = payload[:cut] if cut < len(payload) else payload
    buf = bytes(lead) + payload + bytes(3)
    c, py = _alg_both(fast, monkeypatch, buf, lead, lead + len(payload), head)
    assert c == py


def test_an_algorithm_attribute_in_a_buffer_that_is_not_bytes_goes_to_python(fast,
                                                                              monkeypatch):
    """A bytearray (or a range outside the buffer) is the Python path's: None from C, and
    the Python reading is what a request gets."""
    payload = b"rfc4106(gcm(aes))".ljust(64, b"\0") + struct.pack("=II", 160, 128) + bytes(20)
    ra = N.RawAttr(A.ALG_AEAD, 0, 0, 4, 4 + len(payload))
    assert fast.alg(bytearray(4) + payload, ra, 72) is None
    assert fast.alg(bytes(4) + payload[:-1], ra, 72) is None      # end past the buffer
    c, py = _alg_both(fast, monkeypatch, bytes(4) + payload, 4, 4 + len(payload), 72)
    assert c == py == ("rfc4106(gcm(aes))", 160, bytes(20), 128)
