"""Kernel ACQUIRE (xfrm_state_find → km_query → build_acquire) through the ``acquire`` service
op: the message on XFRMNLGRP_ACQUIRE, the larval state it leaves, and how ALLOCSPI / NEWSA /
the acquire timeout consume that state."""
import errno as E
import struct

import pytest

from netlink_codec import netlink as N
from netlink_codec import xfrm as X
from xfrmd import services

from .sad_helpers import AEAD, A, M, Nl, attr_types, attrs_of, messages, msg, usersa_info

G = X.XfrmNlGrp
FLOW = {"src": "10.0.0.1", "dst": "10.0.1.1", "proto": "tcp", "dport": 443,
        "tmpl_src": "192.0.2.1", "tmpl_dst": "198.51.100.1", "reqid": 5, "xfrm": "esp",
        "mode": "tunnel"}


def query(kernel, **req):
    return services.handle(kernel, "default", {"op": "acquire", **req})


def dump(nl):
    out = [m for d in nl.send(msg(M.GETSA, b"", N.NLM_F_REQUEST | N.NLM_F_DUMP)) for m in messages(d)]
    return [X.XfrmUsersaInfo.decode(m[4], 16) for m in out if m[0] == M.NEWSA], out


def test_without_key_manager_nothing_happens(kernel):
    nl = Nl(kernel)
    res = query(kernel, **FLOW)
    assert res["errno"] == E.ESRCH and "no key manager" in res["error"]
    assert dump(nl)[0] == []


def test_acquire_message_layout_and_larval_state(kernel):
    km = Nl(kernel, groups=(G.ACQUIRE,))
    res = query(kernel, **FLOW, mark=0x10, mask=0xff, if_id=3)
    assert res == {"errno": 0, "acquired": [5], "resolved": []}
    (t, flags, seq, pid, raw), = [m for d in km.recv_all() for m in messages(d)]
    assert (t, flags, seq, pid) == (M.ACQUIRE, 0, 0, 0)
    ua = X.XfrmUserAcquire.decode(raw, 16)
    assert bytes(ua.id.daddr)[:4] == bytes([198, 51, 100, 1]) and ua.id.spi == 0
    assert ua.id.proto == X.IPPROTO_ESP and bytes(ua.saddr)[:4] == bytes([192, 0, 2, 1])
    assert (ua.sel.prefixlen_d, ua.sel.proto, ua.sel.dport, ua.sel.dport_mask) == (32, 6, 443, 0xFFFF)
    assert ua.policy.dir == X.XFRM_POLICY_OUT and ua.policy.share == 0
    assert (ua.aalgos, ua.ealgos, ua.calgos) == (0xFFFFFFFF,) * 3
    assert ua.seq == 1
    assert attr_types(raw, 280) == [A.TMPL, A.POLICY_TYPE, A.MARK, A.IF_ID]
    at = attrs_of(raw, 280)
    tmpl = X.XfrmUserTmpl.decode(at[A.TMPL])
    assert (tmpl.reqid, tmpl.mode, tmpl.family) == (5, X.XFRM_MODE_TUNNEL, X.AF_INET)
    assert at[A.POLICY_TYPE] == bytes(6)                     # main, nla_len 10
    # the larval state: dir out, km.seq = acquire seq, spi 0, expires after acq_expires
    nl = Nl(kernel)
    (info,), out = dump(nl)
    assert info.id.spi == 0 and info.seq == 1 and info.reqid == 5
    assert info.lft.hard_add_expires_seconds == 30
    sa_attrs = attrs_of(out[0][4], 224)
    assert sa_attrs[A.SA_DIR] == bytes([X.XFRM_SA_DIR_OUT])
    assert sa_attrs[A.MARK] == struct.pack("=II", 0x10, 0xff)
    # a second packet of the flow finds the acquire in progress: no new message
    assert query(kernel, **FLOW, mark=0x10, mask=0xff, if_id=3)["acquired"] == []
    assert km.recv_all() == []


def test_acquire_sequence_numbers_increase_kernel_wide(kernel):
    km = Nl(kernel, groups=(G.ACQUIRE,))
    query(kernel, **FLOW)
    query(kernel, **dict(FLOW, reqid=6))
    seqs = [X.XfrmUserAcquire.decode(m[4], 16).seq for d in km.recv_all() for m in messages(d)]
    assert seqs == [1, 2]


