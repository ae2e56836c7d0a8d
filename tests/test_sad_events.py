"""SA events on their multicast groups with the kernel's bodies (xfrm_notify_sa,
xfrm_notify_sa_flush, xfrm_exp_state_notify, build_aevent) and lifetimes driven by the clock."""
import errno as E
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netlink_codec import netlink as N
from netlink_codec import xfrm as X
from xfrmd.xfrm.state import own_replay

from .sad_helpers import AEAD, REQ_ACK, A, M, Nl, attrs_of, messages, msg, newsa, usersa_id, usersa_info

G = X.XfrmNlGrp
INF = X.XFRM_INF


@pytest.fixture
def nl(kernel):
    return Nl(kernel)


@pytest.fixture
def mon(kernel):
    return Nl(kernel, groups=(G.SA, G.EXPIRE, G.AEVENTS, G.ACQUIRE), pid=777)


def events(mon):
    return [m for d in mon.recv_all() for m in messages(d)]


def get_body(nl, attrs=b"", **kw):
    """What GETSA answers: the NEWSA message body (fixed part + attributes)."""
    raw = [m for d in nl.send(msg(M.GETSA, usersa_id(**kw) + attrs, N.NLM_F_REQUEST))
           for m in messages(d)][0]
    assert raw[0] == M.NEWSA
    return raw[4][16:]


def test_newsa_updsa_delsa_events_have_kernel_bodies(nl, mon):
    nl.ok(newsa(AEAD))
    body = get_body(nl)
    ev = events(mon)
    # NEWSA: seq and nlmsg_pid copied from the request header, flags 0, same body as GETSA
    assert ev == [(M.NEWSA, 0, 1, 0, N.encode_msg(M.NEWSA, 0, 1, 0, body))]

    nl.ok(msg(M.UPDSA, usersa_info(lft=(INF, INF, INF, INF, 0, 99, 0, 0)) + AEAD, seq=5, pid=31337))
    body = get_body(nl)
    ev = events(mon)
    assert ev == [(M.UPDSA, 0, 5, 31337, N.encode_msg(M.UPDSA, 0, 5, 31337, body))]

    nl.ok(msg(M.DELSA, usersa_id(), seq=6, pid=99))
    (t, flags, seq, pid, raw), = events(mon)
    expect = usersa_id() + N.nla(A.SA, body[:224]) + body[224:]
    assert (t, flags, seq, pid) == (M.DELSA, 0, 6, 99)
    assert raw == N.encode_msg(M.DELSA, 0, 6, 99, expect)


def test_failed_requests_send_no_event(nl, mon):
    nl.ok(newsa())
    events(mon)
    assert nl.errno_of(newsa())[0] == -E.EEXIST
    assert nl.errno_of(newsa(t=M.UPDSA, spi=77))[0] == -E.ESRCH
    assert nl.errno_of(msg(M.DELSA, usersa_id(spi=77)))[0] == -E.ESRCH
    assert events(mon) == []


def test_flush_event_is_20_bytes_and_only_when_something_was_flushed(nl, mon):
    nl.ok(msg(M.FLUSHSA, bytes([0])))
    assert events(mon) == []
    nl.ok(newsa())
    events(mon)
    nl.ok(msg(M.FLUSHSA, bytes([X.IPSEC_PROTO_ANY]), seq=3, pid=12))
    (t, flags, seq, pid, raw), = events(mon)
    assert (t, seq, pid) == (M.FLUSHSA, 3, 12)
    # nlmsg_end measures the aligned tail: 20, not 16 + sizeof(xfrm_usersa_flush)
    assert struct.unpack_from("=I", raw)[0] == 20 and raw[16:] == bytes([X.IPSEC_PROTO_ANY, 0, 0, 0])


def lifetimes(soft_add=0, hard_add=0, soft_use=0, hard_use=0):
    return (INF, INF, INF, INF, soft_add, hard_add, soft_use, hard_use)


def expire_events(mon):
    out = []
    for t, flags, seq, pid, raw in events(mon):
        assert t == M.EXPIRE and seq == 0 and flags == 0
        out.append((raw[16 + 224], raw))
    return out


