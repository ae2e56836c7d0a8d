"""The SAD through the sans-IO kernel: add/get/update/delete/flush/dump, ALLOCSPI, validation
errors with the kernel's errno and extack text (xfrm_user.c verify_newsa_info and friends)."""
import errno as E
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netlink_codec import netlink as N
from netlink_codec import xfrm as X

from .sad_helpers import (AEAD, CBC, GCM_KEY, REQ_ACK, A, M, Nl, algo, algo2, attr_types,
                          attrs_of, messages, msg, newsa, selector, usersa_id, usersa_info)


@pytest.fixture
def nl(kernel):
    return Nl(kernel)


def dump(nl, payload=b"", flags=N.NLM_F_REQUEST | N.NLM_F_DUMP):
    msgs = [m for d in nl.send(msg(M.GETSA, payload, flags, seq=7)) for m in messages(d)]
    assert msgs[-1][0] == N.NLMSG_DONE
    return msgs[:-1], struct.unpack_from("=i", msgs[-1][4], 16)[0]


def getsa(nl, **kw):
    out = [m for d in nl.send(msg(M.GETSA, usersa_id(**kw), N.NLM_F_REQUEST, seq=9))
           for m in messages(d)]
    return out[0]


# -- add / get / dump -----------------------------------------------------------------------

def test_add_then_get_returns_kernel_layout(nl, kernel):
    nl.ok(newsa(AEAD, spi=0x1234, reqid=7))
    t, flags, seq, pid, raw = getsa(nl, spi=0x1234)
    assert (t, flags, seq, pid) == (M.NEWSA, 0, 9, nl.s.portid)
    info = X.XfrmUsersaInfo.decode(raw, 16)
    assert info.id.spi == 0x1234 and info.reqid == 7 and info.family == X.AF_INET
    assert info.sel.family == X.AF_INET          # filled from the SA family
    assert info.curlft.add_time == kernel.clock.wall()
    # copy_to_user_state_extra order: AEAD then REPLAY_VAL (always present)
    assert attr_types(raw, 224) == [A.ALG_AEAD, A.REPLAY_VAL]
    aead = attrs_of(raw, 224)[A.ALG_AEAD]
    assert aead[:17] == b"rfc4106(gcm(aes))" and aead[72:] == GCM_KEY
    assert struct.unpack_from("=II", aead, 64) == (160, 128)


def test_auth_is_echoed_as_auth_and_auth_trunc_with_default_truncation(nl):
    nl.ok(newsa(N.nla(A.ALG_CRYPT, algo("aes", bytes(16))),
                N.nla(A.ALG_AUTH, algo("sha1", bytes(20)))))
    raw = getsa(nl)[4]
    assert attr_types(raw, 224) == [A.ALG_AUTH, A.ALG_AUTH_TRUNC, A.ALG_CRYPT, A.REPLAY_VAL]
    at = attrs_of(raw, 224)
    assert at[A.ALG_AUTH][:10] == b"hmac(sha1)"        # canonical name, not the alias
    assert struct.unpack_from("=II", at[A.ALG_AUTH_TRUNC], 64) == (160, 96)
    assert at[A.ALG_CRYPT][:8] == b"cbc(aes)"


def test_optional_attributes_in_kernel_order(nl):
    nl.ok(newsa(AEAD, N.nla_u32(A.SA_EXTRA_FLAGS, 1), N.nla(A.MARK, struct.pack("=II", 0x15, 0xff)),
                N.nla_u32(A.SET_MARK, 3), N.nla_u32(A.IF_ID, 9), N.nla_u32(A.TFCPAD, 100),
                N.nla_u8(A.SA_DIR, X.XFRM_SA_DIR_OUT), replay_window=0))
    get = msg(M.GETSA, usersa_id() + N.nla(A.MARK, struct.pack("=II", 0x15, 0xff)), N.NLM_F_REQUEST)
    raw = [m for d in nl.send(get) for m in messages(d)][0][4]
    assert attr_types(raw, 224) == [A.SA_EXTRA_FLAGS, A.ALG_AEAD, A.TFCPAD, A.MARK, A.SET_MARK,
                                    A.SET_MARK_MASK, A.REPLAY_VAL, A.IF_ID, A.SA_DIR]
    at = attrs_of(raw, 224)
    assert at[A.SET_MARK_MASK] == b"\xff\xff\xff\xff"  # default mask
    assert at[A.MARK] == struct.pack("=II", 0x15, 0xff)


def test_mark_is_sanitized_and_lookup_uses_mask(nl):
    nl.ok(newsa(AEAD, N.nla(A.MARK, struct.pack("=II", 0x1ff, 0xf0))))
    assert nl.errno_of(msg(M.GETSA, usersa_id()))[0] == -E.ESRCH   # mark 0 & 0xf0 != 0xf0
    raw = [m for d in nl.send(msg(M.GETSA, usersa_id() + N.nla(A.MARK, struct.pack("=II", 0xf3, 0xffffffff)),
                                  N.NLM_F_REQUEST)) for m in messages(d)][0][4]
    assert attrs_of(raw, 224)[A.MARK] == struct.pack("=II", 0xf0, 0xf0)


def test_duplicate_is_eexist_and_mark_rules_decide_collisions(nl):
    marked = N.nla(A.MARK, struct.pack("=II", 1, 1))
    nl.ok(newsa(AEAD, marked))
    assert nl.errno_of(newsa(AEAD, marked)) == (-E.EEXIST, None)
    nl.ok(newsa())                       # mark 0 does not match (v 1, m 1)
    assert nl.errno_of(newsa()) == (-E.EEXIST, None)
    # and a marked SA now collides with the mark-less one ((1 & 0) == 0)
    other = N.nla(A.MARK, struct.pack("=II", 2, 2))
    assert nl.errno_of(newsa(AEAD, other)) == (-E.EEXIST, None)


