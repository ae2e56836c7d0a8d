"""Fault injection in the sans-IO kernel (xfrmd/fault.py, `xfrmd ctl fault`): what each
action puts on the wire — the errno and extack of a refused request (and nothing stored),
an answer dropped or held back exactly N times, NLM_F_DUMP_INTR where
nl_dump_check_consistent puts it, ENOBUFS on a subscriber's next read."""
from __future__ import annotations

import errno as E
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netlink_codec import netlink as N
from netlink_codec import xfrm as X
from xfrmd.fault import MAX_DELAY
from xfrmd.netlink.socket import F_SOCK_ERROR

from .sad_helpers import REQ_ACK, M, Nl, ack_info, messages, msg, newsa, usersa_id

G = X.XfrmNlGrp
DUMP = N.NLM_F_REQUEST | N.NLM_F_DUMP


@pytest.fixture
def nl(kernel):
    return Nl(kernel)


def sa_count(nl) -> int:
    return sum(1 for d in nl.send(msg(M.GETSA, b"", DUMP)) for m in messages(d) if m[0] == M.NEWSA)


def arm(kernel, **req):
    return kernel.faults.add(req)


def test_fail_answers_errno_and_extack_and_stores_nothing(nl, kernel):
    arm(kernel, type="XFRM_MSG_NEWSA", action="fail", errno="ENOMEM", extack="xfrmd fault: no memory")
    (ack,) = [m for d in nl.send(newsa(seq=5)) for m in messages(d)]
    assert ack[0] == N.NLMSG_ERROR and ack[2] == 5
    assert ack_info(ack) == (-E.ENOMEM, "xfrmd fault: no memory")
    # the request echoed as netlink_ack does for an error (no NETLINK_CAP_ACK)
    assert ack[4][20:] .startswith(newsa(seq=5)[:16]) and ack[1] & N.NLM_F_ACK_TLVS
    assert sa_count(nl) == 0
    nl.ok(newsa())                       # spent: the next one is handled
    assert sa_count(nl) == 1 and kernel.faults.rules == []


def test_fail_follows_the_sockets_ack_options(kernel):
    """Without NETLINK_EXT_ACK no TLV (as for IKE daemons); with NETLINK_CAP_ACK only the
    request's header is echoed — what netlink_ack does for any handler's error."""
    plain = Nl(kernel, ext_ack=False)
    capped = Nl(kernel, pid=77)
    kernel.setsockopt(capped.s, N.SOL_NETLINK, N.NETLINK_CAP_ACK, 1)
    arm(kernel, type="XFRM_MSG_NEWSA", action="fail", errno="ENOMEM", extack="gone", count=2)
    req = newsa(seq=9)
    (a,) = [m for d in plain.send(req) for m in messages(d)]
    assert ack_info(a) == (-E.ENOMEM, None) and not a[1] & N.NLM_F_ACK_TLVS
    assert a[4][20:] == req                               # the whole request echoed
    (b,) = [m for d in capped.send(req) for m in messages(d)]
    assert ack_info(b) == (-E.ENOMEM, "gone") and b[1] & N.NLM_F_CAPPED
    assert b[4][20:36] == req[:16] and len(b[4]) < len(req) + 20


def test_fail_exactly_count_times_then_normal_and_without_extack(nl, kernel):
    arm(kernel, type="XFRM_MSG_NEWSA", action="fail", errno="22", count=2)
    assert nl.errno_of(newsa(spi=1)) == (-E.EINVAL, None)
    assert nl.errno_of(newsa(spi=2)) == (-E.EINVAL, None)
    assert nl.errno_of(newsa(spi=3)) == (0, None)
    assert sa_count(nl) == 1
    assert kernel.faults.listing() == [{"id": 1, "type": "XFRM_MSG_NEWSA", "action": "fail",
                                        "remaining": 0, "hits": 2, "errno": "EINVAL"}]


def test_fail_answers_a_request_without_ack_flag(nl, kernel):
    """An error is always answered (netlink_rcv_skb acks every failure)."""
    arm(kernel, type="XFRM_MSG_GETSA", action="fail", errno="EBUSY")
    (m,) = [m for d in nl.send(msg(M.GETSA, usersa_id(), N.NLM_F_REQUEST)) for m in messages(d)]
    assert ack_info(m) == (-E.EBUSY, None)