def test_soft_then_hard_add_expiry(kernel, nl, mon):
    nl.ok(newsa(AEAD, N.nla(A.MARK, struct.pack("=II", 5, 0xff)), N.nla_u32(A.IF_ID, 4),
                lft=lifetimes(soft_add=5, hard_add=10)))
    events(mon)
    kernel.advance(4.5)
    assert events(mon) == []
    kernel.advance(0.5)
    (hard, raw), = expire_events(mon)
    assert hard == 0
    assert raw[16 + 225:16 + 232] == bytes(7)        # build_expire clears the padding
    at = attrs_of(raw, 232)
    assert at[A.MARK] == struct.pack("=II", 5, 0xff) and at[A.IF_ID] == struct.pack("=I", 4)
    # the SA is still there (dying), the body is the state as the kernel copies it
    assert raw[16:16 + 224] == get_body(nl, N.nla(A.MARK, struct.pack("=II", 5, 0xff)))[:224]
    kernel.advance(4.9)
    assert events(mon) == []
    kernel.advance(0.1)
    (hard, raw), = expire_events(mon)
    assert hard == 1
    assert nl.errno_of(msg(M.GETSA, usersa_id()))[0] == -E.ESRCH
    assert events(mon) == []    # no DELSA after a hard expiry


def test_use_expiry_waits_for_first_use(kernel, nl, mon):
    nl.ok(newsa(lft=lifetimes(hard_use=10)))
    events(mon)
    kernel.advance(100)
    assert expire_events(mon) == []
    # the datapath (or NEWAE) sets use_time; the hard use limit then counts from it
    now = kernel.clock.wall()
    ae = (usersa_id() + usersa_info()[80:96] + struct.pack("=II", 0, 1)
          + N.nla(A.LTIME_VAL, struct.pack("=4Q", 0, 0, now - 100, now)))
    nl.ok(msg(M.NEWAE, ae, REQ_ACK | N.NLM_F_REPLACE))
    events(mon)
    kernel.advance(10)
    assert [h for h, _ in expire_events(mon)] == [1]


def test_update_restarts_lifetimes(kernel, nl, mon):
    nl.ok(newsa(lft=lifetimes(hard_add=10)))
    kernel.advance(8)
    nl.ok(newsa(t=M.UPDSA, lft=lifetimes(hard_add=20)))
    events(mon)
    kernel.advance(5)
    assert expire_events(mon) == []
    kernel.advance(7)
    assert [h for h, _ in expire_events(mon)] == [1]


def test_larval_state_expires_after_acq_expires(kernel, nl, mon):
    payload = usersa_info(spi=0, reqid=3) + struct.pack("=II", 0x200, 0x200)
    nl.send(msg(M.ALLOCSPI, payload, N.NLM_F_REQUEST))
    assert events(mon) == []       # ALLOCSPI answers by unicast only
    kernel.advance(29)
    assert expire_events(mon) == []
    kernel.advance(1)
    (hard, raw), = expire_events(mon)
    assert hard == 1 and struct.unpack_from(">I", raw, 16 + 72)[0] == 0x200
    assert nl.errno_of(msg(M.GETSA, usersa_id(spi=0x200)))[0] == -E.ESRCH


def test_user_expire_soft_and_hard(nl, mon):
    nl.ok(newsa())
    events(mon)
    nl.ok(msg(M.EXPIRE, usersa_info() + bytes([0]) + bytes(7), pid=55))
    (t, _, seq, pid, raw), = events(mon)
    assert (t, seq, pid, raw[16 + 224]) == (M.EXPIRE, 0, 55, 0)
    nl.ok(msg(M.EXPIRE, usersa_info() + bytes([1]) + bytes(7), pid=55))
    assert [e[4][16 + 224] for e in events(mon)] == [1]
    assert nl.errno_of(msg(M.EXPIRE, usersa_info() + bytes(8))) == (-E.ENOENT, None)


def test_newae_and_getae(nl, mon):
    nl.ok(newsa(AEAD, N.nla_u8(A.SA_DIR, X.XFRM_SA_DIR_IN)))
    events(mon)
    head = usersa_id() + bytes(16)
    ae = lambda flags: head + struct.pack("=II", flags, 0)   # noqa: E731
    assert nl.errno_of(msg(M.NEWAE, ae(0), REQ_ACK | N.NLM_F_REPLACE)) == \
        (-E.EINVAL, "Missing required attribute for AE")
    rv = N.nla(A.REPLAY_VAL, struct.pack("=III", 0, 17, 0xff))
    assert nl.errno_of(msg(M.NEWAE, ae(0) + rv)) == (-E.EINVAL, "NLM_F_REPLACE flag is required")
    assert nl.errno_of(msg(M.NEWAE, usersa_id(spi=9) + bytes(24) + rv, REQ_ACK | N.NLM_F_REPLACE))[0] == -E.ESRCH
    nl.ok(msg(M.NEWAE, ae(0) + rv + N.nla_u32(A.REPLAY_THRESH, 9), REQ_ACK | N.NLM_F_REPLACE, seq=4, pid=8))
    (t, flags, seq, pid, raw), = events(mon)
    assert (t, seq, pid) == (M.NEWAE, 4, 8)
    assert struct.unpack_from("=I", raw, 16 + 40)[0] == X.XFRM_AE_CU
    at = attrs_of(raw, 48)
    assert at[A.REPLAY_VAL] == struct.pack("=III", 0, 17, 0xff)
    assert at[A.SA_DIR] == bytes([X.XFRM_SA_DIR_IN])
    # GETAE echoes the request's flags and adds the thresholds they ask for
    out = [m for d in nl.send(msg(M.GETAE, ae(X.XFRM_AE_RTHR | X.XFRM_AE_ETHR), N.NLM_F_REQUEST, seq=11))
           for m in messages(d)]
    t, _, seq, _, raw = out[0]
    assert (t, seq) == (M.NEWAE, 11)
    at = attrs_of(raw, 48)
    assert list(at) == [A.REPLAY_VAL, A.LTIME_VAL, A.REPLAY_THRESH, A.ETIMER_THRESH, A.SA_DIR]
    assert at[A.REPLAY_THRESH] == struct.pack("=I", 9)
    assert at[A.ETIMER_THRESH] == struct.pack("=I", 10)    # aevent_etime default, 100 ms units
    assert events(mon) == []