def test_ipv6_sa_and_dump_is_newest_first(nl):
    nl.ok(newsa(spi=1))
    nl.ok(newsa(src="2001:db8::1", dst="2001:db8::2", spi=2))
    nl.ok(newsa(spi=3, proto=X.IPPROTO_AH, *[N.nla(A.ALG_AUTH, algo("hmac(sha256)", bytes(32)))]))
    msgs, err = dump(nl)
    assert err == 0
    spis = [X.XfrmUsersaInfo.decode(m[4], 16).id.spi for m in msgs]
    assert spis == [3, 2, 1]
    assert all(m[1] == N.NLM_F_MULTI and m[2] == 7 for m in msgs)


def test_dump_filters_by_proto_and_address(nl):
    nl.ok(newsa(spi=1, dst="198.51.100.1"))
    nl.ok(newsa(spi=2, dst="203.0.113.9"))
    nl.ok(newsa(spi=3, proto=X.IPPROTO_AH, *[N.nla(A.ALG_AUTH, algo("hmac(sha1)", bytes(20)))]))
    flt = struct.pack("=16s16sHBB", bytes(16), bytes([203, 0, 113, 0]).ljust(16, b"\0"), X.AF_INET, 0, 24)
    msgs, _ = dump(nl, N.nla(A.ADDRESS_FILTER, flt))
    assert [X.XfrmUsersaInfo.decode(m[4], 16).id.spi for m in msgs] == [2]
    msgs, _ = dump(nl, N.nla_u8(A.PROTO, X.IPPROTO_AH))
    assert [X.XfrmUsersaInfo.decode(m[4], 16).id.spi for m in msgs] == [3]
    msgs, _ = dump(nl, N.nla(A.ADDRESS_FILTER, bytes(36)))   # what iproute2 sends
    assert len(msgs) == 3


def test_dump_with_bad_prefix_ends_with_done_einval(nl):
    nl.ok(newsa())
    flt = struct.pack("=16s16sHBB", bytes(16), bytes(16), X.AF_INET, 129, 0)
    msgs, err = dump(nl, N.nla(A.ADDRESS_FILTER, flt))
    assert msgs == [] and err == -E.EINVAL


def test_dump_splits_into_datagrams_of_whole_messages(nl):
    for spi in range(1, 121):
        nl.ok(newsa(spi=spi))
    datagrams = nl.send(msg(M.GETSA, b"", N.NLM_F_REQUEST | N.NLM_F_DUMP))
    assert len(datagrams) > 2
    assert all(len(d) <= 32768 for d in datagrams)
    total = sum(1 for d in datagrams for m in messages(d) if m[0] == M.NEWSA)
    assert total == 120


def test_sadinfo_counts_states(nl):
    nl.ok(newsa(spi=1))
    nl.ok(newsa(spi=2))
    raw = [m for d in nl.send(msg(M.GETSADINFO, struct.pack("=I", 0xffffffff), N.NLM_F_REQUEST))
           for m in messages(d)][0][4]
    at = attrs_of(raw, 4)
    assert struct.unpack("=I", at[X.XfrmaSad.CNT])[0] == 2


# -- update / delete / flush -------------------------------------------------------------

def test_update_changes_lifetime_in_place_and_keeps_keys(nl):
    nl.ok(newsa(spi=5))
    nl.ok(newsa(spi=6))
    lft = (1, 2, 3, 4, 50, 60, 0, 0)
    nl.ok(newsa(N.nla(A.ALG_AEAD, algo2("rfc4106(gcm(aes))", b"\x55" * 20, 128)),
                t=M.UPDSA, spi=5, lft=lft))
    raw = getsa(nl, spi=5)[4]
    info = X.XfrmUsersaInfo.decode(raw, 16)
    assert info.lft.hard_add_expires_seconds == 60 and info.lft.soft_byte_limit == 1
    assert attrs_of(raw, 224)[A.ALG_AEAD][72:] == GCM_KEY     # keys are not replaced
    msgs, _ = dump(nl)
    assert [X.XfrmUsersaInfo.decode(m[4], 16).id.spi for m in msgs] == [6, 5]  # position kept


def test_update_missing_is_esrch_and_dir_mismatch_leaves_sa_intact(nl):
    assert nl.errno_of(newsa(t=M.UPDSA))[0] == -E.ESRCH
    nl.ok(newsa(AEAD, N.nla_u8(A.SA_DIR, X.XFRM_SA_DIR_IN)))
    before = getsa(nl)[4]
    assert nl.errno_of(newsa(AEAD, t=M.UPDSA, lft=(1,) * 8))[0] == -E.ESRCH
    assert getsa(nl)[4] == before


def test_update_encap_change_is_einval(nl):
    encap = N.nla(A.ENCAP, struct.pack("=HHH2x16s", X.UDP_ENCAP_ESPINUDP, 0x1194, 0x1194, bytes(16)))
    nl.ok(newsa(AEAD, encap))
    assert nl.errno_of(newsa(AEAD, t=M.UPDSA))[0] == -E.EINVAL


def test_delete_and_missing(nl):
    nl.ok(newsa())
    nl.ok(msg(M.DELSA, usersa_id()))
    assert nl.errno_of(msg(M.DELSA, usersa_id())) == (-E.ESRCH, None)
    assert nl.errno_of(msg(M.GETSA, usersa_id())) == (-E.ESRCH, None)