def test_other_types_namespaces_and_skip(nl, kernel):
    arm(kernel, type="XFRM_MSG_NEWSA", action="fail", errno="ENOSPC", netns="elsewhere")
    arm(kernel, type="XFRM_MSG_NEWSA", action="fail", errno="EEXIST", skip=1)
    nl.ok(msg(M.FLUSHSA, struct.pack("=B", 0)))      # other type: not counted
    nl.ok(newsa(spi=1))                               # skipped once
    assert nl.errno_of(newsa(spi=2)) == (-E.EEXIST, None)
    nl.ok(newsa(spi=3))
    assert [f["hits"] for f in kernel.faults.listing()] == [0, 1]


def test_pid_and_comm_match_the_sender(kernel):
    a, b = Nl(kernel, pid=100), Nl(kernel, pid=200)
    kernel.faults.comm_of = {100: "charon", 200: "pluto"}.get
    arm(kernel, type="any", action="fail", errno="EPERM", comm="pluto", count="always")
    arm(kernel, type="any", action="fail", errno="EAGAIN", pid=100)
    assert b.errno_of(newsa(spi=1)) == (-E.EPERM, None)
    assert b.errno_of(newsa(spi=2)) == (-E.EPERM, None)      # always
    assert a.errno_of(newsa(spi=3)) == (-E.EAGAIN, None)
    assert a.errno_of(newsa(spi=4)) == (0, None)
    kernel.faults.comm_of = None                               # comm unknown: no match
    assert b.errno_of(newsa(spi=5)) == (0, None)


def test_drop_applies_but_never_answers_exactly_count_times(nl, kernel):
    arm(kernel, type="XFRM_MSG_NEWSA", action="drop", count=2)
    assert nl.send(newsa(spi=1)) == []
    assert sa_count(nl) == 1                               # applied
    assert nl.send(newsa(spi=1)) == []                     # EEXIST, and that is lost too
    assert nl.errno_of(newsa(spi=2)) == (0, None)
    assert sa_count(nl) == 2


def test_drop_of_an_allocspi_reply_keeps_the_larval_state(nl, kernel):
    arm(kernel, type="XFRM_MSG_ALLOCSPI", action="drop")
    info = bytes(newsa()[16:16 + 224])
    req = msg(M.ALLOCSPI, info + struct.pack("=II", 0x100, 0x100), N.NLM_F_REQUEST)
    assert nl.send(req) == []
    # the SPI is taken: the same range again has nothing free
    assert nl.errno_of(req)[0] == -E.ENOENT


def test_drop_of_a_dump_sends_nothing_and_the_next_dump_runs(nl, kernel):
    for spi in range(1, 4):
        nl.ok(newsa(spi=spi))
    arm(kernel, type="XFRM_MSG_GETSA", action="drop")
    assert nl.send(msg(M.GETSA, b"", DUMP)) == []
    assert nl.s.dump is None
    assert sa_count(nl) == 3


def test_delay_holds_the_answer_on_a_kernel_timer(nl, kernel):
    normal = nl.send(newsa(spi=1, seq=3))
    arm(kernel, type="XFRM_MSG_NEWSA", action="delay", seconds="2.5")
    t0 = kernel.clock.now()
    assert nl.send(newsa(spi=2, seq=3)) == []
    assert sa_count(nl) == 2                               # applied at once
    assert kernel.next_deadline() == t0 + 2.5              # the reactor sleeps until then
    kernel.advance(2.4)
    assert nl.recv_all() == []
    kernel.advance(0.1)
    assert nl.recv_all() == normal                         # the same ACK, late
    assert nl.send(newsa(spi=3, seq=3)) == normal          # once only


def test_delayed_dump_runs_when_the_delay_ends(nl, kernel):
    for spi in range(1, 121):
        nl.ok(newsa(spi=spi))
    arm(kernel, type="XFRM_MSG_GETSA", action="delay", seconds=1)
    assert nl.send(msg(M.GETSA, b"", DUMP, seq=4)) == []
    kernel.recvd(nl.s, 32768)                              # a read meanwhile: still nothing
    assert nl.recv_all() == []
    nl.ok(newsa(spi=500))                                  # the dump will see it
    kernel.advance(1)
    late = nl.recv_all()
    assert len(late) > 2 and late == nl.send(msg(M.GETSA, b"", DUMP, seq=4))
    assert sum(1 for d in late for m in messages(d) if m[0] == M.NEWSA) == 121


