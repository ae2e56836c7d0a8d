"""Packets from real sockets: UDP datagram sockets of programs under the shim, in emulated
namespaces, carried by the emulated stack — routing, the SPD/SAD and ESP, a veth between two
namespaces, delivery to the socket bound there (docs/protocol.md, "INET connection")."""
from __future__ import annotations

import os
import struct

from .conftest import require_shim, xfrmd_run
from .inet_scripts import ESP, LINK

# two namespaces a and b joined by a veth, an ESP tunnel (rfc4106(gcm(aes))) each way for
# IPv4, IPv6 in the clear
SETUP = "A=a B=b\n" + LINK + ESP

# server: bind ADDR PORT, answer N datagrams in upper case; client: bind SRC, send, print reply
ECHO = '''
import socket, sys
role, addr, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
s = socket.socket(fam, socket.SOCK_DGRAM)
if role == "server":
    s.bind((addr, port))
    s.settimeout(20)
    print("bound", s.getsockname()[:2], flush=True)
    for _ in range(int(sys.argv[4])):
        data, peer = s.recvfrom(65535)
        print("got", data.decode(), peer[0], flush=True)
        s.sendto(data.upper(), peer)
else:
    src = sys.argv[4]
    if src != "-":
        s.bind((src, 0))
    s.settimeout(10)
    s.sendto(("hello from " + src).encode(), (addr, port))
    data, peer = s.recvfrom(65535)
    print("reply", data.decode(), peer[:2], flush=True)
'''


def _script(tmp_path, body: str) -> str:
    py = tmp_path / "echo.py"
    py.write_text(ECHO)
    return SETUP + body.replace("ECHO", f"python3 {py}")


def _pcap_packets(path: str) -> list[bytes]:
    """The packets of a LINKTYPE_RAW pcap."""
    data = open(path, "rb").read()
    magic, _, _, _, _, _, linktype = struct.unpack_from("<IHHiIII", data)
    assert magic == 0xA1B2C3D4 and linktype == 101
    out, o = [], 24
    while o + 16 <= len(data):
        incl = struct.unpack_from("<IIII", data, o)[2]
        out.append(data[o + 16:o + 16 + incl])
        o += 16 + incl
    return out


def test_udp_v4_crosses_an_esp_tunnel_between_two_namespaces(tmp_path):
    require_shim("ip")
    pcap = str(tmp_path / "wire.pcap")
    p = xfrmd_run(_script(tmp_path, """
ip netns exec b ECHO server 10.9.0.2 5000 2 &
sleep 1
ip netns exec a ECHO client 10.9.0.2 5000 10.9.0.1
ip netns exec a ECHO client 10.9.0.2 5000 -
wait
ip -n a -s xfrm state | grep -A1 'lifetime current' | grep packets
ip -n b -s xfrm state | grep -A1 'lifetime current' | grep packets
"""), "bare", env={**os.environ, "XFRMD_WIRE_PCAP": pcap})
    assert p.returncode == 0, p.stderr
    lines = [ln.strip() for ln in p.stdout.splitlines()]
    assert lines[:5] == [
        "bound ('10.9.0.2', 5000)",
        "got hello from 10.9.0.1 10.9.0.1",
        "reply HELLO FROM 10.9.0.1 ('10.9.0.2', 5000)",
        # an unbound socket takes the route's source address (and an ephemeral port)
        "got hello from - 10.9.0.1",
        "reply HELLO FROM - ('10.9.0.2', 5000)"]
    # every SA carried two datagrams: a's out and in, b's in and out
    assert lines[5:] == [ln for ln in lines[5:] if ln.endswith("(bytes), 2(packets)")]
    assert len(lines[5:]) == 4, p.stdout
    # the wire carried ESP only: the payload never in clear
    pkts = _pcap_packets(pcap)
    assert len(pkts) == 4
    spis = []
    for pkt in pkts:
        assert pkt[0] >> 4 == 4 and pkt[9] == 50, pkt[:20].hex()     # IPv4, ESP
        spis.append(struct.unpack_from("!I", pkt, 20)[0])
        assert b"hello" not in pkt.lower()
    assert spis == [0x100, 0x200, 0x100, 0x200]


def test_udp_v6_and_a_namespace_talking_to_itself(tmp_path):
    require_shim("ip")
    p = xfrmd_run(_script(tmp_path, """
ip netns exec b ECHO server fd00::2 6000 1 &
sleep 1
ip netns exec a ECHO client fd00::2 6000 fd00::1
wait
ip netns exec a ECHO server 10.9.0.1 7000 1 &
sleep 1
ip netns exec a ECHO client 10.9.0.1 7000 127.0.0.1
wait
"""), "bare")
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines() == [
        "bound ('fd00::2', 6000)", "got hello from fd00::1 fd00::1",
        "reply HELLO FROM FD00::1 ('fd00::2', 6000)",
        "bound ('10.9.0.1', 7000)", "got hello from 127.0.0.1 127.0.0.1",
        "reply HELLO FROM 127.0.0.1 ('10.9.0.1', 7000)"]


