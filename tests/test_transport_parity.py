"""The C reactor round (xfrmd/_transport.c) against the Python one it replaces
(Server._reactor_py's round: _serve_events, _event, _readable, _dispatch, _batch,
_after_kernel_work): the same records, sent to two servers on two connections, give the
client the same datagrams and leave the connection and its socket in the same state —
whether the records are of the shapes the C turn takes (a bare datagram; a BATCH of READ
and SETSOCKOPT frames and one datagram) or not (other frames, truncated or nested
batches, garbage), whether the answers fit the receive buffer or overrun it."""
from __future__ import annotations

import errno as E
import os
import socket
import struct
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netlink_codec import netlink as N
from netlink_codec import xfrm as X
from xfrmd import server as S
from xfrmd import transport as T
from xfrmd.embedded import DrivenServer, make_kernel, running_server
from xfrmd.netlink.socket import skb_truesize


SOL_SOCKET, SO_RCVBUF, SO_RCVBUFFORCE = 1, 8, 33
SOL_NETLINK, NETLINK_NO_ENOBUFS, NETLINK_EXT_ACK = 270, 5, 11

GETSADINFO = N.encode_msg(X.XfrmMsg.GETSADINFO, N.NLM_F_REQUEST, 1, 0, b"\xff" * 4)
GETSPDINFO = N.encode_msg(X.XfrmMsg.GETSPDINFO, N.NLM_F_REQUEST | N.NLM_F_ACK, 2, 0,
                          b"\xff" * 4)
DUMP_POLICIES = N.encode_msg(X.XfrmMsg.GETPOLICY, N.NLM_F_REQUEST | N.NLM_F_DUMP, 3, 0, b"")
BAD_TYPE = N.encode_msg(0x7777, N.NLM_F_REQUEST | N.NLM_F_ACK, 4, 0, b"")


def newpolicy(i: int) -> bytes:
    sel = struct.pack("=16s16sHHHHHBBB3xiI", struct.pack(">I", 0x0A000000 + i).ljust(16, b"\0"),
                      bytes(16), 0, 0, 0, 0, 2, 32, 0, 0, 0, 0)
    info = sel + struct.pack("=8Q4QIIBBBB4x", *([2 ** 64 - 1] * 4), *([0] * 8), 0, 0, 1, 0, 0, 0)
    return N.encode_msg(X.XfrmMsg.NEWPOLICY, N.NLM_F_REQUEST | N.NLM_F_ACK, 10 + i, 0, info)


# many answers in one datagram: 60 GETSPDINFO with ACKs overrun a small buffer
BURST = b"".join(GETSPDINFO for _ in range(60))
DATAGRAMS = [GETSADINFO, GETSPDINFO, DUMP_POLICIES, BAD_TYPE, BURST, newpolicy(1), newpolicy(2),
             b"\x10\0\0\0\x00\x00\x01\x00", b"\x01\x02\x03"]


class Side:
    """A Server that never serves: one connection, its rounds driven by the test, in C
    (``pump``) or in Python."""

    def __init__(self, c: bool):
        d = DrivenServer(make_kernel("bare"), 4242, c)
        self.driven, self.kernel, self.server = d, d.kernel, d.server
        self.client, self.conn, self.pump = d.client, d.conn, d.pump

    def rounds(self) -> None:
        srv = self.server
        for _ in range(64):
            if self.pump is not None:
                n = self.pump.round(0.0)
                self.pump.end()
            else:
                events = srv.ep.poll(0, 256)
                n = len(events)
                srv._serve_events(events)
                srv._round_end(srv._after_kernel_work)
            if not n:
                return
        raise AssertionError("the rounds never ended")

    def send(self, records: list[bytes]) -> list:
        """Send ``records`` back to back, serve them, and read what came back."""
        for r in records:
            try:
                self.client.send(r)
            except OSError as e:
                return [("send", e.errno)]
        self.rounds()
        got = []
        while True:
            try:
                d = self.client.recv(1 << 17, socket.MSG_DONTWAIT)
            except BlockingIOError:
                break
            except OSError as e:
                got.append(("recv", e.errno))
                break
            got.append(d)
            if not d:
                break
        return got

    def state(self) -> tuple:
        c, srv = self.conn, self.server
        sock = c.sock
        return (c.fd in srv.by_fd, c.kind, c.read_n, c.sent_unread,
                None if c.sent_ts is None else list(c.sent_ts), len(c.pending), c.pending_ts,
                c.out, c.prefix,
                None if sock is None else (sock.portid, sock.rcvbuf, sock.no_enobufs,
                                           sock.ext_ack, sock.outq, sock.rx_bytes,
                                           len(sock.rx), sock.congested),
                self.kernel.stats.bad_frames, self.kernel.stats.internal_errors,
                self.kernel.stats.datagrams)

    def close(self) -> None:
        self.driven.close()