def test_a_dump_already_running_is_not_taken_by_a_dropped_request(nl, kernel):
    for spi in range(1, 121):
        nl.ok(newsa(spi=spi))
    normal = nl.send(msg(M.GETSA, b"", DUMP, seq=4))
    kernel.deliver(nl.s, msg(M.GETSA, b"", DUMP, seq=4))
    first = kernel.recv(nl.s)                              # the dump is running
    arm(kernel, type="XFRM_MSG_NEWSA", action="drop")
    kernel.deliver(nl.s, newsa(spi=500))                   # its ACK is lost, not the dump
    assert [first] + nl.recv_all() == normal


def test_delayed_answer_to_a_closed_socket_is_discarded(nl, kernel):
    arm(kernel, type="XFRM_MSG_NEWSA", action="delay", seconds=1)
    nl.send(newsa())
    kernel.close(nl.s)
    assert kernel.advance(1) == 1 and nl.s.rx_bytes == 0


def test_dump_intr_flags_the_first_message_after_the_first_datagram(nl, kernel):
    for spi in range(1, 121):
        nl.ok(newsa(spi=spi))
    normal = nl.send(msg(M.GETSA, b"", DUMP, seq=8))
    assert not any(m[1] & N.NLM_F_DUMP_INTR for d in normal for m in messages(d))
    arm(kernel, type="XFRM_MSG_GETSA", action="dump-intr")
    nl.send(msg(M.GETSA, usersa_id(spi=5), N.NLM_F_REQUEST))   # not a dump: not counted
    assert kernel.faults.listing()[0]["hits"] == 0
    got = nl.send(msg(M.GETSA, b"", DUMP, seq=8))
    assert len(got) == len(normal) > 2
    flagged = [(i, j) for i, d in enumerate(got) for j, m in enumerate(messages(d))
               if m[1] & N.NLM_F_DUMP_INTR]
    assert flagged == [(1, 0)]
    # otherwise the same bytes
    first = messages(got[1])[0][4]
    assert first[:6] + struct.pack("=H", struct.unpack_from("=H", first, 6)[0] & ~N.NLM_F_DUMP_INTR) \
        + first[8:] == messages(normal[1])[0][4]
    assert got[0] == normal[0] and got[2:] == normal[2:]


def test_dump_intr_counts_only_dumps(nl, kernel):
    """NLM_F_EXCL|NLM_F_CREATE is 0x600 and NLM_F_ROOT alone is not a dump for xfrm_user:
    neither consumes the rule."""
    arm(kernel, type="any", action="dump-intr")
    nl.ok(newsa(flags=REQ_ACK | N.NLM_F_EXCL | N.NLM_F_CREATE))
    nl.send(msg(M.GETSA, usersa_id(), N.NLM_F_REQUEST | N.NLM_F_ROOT))
    assert kernel.faults.listing()[0]["hits"] == 0
    got = [m for d in nl.send(msg(M.GETSA, b"", DUMP)) for m in messages(d)]
    assert got[-1][1] & N.NLM_F_DUMP_INTR and kernel.faults.listing()[0]["hits"] == 1


def test_dump_intr_on_a_one_datagram_dump_flags_done(nl, kernel):
    nl.ok(newsa())
    arm(kernel, type="XFRM_MSG_GETSA", action="dump-intr")
    got = [m for d in nl.send(msg(M.GETSA, b"", DUMP, seq=8)) for m in messages(d)]
    assert [(m[0], m[1]) for m in got] == [(M.NEWSA, N.NLM_F_MULTI),
                                           (N.NLMSG_DONE, N.NLM_F_MULTI | N.NLM_F_DUMP_INTR)]


def test_dump_intr_on_rtnetlink_link_dump(kernel):
    s = kernel.socket(N.NETLINK_ROUTE)
    kernel.bind(s)
    arm(kernel, type="RTM_GETLINK", action="dump-intr")
    kernel.deliver(s, N.encode_msg(18, DUMP, 1, 0, bytes(16)))
    out = []
    while (d := kernel.recv(s)) is not None:
        out += messages(d)
    assert out[-1][0] == N.NLMSG_DONE and out[-1][1] & N.NLM_F_DUMP_INTR
    assert not any(m[1] & N.NLM_F_DUMP_INTR for m in out[:-1])


