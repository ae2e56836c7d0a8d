"""Bad clients must not affect other clients (bad input): a client that closes in
the middle of a dump, one that sends requests and never reads its socket, a listener that never
reads while events flood, and connections that send malformed transport frames. Each time
another client keeps getting its answers promptly and the server keeps serving."""
from __future__ import annotations

import errno
import socket
import struct
import time

import pytest

from netlink_codec import netlink as N
from netlink_codec import xfrm as X
from xfrmd import transport as T
from xfrmd.client import NetlinkSocket
from xfrmd.testing import make_kernel, running_server


@pytest.fixture
def srv():
    with running_server(make_kernel("bare")) as h:
        yield h


def policy(i: int) -> bytes:
    p = X.XfrmUserpolicyInfo()
    p.sel.family = socket.AF_INET
    p.sel.daddr = X.XfrmAddress.of(struct.pack(">I", 0x0A000000 + i))
    p.sel.prefixlen_d = 32
    p.dir = 1
    for f in ("soft_byte_limit", "hard_byte_limit", "soft_packet_limit", "hard_packet_limit"):
        setattr(p.lft, f, X.XFRM_INF)
    return bytes(p)


def sadinfo_round_trip(s: NetlinkSocket, seq: int) -> float:
    t0 = time.monotonic()
    (m,) = s.request(X.XfrmMsg.GETSADINFO, 0, b"\xff" * 4, seq=seq)
    assert m.type == X.XfrmMsg.NEWSADINFO and m.seq == seq
    return time.monotonic() - t0


def dump_count(s: NetlinkSocket) -> int:
    return sum(m.type == X.XfrmMsg.NEWPOLICY for m in s.request(X.XfrmMsg.GETPOLICY, N.NLM_F_DUMP))


def test_close_in_the_middle_of_a_dump(srv):
    with NetlinkSocket(N.NETLINK_XFRM, path=srv.path) as s:
        for i in range(2000):
            s.send(N.encode_msg(X.XfrmMsg.NEWPOLICY, N.NLM_F_REQUEST, i + 1, 0, policy(i)))
        sadinfo_round_trip(s, 99999)                 # all processed (answers in order)
    for _ in range(5):
        quitter = NetlinkSocket(N.NETLINK_XFRM, path=srv.path, recv_size=4096)
        quitter.send(N.encode_msg(X.XfrmMsg.GETPOLICY, N.NLM_F_REQUEST | N.NLM_F_DUMP, 1, 0, b""))
        first = quitter.recv()
        assert N.split_messages(first)[0].type == X.XfrmMsg.NEWPOLICY
        quitter.close()                              # the rest of the dump is never read
    with NetlinkSocket(N.NETLINK_XFRM, path=srv.path) as other:
        assert sadinfo_round_trip(other, 7) < 2.0
        assert dump_count(other) == 2000
    # the dumping sockets are gone from the kernel: no leak
    time.sleep(0.2)
    assert all(not getattr(sk, "dump", None) for ns in srv.kernel.namespaces.values()
               for sk in getattr(ns, "sockets", ()))


def test_a_client_that_never_reads_does_not_stall_others(srv):
    hog = NetlinkSocket(N.NETLINK_XFRM, path=srv.path)
    hog.sock.setblocking(False)
    req = N.encode_msg(X.XfrmMsg.GETSADINFO, N.NLM_F_REQUEST, 1, 0, b"\xff" * 4)
    sent = 0
    try:
        for _ in range(20000):
            hog.sock.send(req)
            sent += 1
    except BlockingIOError:
        pass                                         # its connection is full: fine
    assert sent > 100
    with NetlinkSocket(N.NETLINK_XFRM, path=srv.path) as other:
        worst = max(sadinfo_round_trip(other, i + 10) for i in range(50))
        assert worst < 2.0
        other.request(X.XfrmMsg.NEWPOLICY, N.NLM_F_ACK, policy(1))
        assert dump_count(other) == 1
    hog.close()
    with NetlinkSocket(N.NETLINK_XFRM, path=srv.path) as after:
        assert sadinfo_round_trip(after, 5) < 2.0


