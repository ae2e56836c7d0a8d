"""Bounded memory per client: the receive buffer as netlink_unicast,
netlink_attachskb and netlink_overrun account it, with the figures Linux 6.18 gives in a
fresh netns (measured on this machine; skb sizes differ between kernel builds, so they are
not compared live); a client that never reads cannot grow the server; silent
connections time out; fd exhaustion and --max-clients do not spin or crash the server."""
from __future__ import annotations

import errno as E
import fcntl
import os
import resource
import socket
import struct
import subprocess
import sys
import termios
import time
from types import SimpleNamespace

import pytest

from netlink_codec import netlink as N
from xfrmd import server as server_mod
from xfrmd import transport as T
from xfrmd.client import NetlinkSocket
from xfrmd.netlink.socket import F_SOCK_ERROR, rcvbuf_for, skb_truesize
from xfrmd.shim import path as shim_path
from xfrmd.testing import make_kernel, running_server

from .conftest import XFRMD, require_shim

RTM_GETLINK = 18
SOL_SOCKET, SO_RCVBUF = 1, 8
NETLINK_NO_ENOBUFS = 5


def getlink(seq: int, flags: int = N.NLM_F_REQUEST, index: int = 1) -> bytes:
    return N.encode_msg(RTM_GETLINK, flags, seq, 0, struct.pack("=BxHiII", 0, 0, index, 0, 0))


def getlink_dump(seq: int) -> bytes:
    return N.encode_msg(RTM_GETLINK, N.NLM_F_REQUEST | N.NLM_F_DUMP, seq, 0,
                        struct.pack("=BxHiII", 0, 0, 0, 0, 0))


def classify(d: bytes):
    """"ENOBUFS" for the socket error, else (type, seq, error or None) of the first message."""
    if d[:4] == b"\0\0\0\0":
        assert struct.unpack_from("=H", d, 6)[0] == F_SOCK_ERROR
        return E.errorcode[-struct.unpack_from("=i", d, 8)[0]]
    h = N.split_messages(d)[0]
    err = struct.unpack_from("=i", d, 16)[0] if h.type == N.NLMSG_ERROR else None
    return h.type, h.seq, err


def drain(k, s) -> list:
    out = []
    while (d := k.recv(s)) is not None:
        out.append(classify(d))
    return out


@pytest.fixture
def rt():
    k = make_kernel("bare")
    return k, k.socket(N.NETLINK_ROUTE)


# -- the model, against the real kernel's figures -----------------------------------------

def test_truesize_and_rcvbuf_as_linux_charges_them():
    # a 1468-byte RTM_NEWLINK (lo) and an ACK, as `ss -m`-style counting on 6.18 shows them
    assert skb_truesize(1468) == 2304 and skb_truesize(36) == 832
    assert skb_truesize(3776) == 4352 and skb_truesize(32448) == 33024   # dump steps
    # sock_setsockopt: doubled, capped by rmem_max (212992 here), at least SOCK_MIN_RCVBUF;
    # a negative SO_RCVBUF is a huge unsigned value, a negative SO_RCVBUFFORCE is 0
    assert rcvbuf_for(4096, False) == 8192
    assert rcvbuf_for(1 << 30, False) == rcvbuf_for(-1, False) == 425984
    assert rcvbuf_for(0, False) == rcvbuf_for(-1, True) == 2304
    assert rcvbuf_for(1 << 20, True) == 2097152


def test_unread_replies_past_the_buffer_are_dropped_and_enobufs_comes_first(rt):
    """400 RTM_GETLINK in one datagram, nothing read: the real kernel queues 92 replies
    (2304 bytes each of 212992), drops the rest and their error ACKs, and the next read
    fails with ENOBUFS before the 92 are read. Then the socket works again."""
    k, s = rt
    k.deliver(s, b"".join(getlink(i) for i in range(400)))
    got = drain(k, s)
    assert got[0] == "ENOBUFS"
    assert got[1:] == [(16, i, None) for i in range(92)]
    assert s.rx_bytes == 0 and not s.congested
    k.deliver(s, getlink(999, N.NLM_F_REQUEST | N.NLM_F_ACK))
    assert drain(k, s) == [(16, 999, None), (N.NLMSG_ERROR, 999, 0)]


