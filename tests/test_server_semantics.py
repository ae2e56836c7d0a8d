"""Netlink socket semantics through the real server socket (xfrmd.client): port ids, ACKs
with and without CAP_ACK, ECHO, dump splitting, receive-buffer overrun, bad input, and the
server's own life cycle (live path refused, stale path replaced, SIGTERM tidies up)."""
from __future__ import annotations

import errno as E
import os
import signal
import stat
import socket
import struct
import subprocess
import sys
import time

import pytest

from netlink_codec import netlink as N
from netlink_codec import xfrm as X
from xfrmd.client import NetlinkSocket
from xfrmd.testing import make_kernel, running_server

from .test_codec_fuzz import SEEDS

NEWPOL = SEEDS[3]


@pytest.fixture
def srv():
    with running_server(make_kernel("bare")) as h:
        yield h


def test_port_ids_as_the_kernel_assigns_them(srv):
    a = NetlinkSocket(N.NETLINK_XFRM, path=srv.path)
    b = NetlinkSocket(N.NETLINK_XFRM, path=srv.path)
    r = NetlinkSocket(N.NETLINK_ROUTE, path=srv.path)
    assert a.portid == os.getpid()                # first socket of the process: its pid
    assert b.portid > 0x7FFFFFFF                  # later ones: unique negative ids
    assert r.portid == os.getpid()                # port ids are per protocol
    with pytest.raises(OSError) as e:
        NetlinkSocket(N.NETLINK_XFRM, path=srv.path, portid=b.portid)
    assert e.value.errno == E.EADDRINUSE
    a.close()
    time.sleep(0.05)
    c = NetlinkSocket(N.NETLINK_XFRM, path=srv.path)
    assert c.portid == os.getpid()                # a closed socket's id is free again
    for s in (b, r, c):
        s.close()


def test_unknown_protocol_refused(srv):
    with pytest.raises(OSError) as e:
        NetlinkSocket(9, path=srv.path)           # NETLINK_AUDIT is not emulated
    assert e.value.errno == E.EPROTONOSUPPORT


def _ack(d):
    hs = N.split_messages(d)
    assert hs[0].type == N.NLMSG_ERROR
    return hs[0], struct.unpack_from("=i", d, 16)[0]


def test_ack_capped_and_not(srv):
    with NetlinkSocket(N.NETLINK_XFRM, path=srv.path, ext_ack=False) as s:
        s.send(N.encode_msg(X.XfrmMsg.FLUSHPOLICY, N.NLM_F_REQUEST | N.NLM_F_ACK, 5, 0))
        h, err = _ack(s.recv())
        assert err == 0 and h.len == 36                 # success: the request header echoed
        s.send(NEWPOL)                                  # invalid selector family
        d = s.recv()
        h, err = _ack(d)
        assert err == -E.EINVAL and h.len == 16 + 4 + len(NEWPOL)   # full echo, no TLVs
    with NetlinkSocket(N.NETLINK_XFRM, path=srv.path, cap_ack=True) as s:
        s.send(NEWPOL)
        d = s.recv()
        h, err = _ack(d)
        assert err == -E.EINVAL and h.flags & N.NLM_F_CAPPED and h.flags & N.NLM_F_ACK_TLVS
        assert b"Invalid selector family" in d


def test_no_request_flag_is_ignored(srv):
    with NetlinkSocket(N.NETLINK_XFRM, path=srv.path) as s:
        s.send(N.encode_msg(X.XfrmMsg.FLUSHPOLICY, N.NLM_F_ACK, 1, 0))    # no NLM_F_REQUEST
        h, err = _ack(s.recv())
        assert err == 0                                 # ACKed, nothing executed


def _policy(i: int) -> bytes:
    from benchmarks.bench_spd import newpolicy_request
    return newpolicy_request(i)