def test_lookup_by_address_needs_srcaddr(nl):
    assert nl.errno_of(msg(M.GETSA, usersa_id(proto=X.IPPROTO_ROUTING))) == (-E.EINVAL, None)


def test_flush_per_protocol(nl):
    nl.ok(newsa(spi=1))
    nl.ok(newsa(spi=2, proto=X.IPPROTO_AH, *[N.nla(A.ALG_AUTH, algo("hmac(sha1)", bytes(20)))]))
    nl.ok(msg(M.FLUSHSA, bytes([X.IPPROTO_AH])))
    msgs, _ = dump(nl)
    assert [X.XfrmUsersaInfo.decode(m[4], 16).id.proto for m in msgs] == [X.IPPROTO_ESP]
    nl.ok(msg(M.FLUSHSA, bytes([0])))
    assert dump(nl)[0] == []
    nl.ok(msg(M.FLUSHSA, bytes([0])))     # empty: ACK 0


# -- ALLOCSPI -----------------------------------------------------------------------------

def allocspi(nl, lo, hi, attrs=b"", seq=0, **kw):
    payload = usersa_info(spi=0, seq=seq, **kw) + struct.pack("=II", lo, hi) + attrs
    return [m for d in nl.send(msg(M.ALLOCSPI, payload, N.NLM_F_REQUEST)) for m in messages(d)]


def test_allocspi_exact_value_makes_larval_state(nl, kernel):
    out = allocspi(nl, 0x200, 0x200, reqid=9)
    assert out[0][0] == M.NEWSA
    info = X.XfrmUsersaInfo.decode(out[0][4], 16)
    assert info.id.spi == 0x200 and info.reqid == 9
    assert info.lft.hard_add_expires_seconds == 30 and info.lft.soft_byte_limit == X.XFRM_INF
    assert info.sel.prefixlen_d == 32 and info.sel.family == 0
    # __find_acq_core only reuses larval states without an SPI: a second one is made
    again = X.XfrmUsersaInfo.decode(allocspi(nl, 0x300, 0x300, reqid=9)[0][4], 16)
    assert again.id.spi == 0x300 and len(dump(nl)[0]) == 2
    # 0x200 is taken (any daddr, same protocol)
    payload = usersa_info(spi=0, dst="203.0.113.1", reqid=10) + struct.pack("=II", 0x200, 0x200)
    assert nl.errno_of(msg(M.ALLOCSPI, payload)) == (-E.ENOENT, "No SPI available in the requested range")
    # the larval state made for the failed request stays behind, as in xfrm_alloc_userspi
    assert len(dump(nl)[0]) == 3


def test_allocspi_of_spi_zero_is_no_spi(nl):
    """xfrm_alloc_spi installs the SPI only when it is not 0 (``if (x->id.spi)``): a range
    of 0 alone answers ENOENT and leaves the larval state without an SPI, findable again."""
    payload = usersa_info(spi=0, reqid=4) + struct.pack("=II", 0, 0)
    assert nl.errno_of(msg(M.ALLOCSPI, payload)) == (-E.ENOENT, "No SPI available in the requested range")
    msgs, _ = dump(nl)
    assert len(msgs) == 1 and X.XfrmUsersaInfo.decode(msgs[0][4], 16).id.spi == 0
    # the same request again finds that larval state (no second one) and gives it an SPI
    out = allocspi(nl, 0x400, 0x400, reqid=4)
    assert X.XfrmUsersaInfo.decode(out[0][4], 16).id.spi == 0x400 and len(dump(nl)[0]) == 1


def test_allocspi_random_within_range_and_unique(nl):
    seen = set()
    for reqid in range(1, 21):
        info = X.XfrmUsersaInfo.decode(allocspi(nl, 0x100, 0x11f, reqid=reqid)[0][4], 16)
        assert 0x100 <= info.id.spi <= 0x11f
        seen.add(info.id.spi)
    assert len(seen) == 20


@pytest.mark.parametrize("proto,lo,hi,text", [
    (0, 1, 2, "Invalid protocol, must be one of AH, ESP, IPCOMP"),
    (X.IPPROTO_COMP, 1, 0x10000, "IPCOMP SPI must be <= 65535"),
    (X.IPPROTO_ESP, 5, 4, "Invalid SPI range: min > max"),
])
def test_allocspi_errors(nl, proto, lo, hi, text):
    payload = usersa_info(spi=0, proto=proto) + struct.pack("=II", lo, hi)
    assert nl.errno_of(msg(M.ALLOCSPI, payload)) == (-E.EINVAL, text)


def test_newsa_replaces_larval_state_with_same_reqid(nl):
    allocspi(nl, 0x200, 0x200, reqid=9)
    assert len(dump(nl)[0]) == 1
    # NEWSA with the allocated SPI collides with the larval state: EEXIST; UPDSA replaces it
    assert nl.errno_of(newsa(spi=0x200, reqid=9))[0] == -E.EEXIST
    nl.ok(newsa(spi=0x200, reqid=9, t=M.UPDSA))
    msgs, _ = dump(nl)
    assert len(msgs) == 1 and attr_types(msgs[0][4], 224)[0] == A.ALG_AEAD


def test_newsa_with_other_spi_removes_matching_larval(nl):
    allocspi(nl, 0x200, 0x200, reqid=9)
    nl.ok(newsa(spi=0x999, reqid=9))
    # __find_acq_core wants spi 0: a larval state that already has an SPI stays
    assert len(dump(nl)[0]) == 2


# -- validation: errno and extack ---------------------------------------------------------