def test_acks_count_against_the_buffer_too(rt):
    """With NLM_F_ACK each request queues a reply (2304) and an ACK (832): the real kernel
    queues 67 pairs and one more reply, then drops."""
    k, s = rt
    k.deliver(s, b"".join(getlink(i, N.NLM_F_REQUEST | N.NLM_F_ACK) for i in range(400)))
    got = drain(k, s)
    want = ["ENOBUFS"]
    for i in range(67):
        want += [(16, i, None), (N.NLMSG_ERROR, i, 0)]
    assert got == want + [(16, 67, None)]


def test_no_enobufs_drops_without_congesting(rt):
    """NETLINK_NO_ENOBUFS: no error and no congestion, so the -EAGAIN that rtnl_getlink
    returns for the dropped 93rd reply is ACKed and fits (832 bytes); the rest is dropped."""
    k, s = rt
    k.setsockopt(s, N.SOL_NETLINK, NETLINK_NO_ENOBUFS, 1)
    k.deliver(s, b"".join(getlink(i) for i in range(400)))
    got = drain(k, s)
    assert got == [(16, i, None) for i in range(92)] + [(N.NLMSG_ERROR, 92, -E.EAGAIN)]


def test_small_rcvbuf(rt):
    k, s = rt
    k.setsockopt(s, SOL_SOCKET, SO_RCVBUF, 4096)      # 8192: three replies on 6.18
    assert s.rcvbuf == 8192
    k.deliver(s, b"".join(getlink(i) for i in range(10)))
    assert drain(k, s) == ["ENOBUFS"] + [(16, i, None) for i in range(3)]


def test_a_dump_that_finds_no_room_continues_as_the_reader_reads(rt):
    """91 unread replies, then a dump request: its first step (4352 bytes) does not fit, so
    __netlink_dump_start answers ENOBUFS; the dump stays running and each read continues
    it (netlink_recvmsg). The real kernel gives: 91 replies, the ENOBUFS error, the dump's
    part, NLMSG_DONE."""
    k, s = rt
    k.deliver(s, b"".join(getlink(i) for i in range(91)))
    k.deliver(s, getlink_dump(5000))
    got = drain(k, s)
    assert got == [(16, i, None) for i in range(91)] + [
        (N.NLMSG_ERROR, 5000, -E.ENOBUFS), (16, 5000, None), (N.NLMSG_DONE, 5000, None)]


def test_a_dump_never_queues_more_than_the_buffer(rt):
    """Each dump step needs at most half the buffer in use (netlink_recvmsg), and one step
    is queued at a time: whatever the dump's size, what waits is one step."""
    k, s = rt
    k.setsockopt(s, SOL_SOCKET, SO_RCVBUF, 8192)
    for i in range(200):
        k.deliver(s, N.encode_msg(16, N.NLM_F_REQUEST | N.NLM_F_CREATE | N.NLM_F_EXCL, i, 0,
                                  struct.pack("=BxHiII", 0, 0, 0, 0, 0) +
                                  N.nla_string(3, f"d{i}") +
                                  N.nla(18, N.nla_string(1, "dummy"))))
        k.recv(s, 4096)
    k.deliver(s, getlink_dump(1))
    parts = 0
    while True:
        assert len(s.rx) == 1 and s.rx_bytes <= s.rcvbuf
        d = k.recv(s, 4096)
        assert d is not None
        t = classify(d)
        if t[0] == N.NLMSG_DONE:
            break
        assert t[0] == 16
        parts += 1
    assert parts > 10


# -- through the server ---------------------------------------------------------------