def _is_enobufs(d: bytes) -> bool:
    return struct.unpack_from("=IHH", d)[2] == F_SOCK_ERROR and struct.unpack_from("=i", d, 8)[0] == -E.ENOBUFS


def test_overflow_of_a_group_loses_the_event_and_reports_enobufs(nl, kernel):
    sa_mon = Nl(kernel, groups=(G.SA,), pid=700)
    acq_mon = Nl(kernel, groups=(G.ACQUIRE,), pid=701)
    arm(kernel, type="XFRM_MSG_NEWSA", action="overflow", group="XFRMNLGRP_SA")
    assert nl.errno_of(newsa(spi=1)) == (0, None)          # applied and answered
    got = sa_mon.recv_all()
    assert len(got) == 1 and _is_enobufs(got[0])            # the event is lost
    assert acq_mon.recv_all() == []                         # not a member: untouched
    nl.ok(newsa(spi=2))                                     # afterwards events flow again
    (ev,) = [m for d in sa_mon.recv_all() for m in messages(d)]
    assert ev[0] == M.NEWSA


def test_overflow_of_a_port_even_without_an_event(nl, kernel):
    a = Nl(kernel, groups=(G.ACQUIRE,), pid=700)
    b = Nl(kernel, groups=(G.ACQUIRE,), pid=701)
    arm(kernel, type="XFRM_MSG_NEWSA", action="overflow", port=a.s.portid)
    nl.ok(newsa())
    (d,) = a.recv_all()
    assert _is_enobufs(d) and b.recv_all() == []
    assert a.s.rcvbuf == b.s.rcvbuf                         # its buffer is back to normal


def test_overflow_respects_netlink_no_enobufs(nl, kernel):
    mon = Nl(kernel, groups=(G.SA,), pid=700)
    kernel.setsockopt(mon.s, N.SOL_NETLINK, N.NETLINK_NO_ENOBUFS, 1)
    arm(kernel, type="XFRM_MSG_NEWSA", action="overflow")
    nl.ok(newsa())
    assert mon.recv_all() == []


@pytest.mark.parametrize("req,text", [
    ({"type": "XFRM_MSG_NOSUCH", "action": "drop"}, "unknown message type 'XFRM_MSG_NOSUCH'"),
    ({"type": "RTM_NEWSA", "action": "drop"}, "unknown message type 'RTM_NEWSA'"),
    ({"type": "any", "action": "explode"}, "unknown action 'explode'"),
    ({"type": "any", "action": "fail"}, "fail needs an errno"),
    ({"type": "any", "action": "fail", "errno": "ENOPE"}, "unknown errno 'ENOPE'"),
    ({"type": "any", "action": "fail", "errno": "0"}, "errno 0 out of range"),
    ({"type": "any", "action": "drop", "extack": "x"}, "extack goes with fail"),
    ({"type": "any", "action": "delay", "seconds": "soon"}, "delay needs SECONDS"),
    ({"type": "any", "action": "delay", "seconds": "-1"}, "delay SECONDS must be within"),
    ({"type": "any", "action": "delay", "seconds": "nan"}, "delay SECONDS must be within"),
    ({"type": "any", "action": "drop", "count": "0"}, "count must be at least 1"),
    ({"type": "any", "action": "drop", "count": "x"}, "count must be a number"),
    ({"type": "XFRM_MSG_NEWSA", "action": "dump-intr"}, "dump-intr needs a dump request type"),
    ({"type": "any", "action": "overflow", "group": "XFRMNLGRP_NOPE"}, "unknown multicast group"),
    ({"type": "any", "action": "overflow", "group": 1, "port": 5}, "not both"),
    ({"type": "any", "action": "drop", "group": 1}, "group and port go with overflow"),
])
def test_bad_rules_are_refused_with_one_line(kernel, req, text):
    with pytest.raises(ValueError, match=text.replace("(", r"\(")) as e:
        kernel.faults.add(req)
    assert "\n" not in str(e.value)
    assert kernel.faults.rules == []


def test_extack_of_any_json_type_is_sent_as_text(nl, kernel):
    arm(kernel, type="any", action="fail", errno=5, extack=42)
    assert nl.errno_of(newsa()) == (-E.EIO, "42")


