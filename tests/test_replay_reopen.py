"""Server._replay's REOPEN op (a kept connection's RELEASE, HELLO, options and BIND_AUTO,
once per `ip -batch` line) runs in C when built (xfrmd/netlink/_reopen.c). Whatever happens
between the lines, a run with it must answer the same bytes and leave the same kernel and
connection as the same run through the Python op."""
from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from netlink_codec import netlink as N
from netlink_codec import xfrm as X

from xfrmd import server as S
from xfrmd import transport as T
from xfrmd.embedded import DrivenServer, make_kernel

PID = 4242
C_OP = S.replay_reopen            # as built (the tests switch the module's name off and on)

pytestmark = pytest.mark.skipif(C_OP is None,
                                reason="C extensions not built (or XFRMD_PURE_PYTHON)")

between = st.sampled_from(["nothing", "queue", "group", "pending", "other_holds_pid",
                           "dirty", "no_sent_ts"])


def run(lines: list, c: bool, monkeypatch) -> tuple:
    monkeypatch.setattr(S, "replay_reopen", C_OP if c else None)
    k = make_kernel("bare")
    d = DrivenServer(k, PID)
    cl = d.client
    cl.setblocking(False)
    out = []

    def send(rec: bytes) -> None:
        cl.send(rec)
        d.pump.round(0.0)
        d.pump.end()
        while True:
            try:
                out.append(cl.recv(65536))
            except BlockingIOError:
                break

    hello = T.hello(N.NETLINK_XFRM, 3, "")
    send(hello)
    for seq, (rcvbuf, ext_ack, bind, what) in enumerate(lines, 1):
        conn = d.conn
        sock = conn.sock
        if sock is not None and seq > 1:
            if what == "queue":
                k.unicast(sock, N.encode_msg(N.NLMSG_NOOP, 0, 0, 0, b""))
            elif what == "group":
                k.setsockopt(sock, N.SOL_NETLINK, N.NETLINK_ADD_MEMBERSHIP, 3)
            elif what == "pending":
                conn.pending.append(b"x" * 20)
            elif what == "other_holds_pid" and sock.portid != PID:
                o = k.socket(N.NETLINK_XFRM, "default", pid=PID)
                k.bind(o, PID)
            elif what == "dirty":
                k.dirty.add(sock)
            elif what == "no_sent_ts":
                conn.sent_ts = None
        opening = [T.frame(T.F_RELEASE), hello] if seq > 1 else []
        opening += [T.setsockopt(1, 8, rcvbuf)]
        if ext_ack is not None:
            opening.append(T.setsockopt(270, 11, ext_ack))
        if bind is not None:
            opening.append(T.frame(T.F_BIND_AUTO, struct.pack("=II", bind, 0)))
        req = N.encode_msg(X.XfrmMsg.GETSADINFO, N.NLM_F_REQUEST | N.NLM_F_ACK, seq, 0,
                           b"\xff" * 4)
        send(T.batch(opening + [req]))
    ns = k.netns("default")
    socks = sorted((s.id, tuple(getattr(s, f) for f in ("protocol", "pid", "portid", "bound",
                    "_groups", "ext_ack", "rcvbuf", "client_ino", "closed", "cap_net_admin")),
                    list(s.rx), s.outq_probe is not None)
                   for ss in ns.sockets.values() for s in ss)
    ports = {p: {pid: s.id for pid, s in t.items()} for p, t in ns.ports.items()}
    conn = d.conn
    cstate = (conn.kind, conn.netns, conn.open_error, conn.pending_ts, conn.pending_frames,
              list(conn.pending), None if conn.sent_ts is None else list(conn.sent_ts),
              conn.sent_unread, conn.read_n, conn.sock.id if conn.sock else None)
    d.close()
    return out, socks, ports, sorted(s.id for s in k.dirty), cstate, next(k._sock_ids)


@settings(max_examples=60, deadline=None)
@given(rcvbuf=st.sampled_from([1 << 20, 4096, 0]), ext_ack=st.sampled_from([1, 0, None]),
       bind=st.sampled_from([PID, 77, None]), between=st.lists(between, min_size=2, max_size=10))
def test_the_c_op_is_the_python_op(rcvbuf, ext_ack, bind, between, monkeypatch_session):
    lines = [(rcvbuf, ext_ack, bind, w) for w in between]
    assert run(lines, True, monkeypatch_session) == run(lines, False, monkeypatch_session)


def test_the_usual_line_takes_the_c_op(monkeypatch):
    """`ip`'s line must take it (else each line silently pays the Python op again)."""
    calls = []
    real = C_OP

    def counted(*a):
        r = real(*a)
        calls.append(r)
        return r
    monkeypatch.setattr(S, "replay_reopen", counted)
    k = make_kernel("bare")
    d = DrivenServer(k, PID)
    cl = d.client
    hello = T.hello(N.NETLINK_XFRM, 3, "")
    cl.send(hello)
    for seq in range(1, 6):
        opening = ([T.frame(T.F_RELEASE), hello] if seq > 1 else []) + [
            T.setsockopt(1, 8, 1 << 20), T.setsockopt(270, 11, 1),
            T.frame(T.F_BIND_AUTO, struct.pack("=II", PID, 0))]
        cl.send(T.batch(opening + [N.encode_msg(X.XfrmMsg.GETSADINFO, N.NLM_F_REQUEST, seq, 0,
                                                b"\xff" * 4)]))
        d.pump.round(0.0)
        d.pump.end()
        (m,) = [cl.recv(65536)]
        assert struct.unpack_from("=IHHII", m)[1:5] == (X.XfrmMsg.NEWSADINFO, 0, seq, PID)
    assert calls and all(calls)
    s = d.conn.sock
    assert s.ext_ack and s.rcvbuf == 2 * 212992 and s.portid == PID and s.bound
    d.close()


@pytest.fixture(scope="module")
def monkeypatch_session():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()