def _serve(path: str, *extra: str, stderr=subprocess.DEVNULL, limit: int | None = None):
    def lower():
        if limit:
            resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))
    p = subprocess.Popen(XFRMD + ["serve", "--socket", path, "--topology", "bare", "--quiet",
                                  *extra], stderr=stderr, preexec_fn=lower)
    deadline = time.monotonic() + 20
    while not os.path.exists(path):
        assert p.poll() is None, "server died"
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.05)
    return p


def _shim_python(path: str, prog: str) -> subprocess.CompletedProcess:
    """``python3 -c prog`` with the shim in LD_PRELOAD, talking to the server on ``path``;
    asserts that it exited 0."""
    env = dict(os.environ, LD_PRELOAD=shim_path(), XFRMD_SOCKET=path)
    r = subprocess.run([sys.executable, "-c", prog], env=env, capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return r


def _stop(p) -> None:
    p.terminate()
    p.wait(timeout=20)


def _status_kib(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(f"no {field}")


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_a_client_that_never_reads_cannot_grow_the_server(tmp_path):
    """The reproducer: datagrams packed with 4,000 RTM_GETLINK requests each,
    never read (before: +298 MiB for 50 of them, +58 MiB for the 10 here). The server's peak
    RSS stays within a bound; the client's first read fails with ENOBUFS, then it reads the
    92 replies that fit its buffer, as on Linux; and its socket keeps working."""
    path = str(tmp_path / "s.sock")
    p = _serve(path)
    try:
        c = NetlinkSocket(N.NETLINK_ROUTE, path=path)
        c.send(getlink(1, N.NLM_F_REQUEST | N.NLM_F_ACK))
        assert classify(c.recv())[0] == 16 and classify(c.recv()) == (N.NLMSG_ERROR, 1, 0)
        before = _status_kib(p.pid, "VmHWM")
        packed = b"".join(getlink(i) for i in range(4000))
        assert len(packed) <= T.MAX_RECORD
        c.sock.settimeout(60)
        for _ in range(10):
            c.send(packed)
        # answered after everything the datagrams produced (docs/protocol.md, SYNC)
        c.sock.send(T.frame(T.F_SYNC, struct.pack("=I", 1)))
        got = []
        while True:
            rec = c.sock.recv(T.MAX_RECORD)
            if T.is_frame(rec) and T.parse_frame(rec)[1] == T.F_SYNC_REPLY:
                break
            got.append(classify(rec))
        grown = _status_kib(p.pid, "VmHWM") - before
        assert grown < 16 * 1024, f"the server's peak RSS grew by {grown} KiB"
        assert got == ["ENOBUFS"] + [(16, i, None) for i in range(92)]
        c.send(getlink(4242, N.NLM_F_REQUEST | N.NLM_F_ACK))
        assert classify(c.recv()) == (16, 4242, None)
        assert classify(c.recv()) == (N.NLMSG_ERROR, 4242, 0)
        c.close()
    finally:
        _stop(p)


def test_connections_that_never_say_hello_are_closed(tmp_path):
    path = str(tmp_path / "s.sock")
    p = _serve(path, "--hello-timeout", "0.5")
    try:
        silent = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        silent.connect(path)
        greeted = NetlinkSocket(N.NETLINK_ROUTE, path=path)
        released = NetlinkSocket(N.NETLINK_ROUTE, path=path)
        released.sock.send(T.frame(T.F_RELEASE))      # kept for the next socket (the shim's pool)
        silent.settimeout(5)
        t0 = time.monotonic()
        assert silent.recv(100) == b""                # closed by the server
        assert 0.4 < time.monotonic() - t0 < 3
        time.sleep(0.5)
        greeted.send(getlink(1, N.NLM_F_REQUEST | N.NLM_F_ACK))
        assert classify(greeted.recv())[0] == 16
        released.sock.send(T.hello(N.NETLINK_ROUTE))
        released.sock.send(T.bind(0, 0))
        assert T.parse_frame(released.sock.recv(100))[1] == T.F_BIND_REPLY
        greeted.close(), released.close(), silent.close()
    finally:
        _stop(p)


def test_a_socket_unused_past_the_timeout_still_works(tmp_path):
    """The shim says HELLO when it connects (it defers the rest to the first datagram): a
    program that opens a netlink socket and uses it after the timeout gets its answers."""
    require_shim()
    path = str(tmp_path / "s.sock")
    p = _serve(path, "--hello-timeout", "0.3")
    prog = (
        "import socket, struct, time\n"
        "s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)\n"
        "time.sleep(1.0)\n"
        "s.bind((0, 0))\n"
        f"s.send({getlink(5, N.NLM_F_REQUEST | N.NLM_F_ACK)!r})\n"
        "d = s.recv(65536)\n"
        "print(struct.unpack_from('=HHI', d, 4))\n")
    try:
        r = _shim_python(path, prog)
        assert r.stdout.strip() == "(16, 0, 5)"
    finally:
        _stop(p)


def _connect_when_free(path: str) -> NetlinkSocket:
    """A connection once the server has seen an earlier one close (no order between them)."""
    deadline = time.monotonic() + 10
    while True:
        try:
            return NetlinkSocket(N.NETLINK_ROUTE, path=path)
        except (ConnectionError, BrokenPipeError):
            assert time.monotonic() < deadline
            time.sleep(0.05)


def test_max_clients(tmp_path):
    """Past --max-clients a connection is accepted and closed at once: the client reads EOF
    (the shim reports that it cannot reach the server); one line in the log per episode."""
    path = str(tmp_path / "s.sock")
    log = tmp_path / "log"
    with open(log, "w") as err:
        p = _serve(path, "--max-clients", "3", stderr=err)
    try:
        clients = [NetlinkSocket(N.NETLINK_ROUTE, path=path) for _ in range(3)]
        for _ in range(5):
            extra = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            extra.connect(path)
            extra.settimeout(5)
            assert extra.recv(100) == b""
            extra.close()
        with pytest.raises(ConnectionError):
            NetlinkSocket(N.NETLINK_ROUTE, path=path)
        for i, c in enumerate(clients):
            c.send(getlink(i, N.NLM_F_REQUEST | N.NLM_F_ACK))
            assert classify(c.recv())[0] == 16
        clients.pop().close()
        with _connect_when_free(path) as again:
            again.send(getlink(9, N.NLM_F_REQUEST | N.NLM_F_ACK))
            assert classify(again.recv()) == (16, 9, None)
        text = log.read_text()
        assert text.count("refusing new ones") == 1, text
        clients.append(_connect_when_free(path))   # full again
        # what a program under the shim sees: one line, and ECONNREFUSED
        require_shim("ip")
        r = subprocess.run(["ip", "link"], capture_output=True, text=True, timeout=30,
                           env=dict(os.environ, LD_PRELOAD=shim_path(), XFRMD_SOCKET=path))
        assert r.returncode != 0
        assert r.stderr.count("cannot reach the xfrmd server") == 1, r.stderr
        assert "Connection refused" in r.stderr
        for c in clients:
            c.close()
    finally:
        _stop(p)


def test_fd_exhaustion_backs_off_instead_of_spinning(tmp_path):
    """The server's RLIMIT_NOFILE is low and --max-clients above it: accept fails with
    EMFILE. The server logs one line, does not spin, keeps serving its clients, and accepts
    again once connections close."""
    path = str(tmp_path / "s.sock")
    log = tmp_path / "log"
    with open(log, "w") as err:
        p = _serve(path, "--max-clients", "10000", stderr=err, limit=64)
    extra = []
    try:
        c = NetlinkSocket(N.NETLINK_ROUTE, path=path)
        for _ in range(80):                       # past the limit; the rest wait in the backlog
            s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            s.connect(path)
            s.send(T.hello(N.NETLINK_ROUTE))
            extra.append(s)
        time.sleep(0.5)
        size0 = log.stat().st_size
        cpu0 = _cpu_seconds(p.pid)
        for i in range(10):                       # an existing client is served throughout
            c.send(getlink(i, N.NLM_F_REQUEST | N.NLM_F_ACK))
            assert classify(c.recv())[0] == 16 and classify(c.recv()) == (N.NLMSG_ERROR, i, 0)
            time.sleep(0.2)
        cpu = _cpu_seconds(p.pid) - cpu0
        assert cpu < 0.2, f"{cpu:.2f} s of CPU in 2 s"
        assert log.stat().st_size - size0 < 1000
        assert "Too many open files" in log.read_text()
        assert log.read_text().count("accept:") == 1
        for s in extra:
            s.close()
        extra = []
        time.sleep(0.3)
        with NetlinkSocket(N.NETLINK_ROUTE, path=path) as again:   # the backlog drained
            again.send(getlink(9, N.NLM_F_REQUEST | N.NLM_F_ACK))
            assert classify(again.recv()) == (16, 9, None)
        c.close()
    finally:
        for s in extra:
            s.close()
        _stop(p)


def test_through_the_shim_as_a_program_sees_it(tmp_path):
    """A program under the shim: SO_RCVBUF as getsockopt reports it on Linux (doubled,
    capped by rmem_max), and 400 unread RTM_GETLINK answers as on 6.18: ENOBUFS, 92
    replies, then nothing; the socket then answers a new request."""
    require_shim()
    path = str(tmp_path / "s.sock")
    p = _serve(path)
    packed = b"".join(getlink(i) for i in range(400))
    prog = (
        "import errno, socket, struct\n"
        "s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)\n"
        "got = []\n"
        "for v in (4096, 1 << 20, -1, 0):\n"
        "    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, v)\n"
        "    got.append(s.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF))\n"
        "s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 106496)\n"
        "s.bind((0, 0))\n"
        f"s.send({packed!r})\n"
        "s.setblocking(False)\n"
        "while True:\n"
        "    try:\n"
        "        d = s.recv(65536)\n"
        "    except BlockingIOError:\n"
        "        break\n"
        "    except OSError as e:\n"
        "        got.append(errno.errorcode[e.errno])\n"
        "        continue\n"
        "    got.append(struct.unpack_from('=HHI', d, 4)[2])\n"
        "s.setblocking(True)\n"
        f"s.send({getlink(999, N.NLM_F_REQUEST | N.NLM_F_ACK)!r})\n"
        "got.append(struct.unpack_from('=HHI', s.recv(65536), 4))\n"
        "print(got)\n")
    try:
        r = _shim_python(path, prog)
        got = eval(r.stdout)
        assert got[:4] == [8192, 425984, 425984, 2304]
        assert got[4:] == ["ENOBUFS"] + list(range(92)) + [(16, 0, 999)]
    finally:
        _stop(p)


def test_a_peer_that_asks_without_reading_loses_its_connection(tmp_path):
    """Answers to frames (service queries, SYNC) are not charged to a receive buffer: the
    shim waits for each, so a peer that sends thousands without reading is closed (one log
    line) rather than grow the server; the server goes on serving others."""
    path = str(tmp_path / "s.sock")
    log = tmp_path / "log"
    with open(log, "w") as err:
        p = _serve(path, stderr=err)
    try:
        before = _status_kib(p.pid, "VmHWM")
        svc = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        svc.connect(path)
        svc.send(T.hello(T.SERVICE_PROTOCOL))
        q = T.query({"op": "if_nameindex"})
        svc.settimeout(10)
        sent = 0
        try:
            for _ in range(40000):
                svc.send(q)
                sent += 1
        except (BrokenPipeError, ConnectionResetError):
            pass
        assert sent < 40000                         # closed on the way
        with NetlinkSocket(N.NETLINK_ROUTE, path=path) as c:
            c.send(getlink(3, N.NLM_F_REQUEST | N.NLM_F_ACK))
            assert classify(c.recv()) == (16, 3, None)
        assert _status_kib(p.pid, "VmHWM") - before < 16 * 1024
        svc.close()
    finally:
        _stop(p)
    assert log.read_text().count("answers unread") == 1


def test_namespace_fds_remembered_per_socket_are_bounded():
    with running_server(make_kernel("bare")) as h:
        with NetlinkSocket(N.NETLINK_ROUTE, path=h.path) as c:
            for fd in range(5000):
                c.sock.send(T.frame(T.F_NETNS_FD, struct.pack("=I", fd) + b"other\0"))
            c.send(getlink(1, N.NLM_F_REQUEST | N.NLM_F_ACK))
            assert classify(c.recv()) == (16, 1, None)
            (sock,) = [s for s in h.kernel.netns("default").sockets[N.NETLINK_ROUTE]
                       if s.portid == c.portid]
            assert len(sock.netns_fds) == 256 and 4999 in sock.netns_fds


def test_a_dump_through_the_server_goes_on_only_as_the_client_reads():
    """netlink_dump runs again from netlink_recvmsg: a client that asked for a dump of 300
    links and does not read has one step waiting, whatever the dump's size; each read
    (RECVD) brings the next."""
    k = make_kernel("bare")
    s = k.socket(N.NETLINK_ROUTE)
    for i in range(300):
        k.deliver(s, N.encode_msg(16, N.NLM_F_REQUEST | N.NLM_F_CREATE | N.NLM_F_EXCL, i, 0,
                                  struct.pack("=BxHiII", 0, 0, 0, 0, 0) +
                                  N.nla_string(3, f"d{i}") + N.nla(18, N.nla_string(1, "dummy"))))
    k.close(s)

    def queued(c) -> int:     # bytes of every record waiting in the client's socket
        return struct.unpack("=i", fcntl.ioctl(c.sock.fileno(), termios.FIONREAD, b"\0" * 4))[0]

    with running_server(k) as h, NetlinkSocket(N.NETLINK_ROUTE, path=h.path, recv_size=4096) as c:
        c.send(getlink_dump(7))
        time.sleep(0.3)
        assert 0 < queued(c) <= 3776
        parts = 0
        while True:
            d = c.recv()
            t = classify(d)
            if t[0] == N.NLMSG_DONE:
                break
            parts += 1
            time.sleep(0.002)
            assert queued(c) <= 4096          # the next step only
        assert parts > 20


def test_answers_are_admitted_against_the_reads_the_client_reported(monkeypatch):
    """The host's count of what the client has not read (SIOCOUTQ) lags its reads: on 6.18
    it still counted 31 replies the program had read, for a few ms, and the shim test above
    hung about one run in six under load (the request after the overrun was dropped). A
    client now reports its reads ahead of its next request (READ); after reading
    everything, that request is answered, as on Linux (netlink_rcv_wake emptied the queue).
    The lag is simulated here: SIOCOUTQ reports two replies more than are unread."""

    def lagging_ioctl(fd, req, arg):
        r = fcntl.ioctl(fd, req, arg)
        if req == server_mod.SIOCOUTQ:
            r = struct.pack("=i", struct.unpack("=i", r)[0] + 2 * 2304)
        return r
    monkeypatch.setattr(server_mod, "fcntl", SimpleNamespace(ioctl=lagging_ioctl))
    with running_server(make_kernel("bare")) as h:
        with NetlinkSocket(N.NETLINK_ROUTE, path=h.path, rcvbuf=2304) as c:   # sk_rcvbuf 4608
            c.send(b"".join(getlink(i) for i in range(5)))
            got = []
            for _ in range(3):
                try:
                    got.append(classify(c.recv()))
                except OSError as e:
                    got.append(E.errorcode[e.errno])
            assert got == ["ENOBUFS", (16, 0, None), (16, 1, None)]
            c.send(getlink(999, N.NLM_F_REQUEST | N.NLM_F_ACK))
            c.sock.settimeout(5)
            assert classify(c.recv()) == (16, 999, None)
            assert classify(c.recv()) == (N.NLMSG_ERROR, 999, 0)