def test_a_listener_that_never_reads_does_not_stall_others(srv):
    group = 1 << (X.XfrmNlGrp.POLICY - 1)
    deaf = NetlinkSocket(N.NETLINK_XFRM, path=srv.path, groups=group)
    with NetlinkSocket(N.NETLINK_XFRM, path=srv.path, groups=group, rcvbuf=1 << 20) as ear, \
            NetlinkSocket(N.NETLINK_XFRM, path=srv.path) as writer:
        got = 0

        def drain(timeout):
            nonlocal got
            ear.sock.settimeout(timeout)
            try:
                while got < 3000:
                    got += sum(m.type == X.XfrmMsg.NEWPOLICY for m in ear.recv_messages())
            except (BlockingIOError, TimeoutError):
                pass

        for i in range(3000):
            writer.request(X.XfrmMsg.NEWPOLICY, N.NLM_F_ACK, policy(i))
            if i % 100 == 0:
                assert sadinfo_round_trip(writer, 100000 + i) < 2.0
                drain(0)
        drain(5)
        assert got == 3000                           # a reading listener misses nothing
    deaf.sock.settimeout(5)
    with pytest.raises(OSError) as e:                # the deaf one overran
        for _ in range(5000):
            deaf.recv()                              # 3000 events > its 208 KiB default
    assert e.value.errno == errno.ENOBUFS
    deaf.close()


BAD_FRAMES = {
    "bad utf-8 namespace": [T.frame(T.F_HELLO, struct.pack("=II", 6, 3) + b"\xff\xfe\0")],
    "protocol version 2": [struct.pack("=IHH", 0, 2, 1)],
    "service garbage": [T.hello(T.SERVICE_PROTOCOL), T.frame(T.F_QUERY, b"{not json"),
                        T.frame(T.F_QUERY, b"[1,2]"), T.frame(T.F_QUERY, b"")],
    "no hello": [N.encode_msg(X.XfrmMsg.GETSADINFO, N.NLM_F_REQUEST, 1, 0, b"\xff" * 4)],
}
# these once raised out of the connection task and stopped the whole server
BAD_FRAMES_KILLING = {
    "empty hello": [T.frame(T.F_HELLO)],
    "short hello": [T.frame(T.F_HELLO, b"\x06\0\0\0")],
    "short bind after autobind": [T.hello(6, 3), T.frame(T.F_AUTOBIND), T.frame(T.F_BIND, b"\0")],
    "short frames after hello": [T.hello(6, 3), T.frame(T.F_BIND, b"\0"),
                                 T.frame(T.F_SETSOCKOPT, b"\0"), T.frame(T.F_RECVD, b""),
                                 T.frame(99, b"")],
    "batch length past its end": [T.frame(T.F_BATCH, struct.pack("=I", 500) + T.hello(6, 3))],
    "batch cut inside a length": [T.frame(T.F_BATCH, struct.pack("=I", 4) + b"abcd\1\0")],
    "nested batch": [T.batch([T.hello(6, 3), T.batch([T.frame(T.F_AUTOBIND)])])],
    "release then a datagram without hello": [
        T.batch([T.hello(6, 3), T.frame(T.F_RELEASE),
                 N.encode_msg(X.XfrmMsg.GETSADINFO, N.NLM_F_REQUEST, 1, 0, b"\xff" * 4)])],
}


@pytest.mark.parametrize("name", list(BAD_FRAMES) + [
    n for n in BAD_FRAMES_KILLING])
def test_malformed_transport_frames(name):
    records = {**BAD_FRAMES, **BAD_FRAMES_KILLING}[name]
    with running_server(make_kernel("bare")) as srv:
        with NetlinkSocket(N.NETLINK_XFRM, path=srv.path, timeout=5) as bystander:
            raw = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            raw.connect(srv.path)
            try:
                for r in records:
                    raw.send(r)
            except OSError:
                pass                                 # the server may hang up on it: fine
            time.sleep(0.3)
            raw.close()
            assert sadinfo_round_trip(bystander, 3) < 2.0
        with NetlinkSocket(N.NETLINK_XFRM, path=srv.path, timeout=5) as newcomer:
            assert sadinfo_round_trip(newcomer, 4) < 2.0