ESP_IN = N.nla_u8(A.SA_DIR, X.XFRM_SA_DIR_IN)
ESP_OUT = N.nla_u8(A.SA_DIR, X.XFRM_SA_DIR_OUT)
AUTH = N.nla(A.ALG_AUTH, algo("hmac(sha1)", bytes(20)))
COMP = N.nla(A.ALG_COMP, algo("deflate", b""))
ESN = N.nla(A.REPLAY_ESN_VAL, struct.pack("=6I", 4, 0, 0, 0, 0, 64) + bytes(16))

CASES = [
    (dict(family=0), (AEAD,), -E.EINVAL, "Invalid address family"),
    (dict(sel=selector(plen_d=33)), (AEAD,), -E.EINVAL,
     "Invalid prefix length in selector (must be <= 32 for IPv4)"),
    (dict(sel=selector(family=7)), (AEAD,), -E.EINVAL, "Invalid address family in selector"),
    (dict(proto=X.IPPROTO_AH), (), -E.EINVAL, "Missing required attribute for AH: AUTH_TRUNC or AUTH"),
    (dict(proto=X.IPPROTO_AH), (AUTH, AEAD), -E.EINVAL, "Invalid attributes for AH: AEAD, CRYPT, COMP, TFCPAD"),
    (dict(), (AEAD, COMP), -E.EINVAL, "Invalid attribute for ESP: COMP"),
    (dict(), (N.nla_u32(A.IF_ID, 1),), -E.EINVAL,
     "Missing required attribute for ESP: at least one of AUTH, AUTH_TRUNC, CRYPT, AEAD"),
    (dict(), (AEAD, AUTH), -E.EINVAL,
     "Invalid attribute combination for ESP: AEAD can't be used with AUTH, AUTH_TRUNC, CRYPT"),
    (dict(mode=0), (AEAD, N.nla_u32(A.TFCPAD, 10)), -E.EINVAL, "TFC padding can only be used in tunnel mode"),
    (dict(proto=X.IPPROTO_COMP), (), -E.EINVAL, "Missing required attribute for COMP: COMP"),
    (dict(proto=X.IPPROTO_COMP), (COMP, AUTH), -E.EINVAL,
     "Invalid attributes for COMP: AEAD, AUTH, AUTH_TRUNC, CRYPT, TFCPAD"),
    (dict(proto=X.IPPROTO_COMP, spi=0x10000), (COMP,), -E.EINVAL, "SPI is too large for COMP (must be < 0x10000)"),
    (dict(proto=17), (AEAD,), -E.EINVAL, "Unsupported protocol"),
    (dict(), (N.nla(A.ALG_AEAD, algo2("rfc4106(gcm(aes))", bytes(10), 128, key_bits=160)),),
     -E.EINVAL, "Invalid AEAD attribute length"),
    (dict(), (N.nla(A.ALG_CRYPT, algo("cbc(aes)", bytes(4), key_bits=128)),), -E.EINVAL,
     "Invalid AUTH/CRYPT/COMP attribute length"),
    (dict(flags=X.XFRM_STATE_ESN), (AEAD,), -E.EINVAL, "Missing required attribute for ESN"),
    (dict(replay_window=0, proto=X.IPPROTO_COMP), (COMP, ESN), -E.EINVAL, "ESN only supported for ESP and AH"),
    (dict(), (AEAD, ESN), -E.EINVAL, "ESN not compatible with legacy replay_window"),
    (dict(mode=7), (AEAD,), -E.EINVAL, "Unsupported mode"),
    (dict(mode=X.XFRM_MODE_IPTFS), (AEAD,), -E.EINVAL, "IP-TFS mode requires in or out direction attribute"),
    (dict(), (AEAD, N.nla_u32(A.MTIMER_THRESH, 5)), -E.EINVAL,
     "MTIMER_THRESH attribute can only be set on ENCAP states"),
    (dict(flags=X.XFRM_STATE_ICMP, replay_window=0), (AEAD, ESP_OUT), -E.EINVAL,
     "Flag ICMP should not be set for output SA"),
    (dict(), (AEAD, ESP_OUT), -E.EINVAL, "Replay window should be 0 for output SA"),
    (dict(flags=X.XFRM_STATE_NOPMTUDISC), (AEAD, ESP_IN), -E.EINVAL, "Flag NOPMTUDISC should not be set for input SA"),
    (dict(), (AEAD, ESP_IN, N.nla_u32(A.SA_EXTRA_FLAGS, 2)), -E.EINVAL,
     "Flag OSEQ_MAY_WRAP should not be set for input SA"),
    (dict(), (AEAD, N.nla_u32(A.SA_PCPU, 0)), -E.EINVAL, "SA_PCPU only supported with SA_DIR"),
    # xfrm_state_construct
    (dict(), (N.nla(A.ALG_AEAD, algo2("rfc4106(gcm(aes))", GCM_KEY, 100)),), -E.ENOSYS,
     "Requested AEAD algorithm not found"),
    (dict(), (N.nla(A.ALG_CRYPT, algo("foo", bytes(16))),), -E.ENOSYS, "Requested CRYPT algorithm not found"),
    (dict(), (N.nla(A.ALG_AUTH, algo("md4", bytes(16))), N.nla(A.ALG_CRYPT, algo("aes", bytes(16)))),
     -E.ENOSYS, "Requested AUTH algorithm not found"),
    (dict(), (N.nla(A.ALG_AUTH_TRUNC, algo2("hmac(sha1)", bytes(20), 161)), N.nla(A.ALG_CRYPT, algo("aes", bytes(16)))),
     -E.EINVAL, "Invalid length requested for truncated ICV"),
    (dict(proto=X.IPPROTO_COMP, mode=0), (N.nla(A.ALG_COMP, algo("lz4", b"")),), -E.ENOSYS,
     "Requested COMP algorithm not found"),
    # __xfrm_init_state and the type init_state
    (dict(mode=X.XFRM_MODE_ROUTEOPTIMIZATION), (AEAD,), -E.EPROTONOSUPPORT, "Requested mode not found"),
    (dict(mode=0, sel=selector(family=X.AF_INET6)), (AEAD,), -E.EPROTONOSUPPORT,
     "Only tunnel modes can accommodate a change of family"),
    (dict(), (AUTH,), -E.EINVAL, "ESP: AEAD or CRYPT must be provided"),
    (dict(), (N.nla(A.ALG_CRYPT, algo("cbc(aes)", bytes(15))),), -E.EINVAL,
     "Kernel was unable to initialize cryptographic operations"),
    (dict(), (AEAD, N.nla(A.ENCAP, struct.pack("=HHH2x16s", 1, 0, 0, bytes(16)))), -E.EINVAL,
     "Unsupported encapsulation type for ESP"),
    (dict(proto=X.IPPROTO_AH), (AUTH, N.nla(A.ENCAP, struct.pack("=HHH2x16s", 2, 0, 0, bytes(16)))),
     -E.EINVAL, "AH is not compatible with encapsulation"),
    (dict(), (AEAD, ESP_IN, N.nla_u32(A.NAT_KEEPALIVE_INTERVAL, 20)), -E.EINVAL,
     "NAT keepalive is only supported for outbound SAs"),
    (dict(flags=X.XFRM_STATE_ESN, replay_window=0),
     (AEAD, N.nla(A.REPLAY_ESN_VAL, struct.pack("=6I", 1, 0, 0, 0, 0, 64) + bytes(4))), -E.EINVAL,
     "ESN replay window is longer than the bitmap"),
    (dict(flags=X.XFRM_STATE_ESN, replay_window=0),
     (AEAD, N.nla(A.REPLAY_ESN_VAL, struct.pack("=6I", 1, 0, 0, 0, 0, 0) + bytes(4))), -E.EINVAL,
     "ESN replay window must be > 0"),
]