def test_byte_and_packet_limits_through_check_expire(kernel, nl, mon):
    """What the datapath calls after counting a packet (xfrm_state_check_expire)."""
    from xfrmd.xfrm.sadb import sad
    nl.ok(newsa(lft=(1000, 2000, INF, 5, 0, 0, 0, 0)))
    events(mon)
    db = sad(nl.s.netns.xfrm)
    x = db.lookup(0, usersa_info()[56:72], 0x1000, X.IPPROTO_ESP, X.AF_INET)
    x.curlft.bytes, x.curlft.packets = 1200, 1
    assert db.check_expire(x) == 0
    assert [h for h, _ in expire_events(mon)] == [0]          # soft byte limit, once
    assert x.curlft.use_time == kernel.clock.wall()
    x.curlft.bytes = 1300
    assert db.check_expire(x) == 0 and expire_events(mon) == []
    x.curlft.packets = 5
    assert db.check_expire(x) == -E.EINVAL                     # hard packet limit
    kernel.advance(0)
    assert [h for h, _ in expire_events(mon)] == [1]
    assert nl.errno_of(msg(M.GETSA, usersa_id()))[0] == -E.ESRCH


def test_namespace_removal_drops_states_and_timers(kernel):
    kernel.add_netns("other")
    sock = kernel.socket(N.NETLINK_XFRM, "other")
    kernel.deliver(sock, newsa(lft=lifetimes(hard_add=5)))
    assert kernel.next_deadline() is not None
    kernel.del_netns("other")
    assert kernel.next_deadline() is None


def test_replay_aevents_for_the_datapath(kernel, nl):
    """xfrm_replay_notify: CR after replay_maxdiff packets, CE when replay_maxage passed."""
    from xfrmd.xfrm.aevent import replay_advanced
    from xfrmd.xfrm.sadb import sad
    ae = Nl(kernel, groups=(G.AEVENTS,), pid=778)
    nl.ok(newsa(AEAD, N.nla_u32(A.REPLAY_THRESH, 3)))
    x = sad(nl.s.netns.xfrm).lookup(0, usersa_info()[56:72], 0x1000, X.IPPROTO_ESP, X.AF_INET)

    def packet(n=1):
        own_replay(x)[1] += n                  # input: highest sequence number seen
        replay_advanced(x)
        return [(struct.unpack_from("=I", m[4], 16 + 40)[0], attrs_of(m[4], 48)[A.REPLAY_VAL])
                for d in ae.recv_all() for m in messages(d)]

    assert packet() == [] and packet() == []                   # moved 2 < maxdiff 3
    assert packet() == [(X.XFRM_AE_CR, struct.pack("=III", 0, 3, 0))]
    # the replay timer (replay_maxage = 1 s) finds changes: XFRM_AE_CE from the timer
    own_replay(x)[1] += 1
    kernel.advance(1)
    got = [(struct.unpack_from("=I", m[4], 16 + 40)[0]) for d in ae.recv_all() for m in messages(d)]
    assert got == [X.XFRM_AE_CE]
    # nothing changed for a whole period: deferred, the next packet reports at once
    kernel.advance(1)
    assert ae.recv_all() == []
    assert packet() == [(X.XFRM_AE_CE, struct.pack("=III", 0, 5, 0))]