def test_batch_and_release_on_one_connection():
    """What the shim sends for `ip -batch` (docs/protocol.md: BATCH, RELEASE): HELLO,
    options, an optimistic bind and the request in one record; RELEASE closes the emulated
    socket (its port id is free again, it leaves its groups) and the next HELLO on the same
    connection is a new socket."""
    import os
    with running_server(make_kernel("bare")) as srv:
        k = srv.kernel
        raw = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        raw.connect(srv.path)
        raw.settimeout(5)
        pid = os.getpid()
        req = N.encode_msg(X.XfrmMsg.GETSADINFO, N.NLM_F_REQUEST | N.NLM_F_ACK, 7, 0, b"\xff" * 4)
        raw.send(T.batch([T.hello(N.NETLINK_XFRM, 3), T.setsockopt(270, 11, 1),
                          T.frame(T.F_BIND, struct.pack("=II", pid, 1 << 1)), req]))
        # the BIND (groups: a change a program can see) is answered, then the request
        rep = raw.recv(1000)
        assert T.parse_frame(rep)[1] == T.F_BIND_REPLY
        assert struct.unpack_from("=iII", rep, 8) == (0, pid, 2)
        info = raw.recv(1000)
        assert struct.unpack_from("=IHHII", info)[1:5] == (X.XfrmMsg.NEWSADINFO, 0, 7, pid)
        ack = raw.recv(1000)
        assert struct.unpack_from("=IHHIIi", ack)[1] == N.NLMSG_ERROR
        assert struct.unpack_from("=i", ack, 16)[0] == 0
        ns = k.netns("default")
        first = ns.ports[N.NETLINK_XFRM][pid]
        assert first.groups == 2 and first.ext_ack
        raw.send(T.frame(T.F_RELEASE))
        raw.send(T.batch([T.hello(N.NETLINK_XFRM, 3), T.frame(T.F_BIND_AUTO, struct.pack("=II", pid, 0)),
                          N.encode_msg(X.XfrmMsg.GETSADINFO, N.NLM_F_REQUEST, 8, 0, b"\xff" * 4)]))
        info = raw.recv(1000)
        assert struct.unpack_from("=IHHII", info)[1:5] == (X.XfrmMsg.NEWSADINFO, 0, 8, pid)
        second = ns.ports[N.NETLINK_XFRM][pid]
        assert second is not first and first.closed
        assert second.groups == 0 and not second.ext_ack   # nothing carried over
        assert first not in ns.sockets[N.NETLINK_XFRM]
        raw.close()