@pytest.mark.parametrize("kw,attrs,err,text", CASES, ids=[c[3][:40] for c in CASES])
def test_newsa_validation(nl, kw, attrs, err, text):
    data = msg(M.NEWSA, usersa_info(**kw) + b"".join(attrs))
    assert nl.errno_of(data) == (err, text)
    assert dump(nl)[0] == []            # nothing half-applied


def test_attribute_policy_errors_carry_offset(nl):
    data = msg(M.NEWSA, usersa_info() + AEAD + N.nla_u8(A.SA_DIR, 3))
    (t, flags, _, _, raw), = [m for d in nl.send(data) for m in messages(d)]
    assert struct.unpack_from("=i", raw, 16)[0] == -E.ERANGE
    tlvs = {ra.type: raw[ra.start:ra.end] for ra in N.iter_attrs(raw, 20 + len(data), len(raw))}
    assert tlvs[N.NLMSGERR_ATTR_MSG] == b"integer out of range\0"
    assert struct.unpack("=I", tlvs[N.NLMSGERR_ATTR_OFFS])[0] == 16 + 224 + len(AEAD)


def test_type_disabled_reproduces_machine_without_esp(nl, monkeypatch):
    from xfrmd.xfrm import types
    monkeypatch.setattr(types, "DISABLED_TYPES", {X.IPPROTO_ESP})
    assert nl.errno_of(newsa(CBC)) == (-E.EPROTONOSUPPORT, "Requested type not found")


def _out_policy(nl, tmpl: bytes, sel=None):
    sel = sel or selector("10.0.0.0", "10.0.1.0", 24, 24, X.AF_INET)
    info = sel + struct.pack("=8Q4QIIBBBB4x", *([X.XFRM_INF] * 4), 0, 0, 0, 0, 0, 0, 0, 0,
                             0, 0, X.XFRM_POLICY_OUT, 0, 0, 0)
    nl.ok(msg(M.NEWPOLICY, info + N.nla(A.TMPL, tmpl)))


def test_migrate_moves_sas_and_templates_and_tells_the_initial_namespace(nl, kernel):
    from .differential.test_sa_validation import MIGRATES, _mig, _PID, _tmpl
    assert nl.errno_of(MIGRATES["no target policy"]) == (-E.ENOENT, "Target policy not found")
    km = Nl(kernel, groups=(X.XfrmNlGrp.MIGRATE,), pid=31)
    _out_policy(nl, _tmpl(reqid=1, family=2))
    nl.ok(newsa(spi=0x500, src="192.0.2.1", dst="198.51.100.1", reqid=1))
    nl.ok(msg(M.MIGRATE, _PID + N.nla(A.MIGRATE, _mig())))
    # the SA moved to the new addresses, the old one is gone, keys kept
    assert nl.errno_of(msg(M.GETSA, usersa_id(dst="198.51.100.1", spi=0x500)))[0] == -E.ESRCH
    raw = [m for d in nl.send(msg(M.GETSA, usersa_id(dst="198.51.100.9", spi=0x500), N.NLM_F_REQUEST))
           for m in messages(d)][0][4]
    info = X.XfrmUsersaInfo.decode(raw, 16)
    assert bytes(info.saddr)[:4] == bytes([192, 0, 2, 9]) and info.reqid == 1
    assert attrs_of(raw, 224)[A.ALG_AEAD][72:] == GCM_KEY
    # the policy's template follows
    pols = [m for d in nl.send(msg(M.GETPOLICY, b"", N.NLM_F_REQUEST | N.NLM_F_DUMP)) for m in messages(d)
            if m[0] == M.NEWPOLICY]
    tmpl = X.XfrmUserTmpl.decode(attrs_of(pols[0][4], 168)[A.TMPL])
    assert bytes(tmpl.id.daddr)[:4] == bytes([198, 51, 100, 9]) and bytes(tmpl.saddr)[:4] == bytes([192, 0, 2, 9])
    # one XFRM_MSG_MIGRATE: userpolicy_id, POLICY_TYPE, one XFRMA_MIGRATE per entry
    (t, _, seq, pid, ev), = [m for d in km.recv_all() for m in messages(d)]
    assert (t, seq, pid) == (M.MIGRATE, 0, 0)
    assert attr_types(ev, 64) == [A.POLICY_TYPE, A.MIGRATE]
    # nothing left to move: ENODATA, no message
    assert nl.errno_of(MIGRATES["no target policy"]) == (-E.ENODATA, None)
    assert km.recv_all() == []