def test_names_are_case_insensitive_and_listed_in_kernel_terms(kernel):
    r = arm(kernel, type="rtm_newlink", action="overflow", group="rtnlgrp_link", count="always",
            netns="left", comm="charon")
    assert r.as_dict() == {"id": 1, "type": "RTM_NEWLINK", "action": "overflow",
                           "remaining": "always", "hits": 0, "netns": "left", "comm": "charon",
                           "group": "RTNLGRP_LINK"}
    assert kernel.faults.clear() == 1 and kernel.faults.listing() == []


_noise = st.one_of(st.none(), st.integers(-2**40, 2**40), st.floats(allow_nan=True),
                   st.text(max_size=12), st.booleans())
# per key: a plausible value or noise, so that most requests get far enough to be armed
_GOOD = {"type": st.sampled_from(["XFRM_MSG_NEWSA", "XFRM_MSG_GETSA", "RTM_GETLINK", "any"]),
         "errno": st.sampled_from(["ENOMEM", "22", "EINVAL"]),
         "extack": st.one_of(st.text(max_size=20), st.integers()),
         "seconds": st.sampled_from([0, "0.5", 3, "86400"]),
         "count": st.sampled_from([1, "2", "always"]), "skip": st.sampled_from([0, "1"]),
         "netns": st.sampled_from(["default", 7]), "pid": st.sampled_from([4242, "4242"]),
         "comm": st.sampled_from(["ip", 5]), "group": st.sampled_from(["XFRMNLGRP_SA", 3, "0x4"]),
         "port": st.sampled_from([4242, "0"])}


_ACTION_KEYS = {"fail": ("errno", "extack"), "delay": ("seconds",), "overflow": ("group", "port"),
                "drop": (), "dump-intr": ()}


@st.composite
def _fault_requests(draw):
    """Mostly what the action takes (plausible values or noise), sometimes a stray key."""
    action = draw(st.sampled_from(list(_ACTION_KEYS)))
    keys = ["type", "count", "skip", "netns", "pid", "comm"] + list(_ACTION_KEYS.get(action, ()))
    req = draw(st.fixed_dictionaries({}, optional={k: st.one_of(*[_GOOD[k]] * 7, _noise)
                                                   for k in keys}))
    if draw(st.integers(0, 9)) == 0:
        k = draw(st.sampled_from(sorted(_GOOD)))
        req[k] = draw(st.one_of(_GOOD[k], _noise))
    req["action"] = action
    return req


@settings(max_examples=400, deadline=None)
@given(_fault_requests())
def test_any_service_request_is_armed_or_refused_with_einval(req):
    """Whatever a client sends to fault_add: a rule, or EINVAL with one line — never an
    exception, and a refused request arms nothing."""
    from xfrmd import services
    from xfrmd.clock import ManualClock
    from xfrmd.kernel import Kernel
    k = Kernel(ManualClock())
    if "default" not in k.namespaces:
        k.add_netns("default")
    res = services.handle(k, "default", dict(req, op="fault_add"))
    if res["errno"]:
        assert res["errno"] == E.EINVAL and "\n" not in res["error"] and k.faults.rules == []
    else:
        assert len(k.faults.rules) == 1 and res["fault"]["action"] == req["action"]
        nl = Nl(k)                          # and it fires without an exception
        nl.send(newsa())
        nl.send(msg(M.GETSA, b"", DUMP))
        k.advance(MAX_DELAY)
        nl.recv_all()
    res = services.handle(k, "default", {"op": "fault_clear", "id": req.get("pid")})
    assert res["errno"] in (0, E.ENOENT, E.EINVAL)


def test_fault_ops_need_the_servers_owner_and_work_in_any_namespace(kernel):
    """Arming a fault is a `xfrmd ctl` verb: another uid gets EPERM (docs/security.md); the
    owner reaches it whatever namespace the connection named (a pair has no "default")."""
    from xfrmd import services
    from xfrmd.capability import Credentials
    other = Credentials(pid=5, uid=1000, owner=False, net_admin=True, net_admin_init=False)
    for op in ("fault_add", "fault_list", "fault_clear"):
        res = services.handle(kernel, "default", {"op": op, "type": "any", "action": "drop"},
                              cred=other)
        assert res["errno"] == E.EPERM and "owner" in res["error"]
    assert kernel.faults.rules == []
    res = services.handle(kernel, "no-such-ns", {"op": "fault_add", "type": "any", "action": "drop"},
                          cred=Credentials())
    assert res["errno"] == 0 and len(kernel.faults.rules) == 1