def test_socket_calls_timeouts_and_errors(tmp_path):
    """What ipsec.c and ordinary programs use besides bind/sendto/recvfrom: getsockname's
    port, SO_RCVTIMEO (EAGAIN), poll, MSG_PEEK, FIONREAD, recv into a short buffer (the
    rest dropped), connect + send, and the errors Linux gives."""
    require_shim("ip")
    py = tmp_path / "calls.py"
    py.write_text('''
import errno, fcntl, select, socket, struct, termios
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("10.9.0.2", 0))
port = s.getsockname()[1]
print("port", 32768 <= port <= 60999)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", 0, 300))
try:
    s.recv(10)
except OSError as e:
    print("rcvtimeo", errno.errorcode[e.errno])
try:
    s.bind(("10.9.0.2", 0))
except OSError as e:
    print("bind again", errno.errorcode[e.errno])
c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
try:
    c.bind(("10.9.0.1", 0))
except OSError as e:
    print("not ours", errno.errorcode[e.errno])
try:
    c.bind(("10.9.0.2", port))
except OSError as e:
    print("in use", errno.errorcode[e.errno])
c.connect(("10.9.0.2", port))
print("peer", c.getpeername() == ("10.9.0.2", port))
c.send(b"0123456789")
print("poll", select.select([s], [], [], 5)[0] == [s])
print("fionread", struct.unpack("i", fcntl.ioctl(s.fileno(), termios.FIONREAD, b"xxxx"))[0])
print("peek", s.recv(4, socket.MSG_PEEK))
print("short", s.recv(4))
s.setblocking(False)
try:
    s.recv(10)
except BlockingIOError:
    print("drained")
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.bind(("10.9.0.2", 0))
try:
    u.send(b"x")
except OSError as e:
    print("unconnected", errno.errorcode[e.errno])
print("type", c.getsockopt(socket.SOL_SOCKET, socket.SO_TYPE) == socket.SOCK_DGRAM)
''')
    p = xfrmd_run(SETUP + f"ip netns exec b python3 {py}\n", "bare")
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines() == [
        "port True", "rcvtimeo EAGAIN", "bind again EINVAL", "not ours EADDRNOTAVAIL",
        "in use EADDRINUSE", "peer True", "poll True", "fionread 10", "peek b'0123'",
        "short b'0123'", "drained", "unconnected EDESTADDRREQ", "type True"]


def test_real_sockets_stay_real_outside_an_emulated_namespace(tmp_path):
    """A program that did not enter an emulated namespace keeps the host's network: a bind to
    an address the host has is real; one only the emulated namespace has is emulated; an
    address nobody has fails as on Linux. SO_BINDTODEVICE of an emulated-only device is
    emulated. TCP inside an emulated namespace is a clear error."""
    require_shim("ip")
    py = tmp_path / "real.py"
    py.write_text('''
import errno, os, socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("10.77.0.1", 0))
r = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
r.bind(("127.0.0.1", 0))
def in_host_table(sk):
    """the host kernel's UDP table lists the socket (an emulated one is not there)"""
    return (":%04X " % sk.getsockname()[1]) in open("/proc/net/udp").read()
print("real", r.getsockname()[0], in_host_table(r))
print("emulated", s.getsockname()[0], in_host_table(s))
x = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
try:
    x.bind(("10.78.0.1", 0))
except OSError as e:
    print("nobody", errno.errorcode[e.errno])
d = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
d.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b"xfrmd-d0")
d.sendto(b"to self", s.getsockname())
print("bindtodevice", s.recv(10))
try:
    d.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b"nosuchdev")
except OSError as e:
    print("no device", errno.errorcode[e.errno])
''')
    tcp = tmp_path / "tcp.py"
    tcp.write_text('''
import errno, socket
t = socket.socket()
try:
    t.connect(("10.9.0.2", 80))
except OSError as e:
    print("tcp", errno.errorcode[e.errno])
''')
    # lo up: a datagram to the namespace's own address goes through it (Linux drops it
    # while lo is down, counted as lo's tx_dropped)
    p = xfrmd_run(SETUP + f"""ip link set lo up
ip link add xfrmd-d0 type dummy; ip link set xfrmd-d0 up
ip addr add 10.77.0.1/24 dev xfrmd-d0
python3 {py}
ip netns exec a python3 {tcp}
""", "bare")
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines() == [
        "real 127.0.0.1 True", "emulated 10.77.0.1 False",
        "nobody EADDRNOTAVAIL", "bindtodevice b'to self'", "no device ENODEV",
        "tcp ENOTSUP"]          # errno 95: EOPNOTSUPP (Python names it ENOTSUP)
    assert "only UDP datagram sockets are carried by the emulated stack" in p.stderr