def test_a_kept_connection_repeats_its_opening_frames():
    """`ip -batch` opens every socket on a kept connection with the same bytes (RELEASE,
    HELLO, options, BIND_AUTO, then the request), which the server applies without parsing
    them again: each line must still be a new socket with those options and the process's
    port id, the old one closed; a line with other options gets those; and once the
    namespace is gone, the same bytes open nothing (the request's read fails ENOENT)."""
    import os
    with running_server(make_kernel("bare")) as srv:
        k = srv.kernel
        k.add_netns("t1")
        raw = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        raw.connect(srv.path)
        raw.settimeout(5)
        pid = os.getpid()
        hello = T.hello(N.NETLINK_XFRM, 3, "t1")
        raw.send(hello)

        def line(seq: int, rcvbuf: int = 1 << 20, release: bool = True) -> list[bytes]:
            opening = [T.frame(T.F_RELEASE), hello] if release else []
            opening += [T.setsockopt(1, 8, rcvbuf), T.setsockopt(270, 11, 1),
                        T.frame(T.F_BIND_AUTO, struct.pack("=II", pid, 0))]
            req = N.encode_msg(X.XfrmMsg.GETSADINFO, N.NLM_F_REQUEST, seq, 0, b"\xff" * 4)
            raw.send(T.batch(opening + [req]))
            return struct.unpack_from("=IHHII", raw.recv(1000))[1:5]

        ns = k.netns("t1")
        seen = []
        for seq in range(1, 7):
            assert line(seq, release=seq > 1) == (X.XfrmMsg.NEWSADINFO, 0, seq, pid)
            sock = ns.ports[N.NETLINK_XFRM][pid]
            assert sock.ext_ack and sock.rcvbuf == 2 * 212992      # SO_RCVBUF: capped, doubled
            # a new socket (its id, as traces show it), the old ones gone (the object may
            # be reused: Kernel.reopen)
            assert sock.id not in seen
            assert [s.id for s in ns.sockets[N.NETLINK_XFRM] if not s.closed] == [sock.id]
            seen.append(sock.id)
        assert line(7, rcvbuf=4096) == (X.XfrmMsg.NEWSADINFO, 0, 7, pid)
        assert ns.ports[N.NETLINK_XFRM][pid].rcvbuf == 8192
        assert line(8) == (X.XfrmMsg.NEWSADINFO, 0, 8, pid)
        assert ns.ports[N.NETLINK_XFRM][pid].rcvbuf == 2 * 212992
        assert len([s for s in ns.sockets[N.NETLINK_XFRM] if not s.closed]) == 1
        k.del_netns("t1")             # the reactor is idle: nothing else runs meanwhile
        req = N.encode_msg(X.XfrmMsg.GETSADINFO, N.NLM_F_REQUEST, 9, 0, b"\xff" * 4)
        raw.send(T.batch([T.frame(T.F_RELEASE), hello, T.setsockopt(1, 8, 1 << 20),
                          T.setsockopt(270, 11, 1), T.frame(T.F_BIND_AUTO, struct.pack("=II", pid, 0)),
                          req]))
        err = raw.recv(1000)
        assert T.parse_frame(err)[1] == T.F_SOCK_ERROR
        assert struct.unpack_from("=i", err, 8)[0] == -errno.ENOENT
        raw.close()


def test_a_replayed_line_whose_port_id_another_socket_holds():
    """The replayed opening frames bind the process's id only while no other socket holds it:
    while another connection of the same process holds it, each `ip -batch` line's socket gets
    what autobind gives (a negative id) and the shim is told (BIND_REPLY), the line after the
    first included (the replayed one); once that socket is closed, the same bytes bind the
    process's id again, silently."""
    import os
    with running_server(make_kernel("bare")) as srv:
        k = srv.kernel
        pid = os.getpid()
        hello = T.hello(N.NETLINK_XFRM, 3)
        bind_auto = T.frame(T.F_BIND_AUTO, struct.pack("=II", pid, 0))

        def connect() -> socket.socket:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            s.connect(srv.path)
            s.settimeout(5)
            s.send(hello)
            return s

        def request(s: socket.socket, opening: list[bytes], seq: int) -> tuple[int | None, int]:
            """(the port id a BIND_REPLY gave, or None; the port id the answer went to)"""
            req = N.encode_msg(X.XfrmMsg.GETSADINFO, N.NLM_F_REQUEST, seq, 0, b"\xff" * 4)
            s.send(T.batch(opening + [req]))
            told, rec = None, s.recv(1000)
            if T.is_frame(rec):
                assert T.parse_frame(rec)[1] == T.F_BIND_REPLY
                err, told, _ = struct.unpack_from("=iII", rec, 8)
                assert err == 0
                rec = s.recv(1000)
            _, kind, _, got_seq, portid = struct.unpack_from("=IHHII", rec)
            assert (kind, got_seq) == (X.XfrmMsg.NEWSADINFO, seq)
            return told, portid

        holder = connect()
        assert request(holder, [bind_auto], 1) == (None, pid)
        kept = connect()
        line = [T.frame(T.F_RELEASE), hello, T.setsockopt(270, 11, 1), bind_auto]
        ids = [request(kept, line[2:], 2)] + [request(kept, line, seq) for seq in (3, 4, 5)]
        for told, portid in ids:
            assert told == portid and portid >= 0x80000000      # autobind: a negative id
        ns = k.netns("default")
        assert ns.ports[N.NETLINK_XFRM][pid].portid == pid    # the holder kept its id
        holder.close()
        time.sleep(0.2)                 # the holder's close is read by the reactor
        assert request(kept, line, 6) == (None, pid)
        assert request(kept, line, 7) == (None, pid)
        kept.close()