def test_accepted_algorithm_combinations(nl):
    """Accepted SAs checked against the kernel's tables (the real kernel here has no ESP)."""
    good = [
        N.nla(A.ALG_AEAD, algo2("rfc4106(gcm(aes))", bytes(36), 64)),
        N.nla(A.ALG_AEAD, algo2("rfc4309(ccm(aes))", bytes(19), 96)),
        N.nla(A.ALG_AEAD, algo2("rfc4543(gcm(aes))", bytes(20), 128)),
        N.nla(A.ALG_AEAD, algo2("rfc7539esp(chacha20,poly1305)", bytes(36), 128)),
        N.nla(A.ALG_CRYPT, algo("cipher_null", b"")),
        N.nla(A.ALG_CRYPT, algo("des3_ede", bytes(24))) + N.nla(A.ALG_AUTH, algo("md5", bytes(16))),
        N.nla(A.ALG_CRYPT, algo("rfc3686(ctr(aes))", bytes(20))) + N.nla(A.ALG_AUTH, algo("xcbc(aes)", bytes(16))),
        N.nla(A.ALG_CRYPT, algo("blowfish", bytes(7))) + N.nla(A.ALG_AUTH_TRUNC, algo2("hmac(sha512)", bytes(64), 0)),
    ]
    for spi, attrs in enumerate(good, 1):
        nl.ok(newsa(attrs, spi=spi))
    assert len(dump(nl)[0]) == len(good)


@settings(max_examples=60, deadline=None)
@given(st.binary(min_size=0, max_size=300))
def test_random_attribute_bytes_never_crash(payload):
    from xfrmd.clock import ManualClock
    from xfrmd.kernel import Kernel
    k = Kernel(ManualClock(), seed=1)
    nl = Nl(k)
    for t in (M.NEWSA, M.UPDSA, M.DELSA, M.GETSA, M.ALLOCSPI, M.NEWAE, M.GETAE, M.FLUSHSA, M.EXPIRE):
        fixed = X.MSG_MIN[t]
        out = nl.send(msg(t, usersa_info()[:fixed].ljust(fixed, b"\0") + payload,
                          REQ_ACK | N.NLM_F_REPLACE))
        assert out and messages(out[-1])[-1][0] in (N.NLMSG_ERROR, N.NLMSG_DONE, M.NEWSA, M.NEWAE)


# -- IPComp tunnel mode: the hidden IPIP / IPv6 tunnel state ---------------------------------

def _states(nl):
    return [(i.id.proto, i.id.spi) for i in (X.XfrmUsersaInfo.decode(m[4], 16) for m in dump(nl)[0])]


def test_ipcomp_tunnel_adds_shared_hidden_ipip_state(nl):
    comp = N.nla(A.ALG_COMP, algo("deflate", b""))
    nl.ok(newsa(comp, proto=X.IPPROTO_COMP, spi=0x100))
    ipip_spi = int.from_bytes(bytes([192, 0, 2, 1]), "big")     # spi = outer saddr
    assert _states(nl) == [(X.IPPROTO_COMP, 0x100), (4, ipip_spi)]
    nl.ok(newsa(comp, proto=X.IPPROTO_COMP, spi=0x101))
    assert _states(nl) == [(X.IPPROTO_COMP, 0x101), (X.IPPROTO_COMP, 0x100), (4, ipip_spi)]
    # the user cannot remove or replace the kernel's state
    by_addr = msg(M.DELSA, usersa_id(proto=4) + N.nla(A.SRCADDR, bytes([192, 0, 2, 1]).ljust(16, b"\0")))
    assert nl.errno_of(by_addr) == (-E.EPERM, "SA is in use by tunnels")
    # a failed add (duplicate) leaves the share count as it was
    assert nl.errno_of(newsa(comp, proto=X.IPPROTO_COMP, spi=0x101))[0] == -E.EEXIST
    nl.ok(msg(M.DELSA, usersa_id(proto=X.IPPROTO_COMP, spi=0x100)))
    assert (4, ipip_spi) in _states(nl)
    nl.ok(msg(M.DELSA, usersa_id(proto=X.IPPROTO_COMP, spi=0x101)))
    assert _states(nl) == []


def test_ipcomp_tunnel_flush_takes_the_tunnel_along(nl):
    comp = N.nla(A.ALG_COMP, algo("lzs", b""))
    nl.ok(newsa(comp, proto=X.IPPROTO_COMP, spi=0x200))
    nl.ok(msg(M.FLUSHSA, bytes([X.IPSEC_PROTO_ANY])))
    assert _states(nl) == []