def test_big_dump_is_split_like_the_kernel(srv):
    with NetlinkSocket(N.NETLINK_XFRM, path=srv.path) as s:
        for i in range(300):
            s.send(_policy(i))
            s.recv()
        s.send(N.encode_msg(X.XfrmMsg.GETPOLICY, N.NLM_F_REQUEST | N.NLM_F_DUMP, 9, 0))
        sizes, count = [], 0
        while True:
            d = s.recv(32768)
            hs = N.split_messages(d)
            if hs[-1].type == N.NLMSG_DONE:
                assert len(hs) == 1                     # DONE in a datagram of its own
                break
            sizes.append(len(d))
            count += len(hs)
        assert count == 300
        assert len(sizes) > 1 and max(sizes) <= 32768
        assert sizes[0] <= 3776 + 300                   # the first batch: NLMSG_GOODSIZE


def test_enobufs_when_the_receiver_does_not_read(srv):
    with NetlinkSocket(N.NETLINK_XFRM, path=srv.path, rcvbuf=2048,
                       groups=1 << (X.XfrmNlGrp.POLICY - 1)) as listener, \
            NetlinkSocket(N.NETLINK_XFRM, path=srv.path) as s:
        for i in range(200):
            s.send(_policy(i))
            s.recv()
        with pytest.raises(OSError) as e:
            for _ in range(300):
                listener.recv()
        assert e.value.errno == E.ENOBUFS


def test_garbage_does_not_hurt_other_clients(srv):
    raw = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    raw.connect(srv.path)
    raw.send(b"\x00" * 3)                               # not even a frame
    raw.close()
    with NetlinkSocket(N.NETLINK_XFRM, path=srv.path) as s:
        s.send(b"\xff" * 40)                            # nlmsg_len larger than the datagram
        s.send(N.encode_msg(X.XfrmMsg.GETSADINFO, N.NLM_F_REQUEST, 3, 0, b"\xff" * 4))
        d = s.recv()
        assert N.split_messages(d)[0].type == X.XfrmMsg.NEWSADINFO


def _serve(path: str):
    return subprocess.Popen([sys.executable, "-m", "xfrmd.cli", "serve", "--socket", path,
                             "--topology", "bare", "--quiet"], stderr=subprocess.PIPE, text=True)


def _wait_for(path: str, t: float = 10.0) -> None:
    deadline = time.monotonic() + t
    while not os.path.exists(path):
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.05)


def test_server_life_cycle(tmp_path):
    path = str(tmp_path / "x.sock")
    # a stale socket file (no server behind it) is replaced
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    s.bind(path)
    s.close()
    p = _serve(path)
    try:
        # the stale file is still there until the server replaces it: retry the connect
        deadline = time.monotonic() + 20
        while True:
            try:
                c = NetlinkSocket(N.NETLINK_XFRM, path=path)
                break
            except (ConnectionRefusedError, FileNotFoundError):
                assert time.monotonic() < deadline, "server did not start"
                time.sleep(0.05)
        with c:
            assert c.portid
        # a second server on a live path refuses with a clear message
        q = _serve(path)
        _, err = q.communicate(timeout=20)
        assert q.returncode != 0 and "already listening" in err
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=20)
    assert p.returncode == 0
    assert not os.path.exists(path)


def test_the_socket_path_appears_only_once_it_listens(tmp_path, monkeypatch):
    """A harness that waits for the socket file and connects at once is never refused:
    the server binds a hidden name, listens, then links the path (Server._listen). Checked
    at the moment listen() is called — the path must not exist yet — and after: the path
    accepts a connection, is 0600, and no hidden name is left; a second server on the live
    path is refused without touching it."""
    import types
    from xfrmd import server as S
    from xfrmd.kernel import Kernel
    path = str(tmp_path / "x.sock")
    seen = []

    class Watched(socket.socket):
        def listen(self, *a):
            seen.append(os.path.exists(path))
            return super().listen(*a)

    fake = types.ModuleType("socket")
    fake.__dict__.update(socket.__dict__)
    fake.socket = Watched
    monkeypatch.setattr(S, "pysocket", fake)
    server = S.Server(Kernel(topology=None), path)
    server._prepare_path()
    lst = server._listen()
    try:
        assert seen == [False]                 # nobody could find it before it listened
        c = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        c.connect(path)
        c.close()
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        assert os.listdir(tmp_path) == ["x.sock"]
        with pytest.raises(SystemExit, match="already listening"):
            S.Server(Kernel(topology=None), path)._listen()
        assert os.listdir(tmp_path) == ["x.sock"]
    finally:
        lst.close()