@pytest.mark.parametrize("order", ["other", "ip+"])
def test_a_replayed_line_with_other_options_and_a_bind_later(order):
    """Opening frames other than `ip`'s (an option the replay does not write directly first,
    or `ip`'s frames and one more option after the BIND_AUTO): each line's socket still has
    every option the frames set, the process's id, and its predecessor is gone."""
    import os
    with running_server(make_kernel("bare")) as srv:
        k = srv.kernel
        pid = os.getpid()
        raw = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        raw.connect(srv.path)
        raw.settimeout(5)
        hello = T.hello(N.NETLINK_XFRM, 3)
        raw.send(hello)
        bind_auto = T.frame(T.F_BIND_AUTO, struct.pack("=II", pid, 0))
        opts = [T.setsockopt(1, 8, 4096), T.setsockopt(270, 11, 1)]
        if order == "other":
            opts.insert(0, T.setsockopt(270, N.NETLINK_NO_ENOBUFS, 1))
        line = [T.frame(T.F_RELEASE), hello] + opts + [
            bind_auto, T.setsockopt(270, N.NETLINK_GET_STRICT_CHK, 1)]
        ns = k.netns("default")
        ids = []
        for seq in range(1, 6):
            opening = line if seq > 1 else line[2:]
            req = N.encode_msg(X.XfrmMsg.GETSADINFO, N.NLM_F_REQUEST, seq, 0, b"\xff" * 4)
            raw.send(T.batch(opening + [req]))
            _, kind, _, got_seq, portid = struct.unpack_from("=IHHII", raw.recv(1000))
            assert (kind, got_seq, portid) == (X.XfrmMsg.NEWSADINFO, seq, pid)
            sock = ns.ports[N.NETLINK_XFRM][pid]
            assert (sock.no_enobufs, sock.rcvbuf, sock.ext_ack, sock.strict_chk) == (
                order == "other", 8192, True, True)
            assert sock.id not in ids
            assert [s.id for s in ns.sockets[N.NETLINK_XFRM] if not s.closed] == [sock.id]
            ids.append(sock.id)
        raw.close()


def test_a_replayed_line_after_the_socket_joined_a_group():
    """A kept connection's socket that joined a group between two lines is closed and a new
    object made (Kernel.reopen's general way): the next line's answer still reaches the
    connection, the group is left (the listeners mask is empty again), and the new socket
    has the process's id."""
    import os
    with running_server(make_kernel("bare")) as srv:
        k = srv.kernel
        pid = os.getpid()
        raw = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        raw.connect(srv.path)
        raw.settimeout(5)
        hello = T.hello(N.NETLINK_XFRM, 3)
        raw.send(hello)
        line = [T.frame(T.F_RELEASE), hello, T.setsockopt(1, 8, 1 << 20), T.setsockopt(270, 11, 1),
                T.frame(T.F_BIND_AUTO, struct.pack("=II", pid, 0))]
        ns = k.netns("default")

        def request(seq: int) -> None:
            req = N.encode_msg(X.XfrmMsg.GETSADINFO, N.NLM_F_REQUEST, seq, 0, b"\xff" * 4)
            raw.send(T.batch((line if seq > 1 else line[2:]) + [req]))
            _, kind, _, got_seq, portid = struct.unpack_from("=IHHII", raw.recv(1000))
            assert (kind, got_seq, portid) == (X.XfrmMsg.NEWSADINFO, seq, pid)

        for seq in (1, 2, 3):
            request(seq)
        joined = ns.ports[N.NETLINK_XFRM][pid]
        raw.send(T.setsockopt(270, N.NETLINK_ADD_MEMBERSHIP, X.XfrmNlGrp.POLICY))
        deadline = time.monotonic() + 5
        while not ns.listeners.get(N.NETLINK_XFRM) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert ns.listeners[N.NETLINK_XFRM] == 1 << (X.XfrmNlGrp.POLICY - 1)
        request(4)
        sock = ns.ports[N.NETLINK_XFRM][pid]
        assert sock is not joined and joined.closed and sock.groups == 0
        assert ns.listeners[N.NETLINK_XFRM] == 0
        request(5)
        raw.close()