def test_ipcomp6_tunnel_uses_xfrm6_tunnel_spis(nl):
    comp = N.nla(A.ALG_COMP, algo("deflate", b""))
    nl.ok(newsa(comp, proto=X.IPPROTO_COMP, spi=0x300, src="2001:db8::1", dst="2001:db8::2"))
    nl.ok(newsa(comp, proto=X.IPPROTO_COMP, spi=0x301, src="2001:db8::9", dst="2001:db8::2"))
    assert _states(nl) == [(X.IPPROTO_COMP, 0x301), (41, 2), (X.IPPROTO_COMP, 0x300), (41, 1)]


def test_type_switch_per_kernel_through_the_service_op(nl, kernel):
    from xfrmd import services
    assert services.handle(kernel, "default", {"op": "xfrm_type", "proto": "ah", "state": "off"}) == {"errno": 0}
    ah = newsa(N.nla(A.ALG_AUTH, algo("hmac(sha1)", bytes(20))), proto=X.IPPROTO_AH)
    assert nl.errno_of(ah) == (-E.EPROTONOSUPPORT, "Requested type not found")
    nl.ok(newsa())                                   # ESP is still there
    services.handle(kernel, "default", {"op": "xfrm_type", "proto": "ah", "state": "on"})
    nl.ok(ah)
    assert services.handle(kernel, "default", {"op": "xfrm_type", "proto": "x", "state": "on"})["errno"] == E.EINVAL


def test_namespaces_have_their_own_sad(kernel):
    kernel.add_netns("blue")
    red, blue = Nl(kernel), Nl(kernel, pid=77)
    blue.s = kernel.socket(N.NETLINK_XFRM, "blue", pid=77)
    kernel.bind(blue.s)
    kernel.setsockopt(blue.s, N.SOL_NETLINK, N.NETLINK_EXT_ACK, 1)
    red.ok(newsa(spi=0x42))
    blue.ok(newsa(spi=0x42))                      # same key, other namespace
    assert len(dump(red)[0]) == 1 and len(dump(blue)[0]) == 1
    red.ok(msg(M.FLUSHSA, bytes([0])))
    assert dump(red)[0] == [] and len(dump(blue)[0]) == 1


def test_crypto_algorithms_per_kernel_through_the_service_op(nl, kernel):
    from xfrmd import services
    off = {"op": "crypto_alg", "state": "off", "names": ["rfc4106(gcm(aes))", "sha1"]}
    assert services.handle(kernel, "default", off) == {"errno": 0}
    assert nl.errno_of(newsa(AEAD)) == (-E.ENOSYS, "Requested AEAD algorithm not found")
    auth = newsa(N.nla(A.ALG_CRYPT, algo("aes", bytes(16))), N.nla(A.ALG_AUTH, algo("hmac(sha1)", bytes(20))))
    assert nl.errno_of(auth) == (-E.ENOSYS, "Requested AUTH algorithm not found")
    services.handle(kernel, "default", dict(off, state="on"))
    nl.ok(newsa(AEAD))
    assert services.handle(kernel, "default", dict(off, names=["rot13"]))["errno"] == E.EINVAL


def test_charon_inbound_sa_sequence(nl, kernel):
    """What charon 5.9.8 sends (recorded from a real run): ALLOCSPI over its range, then UPDSA of the
    larval state with XFRM_STATE_AF_UNSPEC and an empty selector; the outbound SA by NEWSA."""
    mon = Nl(kernel, groups=(X.XfrmNlGrp.EXPIRE,), pid=9)
    payload = (usersa_info(src="192.0.2.2", dst="192.0.2.1", spi=0, reqid=0, replay_window=0,
                           sel=selector(family=0)) + struct.pack("=II", 0xC0000000, 0xCFFFFFFF))
    out = [m for d in nl.send(msg(M.ALLOCSPI, payload, N.NLM_F_REQUEST)) for m in messages(d)]
    spi = X.XfrmUsersaInfo.decode(out[0][4], 16).id.spi
    assert 0xC0000000 <= spi <= 0xCFFFFFFF
    lft = (X.XFRM_INF,) * 4 + (3381, 3960, 0, 0)
    algs = (N.nla(A.ALG_CRYPT, algo("aes", bytes(16)))
            + N.nla(A.ALG_AUTH_TRUNC, algo2("hmac(sha256)", bytes(32), 128)))
    nl.ok(msg(M.UPDSA, usersa_info(src="192.0.2.2", dst="192.0.2.1", spi=spi, reqid=1, lft=lft,
                                   flags=X.XFRM_STATE_AF_UNSPEC, sel=selector(family=0)) + algs))
    nl.ok(msg(M.NEWSA, usersa_info(src="192.0.2.1", dst="192.0.2.2", spi=0xCB253403, reqid=1,
                                   lft=lft, replay_window=0, flags=X.XFRM_STATE_AF_UNSPEC,
                                   sel=selector(family=0)) + algs))
    states = [X.XfrmUsersaInfo.decode(m[4], 16) for m in dump(nl)[0]]
    assert [(i.id.spi, i.reqid, i.sel.family, i.replay_window) for i in states] == \
        [(0xCB253403, 1, 0, 0), (spi, 1, 0, 32)]
    kernel.advance(3381)
    assert sorted(m[4][16 + 224] for d in mon.recv_all() for m in messages(d)) == [0, 0]