def test_a_malformed_inet_frame_closes_only_its_connection(tmp_path):
    require_shim("ip")
    py = tmp_path / "bad.py"
    py.write_text('''
import os, socket, struct
from xfrmd import transport as T

def conn(ns="a"):
    c = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    c.connect(os.environ["XFRMD_SOCKET"])
    c.send(T.frame(T.F_HELLO, struct.pack("=II", T.INET_PROTOCOL, 2) + ns.encode() + b"\\0"
                   + struct.pack("=II", 2, 17)))
    return c

bad = conn()
bad.send(T.frame(T.F_INET_SEND, struct.pack("=I", 1000) + b"short"))   # address past the end
bad.settimeout(5)
print("bad closed", bad.recv(100) == b"")
good = conn()
sin = struct.pack("=H", 2) + struct.pack("!H4s8x", 0, socket.inet_aton("10.9.0.1"))
good.send(T.frame(T.F_INET_BIND, struct.pack("=I", 0) + sin))
good.settimeout(5)
rep = good.recv(100)
print("good bound", struct.unpack_from("=HHi", rep, 4)[1] == T.F_INET_BIND_REPLY,
      struct.unpack_from("=i", rep, 8)[0])
nons = conn("nosuchns")
nons.settimeout(5)
print("unknown namespace closed", nons.recv(100) == b"")
''')
    p = xfrmd_run(SETUP + f"PYTHONPATH={os.getcwd()} python3 {py}\n", "bare")
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines() == ["bad closed True", "good bound True 0",
                                     "unknown namespace closed True"]


PING = '''
import socket, struct, sys
dst = sys.argv[1]
v6 = ":" in dst
s = socket.socket(socket.AF_INET6 if v6 else socket.AF_INET, socket.SOCK_DGRAM,
                  socket.IPPROTO_ICMPV6 if v6 else socket.IPPROTO_ICMP)
if len(sys.argv) > 2:
    s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, sys.argv[2].encode())
s.settimeout(5)
for seq in range(1, 4):
    s.sendto(struct.pack("!BBHHH", 128 if v6 else 8, 0, 0, 0, seq) + b"abcdefgh", (dst, 0))
    data, peer = s.recvfrom(1500)
    print(peer[0], data[0], struct.unpack_from("!H", data, 6)[0], data[8:].decode())
'''


def test_ping_sockets_are_answered_by_the_emulated_stack(tmp_path):
    """ping's SOCK_DGRAM ICMP sockets: echo requests through the ESP tunnel (IPv4), in the
    clear (IPv6) and to the namespace itself, answered by the peer's emulated stack."""
    require_shim("ip")
    scapy = __import__("pytest").importorskip("scapy.all")
    py = tmp_path / "ping.py"
    py.write_text(PING)
    pcap = str(tmp_path / "wire.pcap")
    # a ping socket needs the namespace's net.ipv4.ping_group_range to hold the group
    # (a new namespace's "1 0" holds none: tests/test_inet_raw.py)
    p = xfrmd_run(SETUP + f"""
ip netns exec a sysctl -qw net.ipv4.ping_group_range="0 2147483647"
ip netns exec a python3 {py} 10.9.0.2 va
ip netns exec a python3 {py} fd00::2
ip netns exec a python3 {py} 10.9.0.1
ip -n a -s xfrm state | grep -A1 'lifetime current' | grep packets
""", "bare", env={**os.environ, "XFRMD_WIRE_PCAP": pcap})
    assert p.returncode == 0, p.stderr
    lines = [ln.strip() for ln in p.stdout.splitlines()]
    assert lines[:9] == [f"{a} {t} {seq} abcdefgh" for a, t in
                         (("10.9.0.2", 0), ("fd00::2", 129), ("10.9.0.1", 0))
                         for seq in (1, 2, 3)]
    assert lines[9:] == ["108(bytes), 3(packets)"] * 2
    pkts = _pcap_packets(pcap)
    assert [pk[9] for pk in pkts[:6]] == [50] * 6             # IPv4: ESP only
    for raw in pkts[6:]:                                       # IPv6 in the clear
        ip6 = scapy.IPv6(raw)
        icmp = ip6.payload
        assert icmp.type in (128, 129), ip6.summary()
        chk = icmp.cksum
        del icmp.cksum                                         # scapy computes it again
        assert scapy.IPv6(bytes(ip6)).payload.cksum == chk
    assert len(pkts) == 12


def test_ping_bound_to_an_emulated_device_outside_a_namespace_switch(tmp_path):
    """`ping -I DEV` in the emulated default namespace: the host refuses the ping socket
    (ping_group_range: EACCES) or lacks DEV (SO_BINDTODEVICE: ENODEV), so the socket is the
    emulated stack's; the echo crosses the veth and is answered."""
    require_shim("ip")
    py = tmp_path / "ping.py"
    py.write_text(PING)
    p = xfrmd_run(f"""set -e
ip netns add b
ip link add xfrmd-vd type veth peer name vb netns b
ip addr add 10.8.0.1/24 dev xfrmd-vd; ip -n b addr add 10.8.0.2/24 dev vb
ip link set xfrmd-vd up; ip -n b link set vb up
sysctl -qw net.ipv4.ping_group_range="0 2147483647"
python3 {py} 10.8.0.2 xfrmd-vd
""", "bare")
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines() == [f"10.8.0.2 0 {seq} abcdefgh" for seq in (1, 2, 3)]