def test_replay_events_need_a_listener_and_an_idle_sa_defers(kernel, nl):
    from xfrmd.xfrm.aevent import replay_advanced
    from xfrmd.xfrm.sadb import sad
    nl.ok(newsa(AEAD))
    x = sad(nl.s.netns.xfrm).lookup(0, usersa_info()[56:72], 0x1000, X.IPPROTO_ESP, X.AF_INET)
    assert kernel.next_deadline() is None            # no timer per idle SA
    kernel.advance(5)
    ae = Nl(kernel, groups=(G.AEVENTS,), pid=778)
    own_replay(x)[1] += 1
    replay_advanced(x)                               # first expiry had deferred: CE at once
    (m,) = [m for d in ae.recv_all() for m in messages(d)]
    assert struct.unpack_from("=I", m[4], 16 + 40)[0] == X.XFRM_AE_CE


def test_dev_flush_removes_offloaded_states_silently(kernel, nl, mon, monkeypatch):
    from types import SimpleNamespace

    from xfrmd.xfrm import offload
    from xfrmd.xfrm.sadb import sad
    nl.ok(newsa(spi=1))
    nl.ok(newsa(spi=2))
    db = sad(nl.s.netns.xfrm)
    dev = object()
    deleted = []
    monkeypatch.setattr(offload, "xfrm_dev_state_delete", lambda x: deleted.append(x.id.spi))
    monkeypatch.setattr(offload, "copy_user_offload", lambda x: b"")
    x = db.lookup(0, usersa_info()[56:72], 1, X.IPPROTO_ESP, X.AF_INET)
    x.xso = SimpleNamespace(dev=dev)
    events(mon)
    assert [v.id.spi for v in db.dev_flush(dev)] == [1] and deleted == [1]
    assert events(mon) == []
    assert nl.errno_of(msg(M.GETSA, usersa_id(spi=1)))[0] == -E.ESRCH
    assert nl.errno_of(msg(M.GETSA, usersa_id(spi=2), N.NLM_F_REQUEST | N.NLM_F_ACK))[0] == 0


def test_nat_mapping_events_rate_limited_by_mtimer_thresh(kernel, nl):
    from xfrmd.xfrm.sadb import sad
    mapping = Nl(kernel, groups=(G.MAPPING,), pid=779)
    encap = N.nla(A.ENCAP, struct.pack("=H2s2s2x16s", X.UDP_ENCAP_ESPINUDP, (4500).to_bytes(2, "big"),
                                       (4500).to_bytes(2, "big"), bytes(16)))
    nl.ok(newsa(AEAD, encap, N.nla_u32(A.MTIMER_THRESH, 10), N.nla_u8(A.SA_DIR, X.XFRM_SA_DIR_IN)))
    db = sad(nl.s.netns.xfrm)
    x = db.lookup(0, usersa_info()[56:72], 0x1000, X.IPPROTO_ESP, X.AF_INET)
    new = bytes([203, 0, 113, 7])
    assert db.km_new_mapping(x, new, 31000) == 0
    (t, _, seq, pid, raw), = [m for d in mapping.recv_all() for m in messages(d)]
    assert (t, seq, pid, len(raw)) == (M.MAPPING, 0, 0, 16 + 64)
    um = X.XfrmUserMapping.decode(raw, 16)
    assert (um.id.spi, um.reqid, um.old_sport, um.new_sport) == (0x1000, 1, 4500, 31000)
    assert bytes(um.new_saddr)[:4] == new and bytes(um.old_saddr)[:4] == bytes([192, 0, 2, 1])
    kernel.advance(5)
    db.km_new_mapping(x, new, 31000)
    assert mapping.recv_all() == []                   # same port within mapping_maxage
    db.km_new_mapping(x, new, 31001)
    assert len(mapping.recv_all()) == 1               # a port change always reports
    kernel.advance(11)
    db.km_new_mapping(x, new, 31001)
    assert len(mapping.recv_all()) == 1


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 12), st.integers(0, 12), st.integers(0, 12))
def test_add_lifetimes_fire_at_their_second(soft, hard, soft_use):
    """xfrm_timer_handler on the manual clock: soft at soft_add (if before hard), hard at
    hard_add; an unused SA never reaches its use lifetime."""
    from xfrmd.clock import ManualClock
    from xfrmd.kernel import Kernel
    k = Kernel(ManualClock(), seed=1)
    nl, mon = Nl(k), Nl(k, groups=(G.EXPIRE,), pid=5)
    nl.ok(newsa(lft=lifetimes(soft_add=soft, hard_add=hard, soft_use=soft_use)))
    seen = []
    for t in range(1, 16):
        k.advance(1)
        seen += [(t, h) for h, _ in expire_events(mon)]
    want = []
    if soft and (not hard or soft < hard):
        want.append((soft, 0))
    if hard:
        want.append((hard, 1))
    assert seen == want