def _c_built() -> bool:
    return S._transport is not None


needs_c = pytest.mark.skipif(not _c_built(), reason="the C round is not built "
                                "(python3 -m xfrmd.cext build) or XFRMD_PURE_PYTHON=1")


def _frame(kind: int, payload: bytes) -> bytes:
    return T.frame(kind, payload)


reads = st.integers(0, 12).map(T.read_report)
setsockopts = st.builds(T.setsockopt,
                        st.sampled_from([SOL_SOCKET, SOL_NETLINK, 99]),
                        st.sampled_from([SO_RCVBUF, SO_RCVBUFFORCE, NETLINK_NO_ENOBUFS,
                                         NETLINK_EXT_ACK, 77]),
                        st.sampled_from([0, 1, 1000, 4096, 106496, -1]))
datagrams = st.sampled_from(DATAGRAMS)
odd_frames = st.sampled_from([
    _frame(T.F_SYNC, struct.pack("=I", 1)), _frame(T.F_RECVD, struct.pack("=I", 4096)),
    _frame(T.F_READ, b"\x01"),                        # short READ
    _frame(T.F_SETSOCKOPT, b"\x01\0\0\0"),            # short SETSOCKOPT
    _frame(T.F_NETNS_FD, struct.pack("=I", 3) + b"x\0"),
    _frame(99, b""), b"\0\0\0\0\1\0", _frame(T.F_BATCH, b"")])


# what a kept connection opens each `ip -batch` line's socket with (docs/protocol.md):
# noted by the server the first time, replayed after (Server._batch, _replay)
OPENING = [T.frame(T.F_RELEASE), T.hello(N.NETLINK_XFRM, 3, ""),
           T.setsockopt(SOL_SOCKET, SO_RCVBUF, 32768),
           T.setsockopt(SOL_NETLINK, NETLINK_EXT_ACK, 1),
           T.frame(T.F_BIND_AUTO, struct.pack("=II", 4242, 0))]


def ip_line(datagram: bytes) -> bytes:
    return T.batch(OPENING + [datagram])


@st.composite
def records(draw):
    """One record: mostly the shapes the shim sends, sometimes anything else."""
    shape = draw(st.integers(0, 10))
    if shape == 10:
        return ip_line(draw(datagrams))
    if shape <= 2:
        return draw(datagrams)
    if shape <= 6:
        frames = draw(st.lists(st.one_of(reads, setsockopts), min_size=0, max_size=3))
        if shape == 6:
            frames.append(draw(reads))
        return T.batch(frames + [draw(datagrams)])
    if shape == 7:                        # a batch with an uncommon part, or out of order
        parts = draw(st.lists(st.one_of(reads, setsockopts, datagrams, odd_frames),
                              min_size=1, max_size=4))
        return T.batch(parts)
    if shape == 8:                        # truncated or nested
        good = T.batch([draw(reads), draw(datagrams)])
        if draw(st.booleans()):
            return good[:draw(st.integers(9, len(good) - 1))]
        return T.batch([draw(reads), good])
    return draw(st.one_of(odd_frames, st.binary(min_size=0, max_size=24)))


