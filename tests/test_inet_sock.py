"""The emulated UDP socket table without the shim (xfrmd/inet/udp.py, sans-IO): bind checks,
the demux's scores, options and malformed records."""
from __future__ import annotations

import errno as E
import struct

import pytest

from xfrmd import transport as T
from xfrmd.datapath.packet import ip_compute_csum
from xfrmd.inet import udp
from xfrmd.lagreport.lab import InprocBackend
from xfrmd.replay.runner import run_line


@pytest.fixture
def kernel(kernel):
    """The `bare` kernel with lo up (127.0.0.1, ::1), as `ip link set lo up` leaves it."""
    res = run_line(InprocBackend(kernel, "default"), ["ip", "link", "set", "lo", "up"], 1,
                   {"iproute2": "6.15"})
    assert res.status == 0, res.stderr
    return kernel


def _sock(kernel, family=udp.AF_INET, proto=udp.IPPROTO_UDP):
    got: list[bytes] = []
    sk = udp.UdpSock(kernel.netns("default"), family, lambda rec: got.append(rec) or True, proto)
    return sk, got


def _bind(sk, addr, port, reuse=0):
    udp.bind(sk, udp.sockaddr(sk.family, addr, port), reuse)


def _dgram(rec: bytes) -> tuple[str, int, bytes]:
    assert T.parse_frame(rec)[1] == T.F_INET_DGRAM
    alen = struct.unpack_from("=I", rec, 8)[0]
    addr, port = udp.parse_sockaddr(udp.AF_INET, rec[12:12 + alen])
    return addr, port, rec[12 + alen:]


def test_bind_checks_as_inet_bind(kernel):
    a, _ = _sock(kernel)
    _bind(a, "127.0.0.1", 4000)
    b, _ = _sock(kernel)
    with pytest.raises(udp.SockError) as e:
        _bind(b, "0.0.0.0", 4000)                      # overlaps a's address
    assert e.value.errno == E.EADDRINUSE
    with pytest.raises(udp.SockError) as e:
        _bind(b, "192.0.2.99", 4001)                   # not an address of the namespace
    assert e.value.errno == E.EADDRNOTAVAIL
    with pytest.raises(udp.SockError) as e:
        _bind(a, "127.0.0.1", 4002)                    # bound already
    assert e.value.errno == E.EINVAL
    with pytest.raises(udp.SockError) as e:
        udp.bind(b, udp.sockaddr(udp.AF_INET6, "::1", 1))
    assert e.value.errno == E.EAFNOSUPPORT
    c, _ = _sock(kernel)
    udp.autobind(c)
    assert 32768 <= c.lport <= 60999 and c.laddr is None
    udp.close(a)
    _bind(b, "0.0.0.0", 4000)                          # free again


def test_reuse_on_both_sides_shares_a_port(kernel):
    a, _ = _sock(kernel)
    b, _ = _sock(kernel)
    _bind(a, "127.0.0.1", 4100, reuse=1)
    _bind(b, "127.0.0.1", 4100, reuse=1)
    assert a.lport == b.lport == 4100


def test_the_best_scoring_socket_gets_the_datagram(kernel):
    wild, got_wild = _sock(kernel)
    exact, got_exact = _sock(kernel)
    peer, got_peer = _sock(kernel)
    _bind(wild, "0.0.0.0", 5000, reuse=1)
    _bind(exact, "127.0.0.1", 5000, reuse=1)
    _bind(peer, "127.0.0.1", 5000, reuse=1)
    sender, _ = _sock(kernel)
    _bind(sender, "127.0.0.1", 5001)
    udp.connect(peer, udp.sockaddr(udp.AF_INET, "127.0.0.1", 5001))
    assert udp.sendmsg(sender, udp.sockaddr(udp.AF_INET, "127.0.0.1", 5000), b"one") == 0
    other, _ = _sock(kernel)
    _bind(other, "127.0.0.1", 5002)
    assert udp.sendmsg(other, udp.sockaddr(udp.AF_INET, "127.0.0.1", 5000), b"two") == 0
    assert [_dgram(r) for r in got_peer] == [("127.0.0.1", 5001, b"one")]
    assert [_dgram(r) for r in got_exact] == [("127.0.0.1", 5002, b"two")]
    assert got_wild == []


def test_send_errors_and_options(kernel):
    sk, _ = _sock(kernel)
    assert udp.sendmsg(sk, b"", b"x") == E.EDESTADDRREQ
    assert udp.sendmsg(sk, udp.sockaddr(udp.AF_INET, "127.0.0.1", 0), b"x") == E.EINVAL
    assert udp.sendmsg(sk, udp.sockaddr(udp.AF_INET, "127.0.0.1", 9), bytes(65508)) == E.EMSGSIZE
    with pytest.raises(udp.SockError) as e:
        udp.setsockopt(sk, udp.SOL_SOCKET, udp.SO_BINDTODEVICE, b"nosuch\0")
    assert e.value.errno == E.ENODEV
    udp.setsockopt(sk, udp.SOL_SOCKET, udp.SO_BINDTODEVICE, b"lo\0")
    assert sk.ifindex == 1
    ping, _ = _sock(kernel, proto=udp.IPPROTO_ICMP)
    # a ping socket sends echo requests only
    assert udp.sendmsg(ping, udp.sockaddr(udp.AF_INET, "127.0.0.1", 0), bytes(8)) == E.EINVAL


def test_a_ping_socket_gets_the_answer_to_its_echo(kernel):
    ping, got = _sock(kernel, proto=udp.IPPROTO_ICMP)
    echo = struct.pack("!BBHHH", 8, 0, 0, 0, 7) + b"data"
    assert udp.sendmsg(ping, udp.sockaddr(udp.AF_INET, "127.0.0.1", 0), echo) == 0
    [rec] = got
    addr, _, msg = _dgram(rec)
    assert addr == "127.0.0.1" and msg[0] == 0 and msg[8:] == b"data"
    assert struct.unpack_from("!HH", msg, 4) == (ping.lport, 7)      # our identifier, seq
    assert ip_compute_csum(msg) == 0                                 # checksummed


def test_malformed_records_raise(kernel):
    sk, _ = _sock(kernel)
    with pytest.raises(T.FrameError):
        udp.handle(sk, b"not a frame at all")
    with pytest.raises(T.FrameError):
        udp.handle(sk, T.frame(T.F_INET_SEND, struct.pack("=I", 100) + b"x"))
    with pytest.raises(struct.error):
        udp.handle(sk, T.frame(T.F_INET_BIND, b"\1"))
    assert udp.handle(sk, T.frame(0x7F)) is None                     # unknown: ignored
    rep = udp.handle(sk, T.frame(T.F_INET_BIND, struct.pack("=I", 0)))
    assert rep is not None and struct.unpack_from("=i", rep, 8)[0] == 0 and sk.lport