def test_allocspi_with_acquire_seq_takes_the_larval_state(kernel):
    km = Nl(kernel, groups=(G.ACQUIRE,))
    query(kernel, **FLOW)
    km.recv_all()
    payload = usersa_info(src="192.0.2.1", dst="198.51.100.1", spi=0, reqid=5, seq=1) + \
        struct.pack("=II", 0xc000, 0xc000)
    out = [m for d in km.send(msg(M.ALLOCSPI, payload, N.NLM_F_REQUEST)) for m in messages(d)]
    info = X.XfrmUsersaInfo.decode(out[0][4], 16)
    assert info.id.spi == 0xc000 and info.seq == 1
    assert len(dump(km)[0]) == 1                 # the same state, now with an SPI


def test_newsa_with_acquire_seq_replaces_larval_state(kernel):
    km = Nl(kernel, groups=(G.ACQUIRE, G.EXPIRE))
    query(kernel, **FLOW)
    km.recv_all()
    km.ok(msg(M.NEWSA, usersa_info(src="192.0.2.1", dst="198.51.100.1", spi=0x1234, reqid=5, seq=1) + AEAD))
    (info,), _ = dump(km)
    assert info.id.spi == 0x1234 and info.seq == 1
    # the larval state left silently: nothing expires later
    kernel.advance(31)
    assert km.recv_all() == []
    # and the flow now resolves to the SA: no acquire
    assert query(kernel, **FLOW) == {"errno": 0, "acquired": [], "resolved": [0x1234]}


def test_larval_state_times_out_with_hard_expire(kernel):
    km = Nl(kernel, groups=(G.ACQUIRE, G.EXPIRE))
    query(kernel, **FLOW)
    km.recv_all()
    kernel.advance(30)
    (t, _, _, _, raw), = [m for d in km.recv_all() for m in messages(d)]
    assert t == M.EXPIRE and raw[16 + 224] == 1
    assert dump(km)[0] == []
    # after the timeout the next packet triggers a fresh acquire with a new sequence number
    query(kernel, **FLOW)
    assert [X.XfrmUserAcquire.decode(m[4], 16).seq for d in km.recv_all() for m in messages(d)] == [2]


def test_bad_requests(kernel):
    assert query(kernel, src="10.0.0.1", dst="2001:db8::1")["errno"] == E.EINVAL
    assert query(kernel, src="nonsense", dst="10.0.0.1")["errno"] == E.EINVAL
    assert query(kernel, src="10.0.0.1", dst="10.0.0.2", policy=99)["errno"] == E.ENOENT


def test_ctl_verb_builds_the_query():
    from xfrmd.ctl import xfrm as ctl

    class Svc:
        def query(self, op, **fields):
            self.seen = (op, fields)
            return {"errno": 0, "acquired": [1], "resolved": []}

    svc = Svc()
    rc = ctl._acquire(svc, ["10.0.0.1", "10.0.1.1", "proto", "udp", "dport", "53", "reqid", "7",
                            "mark", "0x10"])
    assert rc == 0
    assert svc.seen == ("acquire", {"src": "10.0.0.1", "dst": "10.0.1.1", "proto": "udp",
                                    "dport": "53", "reqid": 7, "mark": 16})
    with pytest.raises(SystemExit):
        ctl._acquire(svc, ["10.0.0.1", "10.0.1.1", "bogus", "1"])


def test_user_acquire_sends_one_message_per_template_and_keeps_no_state(kernel):
    from .differential.test_sa_validation import USER_ACQUIRES
    km = Nl(kernel, groups=(G.ACQUIRE,))
    nl = Nl(kernel, pid=55)
    nl.ok(USER_ACQUIRES["two templates + mark"])
    got = [m for d in km.recv_all() for m in messages(d) if m[0] == M.ACQUIRE]
    assert [X.XfrmUserAcquire.decode(m[4], 16).id.proto for m in got] == [X.IPPROTO_ESP, X.IPPROTO_AH]
    assert [X.XfrmUserAcquire.decode(m[4], 16).seq for m in got] == [1, 2]
    # km_query copies the request's algorithm masks into each template as it goes
    first = attrs_of(got[0][4], 280)[A.TMPL]
    assert struct.unpack_from("=III", first, 52) == (1, 2, 3)
    assert struct.unpack_from("=III", first, 64 + 52) == (0xFF, 0xFFF, 0xFFFF)
    assert struct.unpack_from("=H", first, 24)[0] == X.AF_INET        # family 0 filled in
    assert dump(km)[0] == []
    err, text = nl.errno_of(USER_ACQUIRES["tmpl any"])
    assert (err, text) == (-E.EINVAL, "Invalid XFRM protocol in template")