def test_mutated_datagrams_through_the_server_socket(srv):
    """3,000 mutated datagrams through the real server connection: every answer is a
    well-formed netlink datagram, and the connection (and the server) keep working."""
    import random
    from .test_codec_fuzz import _well_formed_replies
    rnd = random.Random(11)
    with NetlinkSocket(N.NETLINK_XFRM, path=srv.path) as s:
        s.sock.settimeout(0.2)
        for _ in range(3000):
            b = bytearray(rnd.choice(SEEDS))
            for _ in range(rnd.randint(1, 4)):
                if b and rnd.random() < 0.6:
                    b[rnd.randrange(len(b))] = rnd.randrange(256)
                elif b:
                    del b[rnd.randrange(len(b)):]
            if len(b) >= 4 and b[:4] == b"\0\0\0\0":
                continue                                  # that would be a control frame
            s.send(bytes(b))
        replies = []
        while True:
            try:
                replies.append(s.recv())
            except (TimeoutError, socket.timeout):
                break
            except OSError as e:
                # 3,000 unread answers do not fit a receive buffer: Linux drops the rest
                # and reports ENOBUFS once (netlink_overrun)
                assert e.errno == E.ENOBUFS
        _well_formed_replies(replies)
        assert replies
        s.sock.settimeout(10)
        s.send(N.encode_msg(X.XfrmMsg.GETSADINFO, N.NLM_F_REQUEST, 77, 0, b"\xff" * 4))
        while True:
            d = s.recv()
            if N.split_messages(d)[0].seq == 77:
                break
        assert N.split_messages(d)[0].type == X.XfrmMsg.NEWSADINFO


def test_service_answers_are_the_json_the_shim_parses(srv):
    """A service connection's answers, the same query asked again and again (the server keeps
    parsed queries, and writes flat answers itself): each is exactly ``json.dumps`` of the
    answer, whatever a name holds; a changed link changes the next answer; a malformed
    query is EINVAL and the connection goes on."""
    import json
    from xfrmd import transport as T
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    s.connect(srv.path)
    s.send(T.hello(T.SERVICE_PROTOCOL, 0, "default"))

    def ask(payload: bytes) -> bytes:
        s.send(T.frame(T.F_QUERY, payload))
        rec = s.recv(65536)
        assert rec[:8] == T.frame(T.F_ANSWER)
        return rec[8:]

    q = b'{"op": "if_nametoindex", "name": "lo"}'
    for _ in range(3):
        assert ask(q) == json.dumps({"errno": 0, "index": 1}).encode()
    assert ask(b'{"op": "if_indextoname", "index": 1}') == b'{"errno": 0, "name": "lo"}'
    ns = srv.kernel.netns("default", create=False)
    ns.links.rename(ns.links.by_name("lo"), "l\u00e9\"o")
    assert ask(b'{"op": "if_indextoname", "index": 1}') == b'{"errno": 0, "name": "l\\u00e9\\"o"}'
    assert ask(q) == b'{"errno": 0, "index": 0}'        # the same text, asked anew
    bad = json.loads(ask(b'{"op": '))
    assert bad["errno"] == E.EINVAL and "malformed query" in bad["error"]
    assert json.loads(ask(b'[1]'))["errno"] == E.EINVAL
    assert json.loads(ask(b'\xff'))["errno"] == E.EINVAL
    assert json.loads(ask(b'{"op": "if_nameindex"}')) == {"errno": 0, "links": [[1, "l\u00e9\"o"]]}
    s.close()