def test_iptfs_mode_defaults_options_and_packet_size_check(nl):
    """IP-TFS SAs (xfrm_iptfs.c user_init / copy_to_user): defaults per direction, options,
    and the outer packet size checked against the ESP + IP-TFS header length."""
    iptfs = dict(mode=X.XFRM_MODE_IPTFS, replay_window=0)
    nl.ok(newsa(AEAD, N.nla_u8(A.SA_DIR, X.XFRM_SA_DIR_IN), spi=1, **iptfs))
    nl.ok(newsa(AEAD, N.nla_u8(A.SA_DIR, X.XFRM_SA_DIR_OUT), N.nla(A.IPTFS_DONT_FRAG),
                N.nla_u32(A.IPTFS_PKT_SIZE, 1400), spi=2, **iptfs))
    raw_in, raw_out = getsa(nl, spi=1)[4], getsa(nl, spi=2)[4]
    assert attr_types(raw_in, 224)[-3:] == [A.IPTFS_DROP_TIME, A.IPTFS_REORDER_WINDOW, A.SA_DIR]
    at = attrs_of(raw_in, 224)
    assert at[A.IPTFS_DROP_TIME] == struct.pack("=I", 1000000) and at[A.IPTFS_REORDER_WINDOW] == b"\x03\x00"
    assert attr_types(raw_out, 224)[-5:] == [A.IPTFS_DONT_FRAG, A.IPTFS_INIT_DELAY, A.IPTFS_MAX_QSIZE,
                                             A.IPTFS_PKT_SIZE, A.SA_DIR]
    at = attrs_of(raw_out, 224)
    assert at[A.IPTFS_MAX_QSIZE] == struct.pack("=I", 10485760) and at[A.IPTFS_PKT_SIZE] == struct.pack("=I", 1400)
    # ESP header 8 + IV 8 (rfc4106) + outer IPv4 20 + IP-TFS header 4 = 40
    tiny = newsa(AEAD, N.nla_u8(A.SA_DIR, X.XFRM_SA_DIR_OUT), N.nla_u32(A.IPTFS_PKT_SIZE, 40), spi=3, **iptfs)
    assert nl.errno_of(tiny) == (-E.EINVAL, "Packet size must be 0 or greater than IPTFS/ESP header length")
    nl.ok(newsa(AEAD, N.nla_u8(A.SA_DIR, X.XFRM_SA_DIR_OUT), N.nla_u32(A.IPTFS_PKT_SIZE, 41), spi=3, **iptfs))


def test_xfrm_id_padding_is_echoed_like_the_kernel_memcpy(nl):
    info = bytearray(usersa_info(spi=0x66))
    info[56 + 21:56 + 24] = b"\x01\x02\x03"          # xfrm_id's 3 padding bytes
    nl.ok(msg(M.NEWSA, bytes(info) + AEAD))
    raw = getsa(nl, spi=0x66)[4]
    assert raw[16 + 56 + 21:16 + 56 + 24] == b"\x01\x02\x03"
    assert raw[16 + 217:16 + 224] == bytes(7)          # the struct's own tail padding: zeroed


def test_ipcomp_tunnel_without_the_tunnel_type(nl, kernel):
    from xfrmd.xfrm import types
    types.set_type_enabled(kernel, 4, False)             # no xfrm4_tunnel module
    comp = N.nla(A.ALG_COMP, algo("deflate", b""))
    assert nl.errno_of(newsa(comp, proto=X.IPPROTO_COMP, spi=0x100)) == \
        (-E.EINVAL, "Kernel error: failed to initialize the associated state")
    assert _states(nl) == []
    nl.ok(newsa(comp, proto=X.IPPROTO_COMP, spi=0x100, mode=X.XFRM_MODE_TRANSPORT))


def test_offload_hooks_are_called_where_the_kernel_calls_them(nl, monkeypatch):
    """xfrm_dev_state_add after the type init (a refusal leaves nothing behind), the
    XFRMA_OFFLOAD_DEV attribute from copy_user_offload in dumps, delete/free on DELSA."""
    from types import SimpleNamespace

    from netlink_codec.netlink import nla

    from xfrmd.errors import KernelError
    from xfrmd.xfrm import offload
    calls = []

    def add(req, x, xuo):
        calls.append(("add", x.id.spi, xuo.ifindex, x.aead is not None))
        if xuo.ifindex == 99:
            raise KernelError(E.EINVAL, "Device failed to offload this state")
        x.xso = SimpleNamespace(dev=xuo.ifindex)

    monkeypatch.setattr(offload, "xfrm_dev_state_add", add)
    monkeypatch.setattr(offload, "xfrm_dev_state_delete", lambda x: calls.append(("delete", x.id.spi)))
    monkeypatch.setattr(offload, "xfrm_dev_state_free", lambda x: calls.append(("free", x.id.spi)))
    monkeypatch.setattr(offload, "copy_user_offload",
                        lambda x: nla(A.OFFLOAD_DEV, struct.pack("=iB3x", x.xso.dev, 0)))
    xuo = lambda ifindex: N.nla(A.OFFLOAD_DEV, struct.pack("=iB3x", ifindex, 0))   # noqa: E731
    assert nl.errno_of(newsa(AEAD, xuo(99), spi=1)) == (-E.EINVAL, "Device failed to offload this state")
    assert dump(nl)[0] == []
    # the type init fails first: the device is never asked
    assert nl.errno_of(newsa(N.nla(A.ALG_CRYPT, algo("aes", bytes(3))), xuo(3), spi=2))[0] == -E.EINVAL
    nl.ok(newsa(AEAD, xuo(3), spi=3))
    assert attrs_of(getsa(nl, spi=3)[4], 224)[A.OFFLOAD_DEV] == struct.pack("=iB3x", 3, 0)
    nl.ok(msg(M.DELSA, usersa_id(spi=3)))
    assert calls == [("add", 1, 99, True), ("add", 3, 3, True), ("delete", 3), ("free", 3)]