def test_acquire_for_an_spd_policy_by_index(kernel):
    """`xfrmd ctl acquire … policy INDEX`: the policy as the SPD holds it (its templates,
    mark, if_id, priority) goes into the ACQUIRE."""
    from .differential.test_sa_validation import _tmpl
    from .sad_helpers import selector
    nl = Nl(kernel, pid=55)
    km = Nl(kernel, groups=(G.ACQUIRE,))
    sel = selector("10.0.0.0", "10.0.1.0", 24, 24, X.AF_INET)
    info = sel + struct.pack("=8Q4QIIBBBB4x", *([X.XFRM_INF] * 4), 0, 0, 0, 0, 0, 0, 0, 0,
                             77, 0, X.XFRM_POLICY_OUT, 0, 0, 0)
    nl.ok(msg(M.NEWPOLICY, info + N.nla(A.TMPL, _tmpl(reqid=9)) + N.nla(A.MARK, struct.pack("=II", 5, 0xff))))
    pols = [m for d in nl.send(msg(M.GETPOLICY, b"", N.NLM_F_REQUEST | N.NLM_F_DUMP)) for m in messages(d)
            if m[0] == M.NEWPOLICY]
    index = X.XfrmUserpolicyInfo.decode(pols[0][4], 16).index
    res = query(kernel, src="10.0.0.5", dst="10.0.1.7", proto="udp", dport=53, policy=index)
    assert res == {"errno": 0, "acquired": [9], "resolved": []}
    (t, _, _, _, raw), = [m for d in km.recv_all() for m in messages(d)]
    ua = X.XfrmUserAcquire.decode(raw, 16)
    assert ua.policy.index == index and ua.policy.priority == 77 and ua.policy.sel.prefixlen_d == 24
    assert (ua.sel.prefixlen_d, ua.sel.dport) == (32, 53)
    assert attrs_of(raw, 280)[A.MARK] == struct.pack("=II", 5, 0xff)
    # the larval state carries the policy's mark
    (info2,), out = dump(nl)
    assert attrs_of(out[0][4], 224)[A.MARK] == struct.pack("=II", 5, 0xff) and info2.reqid == 9


def test_acquire_for_a_flow_uses_the_best_matching_out_policy(kernel):
    from .differential.test_sa_validation import _tmpl
    from .sad_helpers import selector
    nl = Nl(kernel, pid=55)
    km = Nl(kernel, groups=(G.ACQUIRE,))

    def policy(plen, prio, reqid, action=0, dport=0):
        sel = bytearray(selector("10.0.0.0", "10.0.1.0", plen, plen, X.AF_INET, 17 if dport else 0))
        if dport:
            struct.pack_into(">HH", sel, 32, dport, 0xFFFF)
        info = bytes(sel) + struct.pack("=8Q4QIIBBBB4x", *([X.XFRM_INF] * 4), 0, 0, 0, 0, 0, 0, 0,
                                        0, prio, 0, X.XFRM_POLICY_OUT, action, 0, 0)
        nl.ok(msg(M.NEWPOLICY, info + N.nla(A.TMPL, _tmpl(reqid=reqid))))

    policy(16, 100, 1)
    policy(24, 50, 2)
    policy(24, 50, 3, dport=53)        # same priority, younger: loses the tie
    assert query(kernel, src="10.0.0.5", dst="10.0.1.7", proto="udp", dport=53)["acquired"] == [2]
    assert query(kernel, src="10.0.0.5", dst="10.0.9.7")["acquired"] == [1]
    assert query(kernel, src="10.9.0.5", dst="10.0.1.7") == {"errno": 0, "policy": None,
                                                             "acquired": [], "resolved": []}
    policy(32, 1, 4, action=X.XFRM_POLICY_BLOCK)
    assert query(kernel, src="10.0.0.0", dst="10.0.1.0")["errno"] == E.EPERM
    assert len([m for d in km.recv_all() for m in messages(d)]) == 2


def test_existing_sa_serves_the_flow_even_dying_but_only_if_its_selector_covers_it(kernel):
    from .sad_helpers import AEAD, selector
    nl = Nl(kernel, pid=55)
    km = Nl(kernel, groups=(G.ACQUIRE,))
    # an SA for reqid 5 between the template addresses, selector 10.0.0.0/24 -> 10.0.1.0/24
    info = usersa_info(src="192.0.2.1", dst="198.51.100.1", spi=0x77, reqid=5,
                       sel=selector("10.0.0.0", "10.0.1.0", 24, 24, X.AF_INET),
                       lft=(X.XFRM_INF,) * 4 + (2, 0, 0, 0))
    nl.ok(msg(M.NEWSA, info + AEAD))
    kernel.advance(2)                                      # soft expiry: dying
    assert query(kernel, **FLOW) == {"errno": 0, "acquired": [], "resolved": [0x77]}
    other = dict(FLOW, dst="10.9.1.1")                     # outside the SA's selector
    assert query(kernel, **other)["acquired"] == [5]
    assert len([m for d in km.recv_all() for m in messages(d)]) == 1