def _pair():
    py, c = Side(False), Side(True)
    for side in (py, c):
        got = side.send([T.hello(N.NETLINK_XFRM), T.bind(0, 0)])
        assert T.parse_frame(got[0])[1] == T.F_BIND_REPLY
    return py, c


@needs_c
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(records(), min_size=1, max_size=5), min_size=1, max_size=5))
def test_the_c_round_answers_and_accounts_as_the_python_round(bursts):
    py, c = _pair()
    try:
        for burst in bursts:
            assert c.send(burst) == py.send(burst)
            assert c.state() == py.state()
    finally:
        py.close()
        c.close()


@needs_c
def test_a_charon_request_is_taken_in_c_and_reads_are_accounted():
    py, c = _pair()
    try:
        for i in range(5):
            rec = T.batch([T.read_report(i), T.setsockopt(SOL_SOCKET, SO_RCVBUF, 4096),
                           newpolicy(i)])
            a, b = c.send([rec]), py.send([rec])
            assert a == b and len(a) == 1
            assert struct.unpack_from("=i", a[0], 16)[0] == 0      # the ACK
            assert c.state() == py.state()
        # the last ACK is unread: it is what the connection still counts
        assert c.conn.read_n == 4 and c.conn.sent_unread == skb_truesize(len(a[0]))
        assert c.conn.sock.rcvbuf == 8192
    finally:
        py.close()
        c.close()


@needs_c
def test_an_ip_batch_line_is_taken_in_c_once_its_opening_frames_are_noted(monkeypatch):
    """The C turn replays a noted line's opening frames and delivers its request without
    Server._slow_record; a line whose REOPEN the C op declines (a datagram still queued on
    the old socket) is the Python's. Both answer and account as the Python round."""
    py, c = _pair()
    slow = []
    take = c.server._slow_record
    monkeypatch.setattr(c.server, "_slow_record",
                        lambda conn, rec: slow.append(rec) or take(conn, rec))
    try:
        for i in range(6):
            if i == 4:
                for side in (py, c):
                    side.kernel.unicast(side.conn.sock, N.encode_msg(N.NLMSG_NOOP, 0, 0, 0, b""))
            rec = ip_line(newpolicy(i))
            a, b = c.send([rec]), py.send([rec])
            assert a == b and len(a) == 1
            assert struct.unpack_from("=i", a[0], 16)[0] == 0      # the ACK
            assert c.state() == py.state()
        assert slow == [ip_line(newpolicy(0)), ip_line(newpolicy(4))]
    finally:
        py.close()
        c.close()


@needs_c
def test_a_burst_that_overruns_the_buffer_reports_enobufs_first_in_both():
    py, c = _pair()
    try:
        burst = [T.batch([T.setsockopt(SOL_SOCKET, SO_RCVBUF, 2048), T.read_report(0),
                          GETSPDINFO])] + [BURST] * 3
        a, b = c.send(burst), py.send(burst)
        assert a == b
        assert struct.unpack_from("=H", a[0], 6)[0] == T.F_SOCK_ERROR
        assert struct.unpack_from("=i", a[0], 8)[0] == -E.ENOBUFS
    finally:
        py.close()
        c.close()


@needs_c
def test_bad_frames_close_the_connection_and_are_counted_in_both():
    py, c = _pair()
    try:
        rec = T.batch([T.read_report(0), GETSADINFO])[:-3]         # truncated
        assert c.send([rec]) == py.send([rec]) == [b""]
        assert c.conn.fd not in c.server.by_fd and py.conn.fd not in py.server.by_fd
        assert c.kernel.stats.bad_frames == py.kernel.stats.bad_frames == 1
    finally:
        py.close()
        c.close()


@needs_c
def test_a_failing_deliver_is_an_internal_error_answered_einval(monkeypatch):
    """Server._deliver's guard: a bug outside the handlers answers EINVAL, counts an
    internal error, and the connection goes on."""
    py, c = _pair()
    try:
        for side in (py, c):
            def boom(sock, rec, _k=side.kernel):
                raise RuntimeError("boom")
            monkeypatch.setattr(side.kernel, "deliver", boom)
        rec = T.batch([T.read_report(0), GETSPDINFO])
        a, b = c.send([rec]), py.send([rec])
        assert a == b and len(a) == 1
        assert struct.unpack_from("=i", a[0], 16)[0] == -E.EINVAL
        assert c.conn.fd in c.server.by_fd
        assert c.kernel.stats.internal_errors == py.kernel.stats.internal_errors == 1
    finally:
        py.close()
        c.close()


@needs_c
def test_a_failing_setsockopt_costs_the_connection_not_the_server(monkeypatch):
    py, c = _pair()
    try:
        for side in (py, c):
            def boom(*a):
                raise RuntimeError("boom")
            monkeypatch.setattr(side.kernel, "setsockopt", boom)
        rec = T.batch([T.setsockopt(SOL_SOCKET, SO_RCVBUF, 4096), T.read_report(0),
                       GETSADINFO])
        assert c.send([rec]) == py.send([rec]) == [b""]
        assert c.conn.fd not in c.server.by_fd
        assert c.kernel.stats.internal_errors == py.kernel.stats.internal_errors == 1
    finally:
        py.close()
        c.close()


@needs_c
def test_the_server_runs_the_c_round_when_it_is_built():
    with running_server(make_kernel("bare")) as h:
        with h.netlink(N.NETLINK_XFRM) as nl:
            [m] = nl.request(X.XfrmMsg.GETSADINFO, 0, b"\xff" * 4)
            assert m.type == X.XfrmMsg.NEWSADINFO
        pumps = [s for s in _servers() if s._pump is not None]
        assert pumps


def _servers():
    import gc
    return [o for o in gc.get_objects() if isinstance(o, S.Server)]


def test_pure_python_runs_the_python_round():
    import subprocess
    import sys
    r = subprocess.run([sys.executable, "-c", "from xfrmd import server; print(server._transport)"],
                       env={**os.environ, "XFRMD_PURE_PYTHON": "1"}, capture_output=True,
                       text=True, check=True)
    assert r.stdout.strip() == "None"


@needs_c
def test_a_rounds_end_in_c_times_and_runs_timers_as_the_python_one():
    """Pump.end is _round_end: the timeout is the first live timer's, a cancelled first
    timer is popped (next_deadline), a due one runs, and what a timer queues goes out in
    the same round; a silent connection's deadline shortens the wait (_io_timeout)."""
    py, c = _pair()
    try:
        for side, end in ((py, lambda s=py: s.server._round_end(s.server._after_kernel_work)),
                          (c, lambda s=c: s.pump.end())):
            k, ran = side.kernel, []
            assert end() == -1.0                                   # no timer
            k.add_timer(0.01, lambda: ran.append("never")).cancel()    # first, cancelled
            t = k.add_timer(0.05, lambda: (ran.append("due"), k.unicast(side.conn.sock, GETSADINFO)))
            assert 0.0 < end() <= 0.05                              # the live one, behind
            assert len(k._timers) == 1                              # the cancelled one popped
            time.sleep(0.06)
            assert end() == -1.0 and ran == ["due"] and t.cancelled
            assert side.client.recv(4096, socket.MSG_DONTWAIT) == GETSADINFO   # flushed
            k.add_timer(7200.0, lambda: None)
            assert end() == S.MAX_POLL_SECONDS
            side.server.hello_timeout = 1.0
            side.server._unhello.append(side.conn)                  # greeted: popped, no timeout
            side.conn.greeted = True
            assert end() == S.MAX_POLL_SECONDS and not side.server._unhello
    finally:
        py.close()
        c.close()
