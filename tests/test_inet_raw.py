"""Raw ICMP/ICMPv6 sockets under the shim (xfrmd/inet/raw.py): root's iputils `ping` between
two emulated namespaces, through an ESP tunnel, as it prints it on Linux; the raw socket's
semantics and `net.ipv4.ping_group_range`, each compared with the host kernel in fresh real
namespaces running the same script."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import uuid

from .conftest import require, require_shim, xfrmd_run
from .inet_scripts import ESP, LINK


def _host(script: str) -> subprocess.CompletedProcess:
    """``script`` on the host kernel, $A and $B fresh real namespaces (deleted after)."""
    require(os.geteuid() == 0 and shutil.which("ip") is not None,
            "the host kernel as oracle needs root and ip")
    tag = uuid.uuid4().hex[:6]
    a, b = f"xping-{tag}-a", f"xping-{tag}-b"
    try:
        return subprocess.run(["sh", "-c", f"A={a}; B={b}\n" + script], capture_output=True,
                              text=True, timeout=60)
    finally:
        for ns in (a, b):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def _emu(script: str, env=None) -> subprocess.CompletedProcess:
    return xfrmd_run("A=a; B=b\n" + script, "bare", env=env)


def _norm(text: str) -> str:
    """ping's timings vary: the round-trip times and the elapsed time"""
    text = re.sub(r"time=[0-9.]+ ms", "time=T ms", text)
    text = re.sub(r"time [0-9]+ms", "time Tms", text)
    return re.sub(r"rtt min/avg/max/mdev = .*", "rtt …", text)


PINGS = """
ip netns exec $A ping -c 3 -i 0.2 -I 10.9.0.1 10.9.0.2; echo "status $?"
ip netns exec $A ping -c 2 -i 0.2 -I va 10.9.0.2; echo "status $?"
ip netns exec $A ping -c 2 -i 0.2 fd00::2; echo "status $?"
ip netns exec $A ping -c 1 -W 1 10.9.0.7 | grep transmitted; echo "status $?"
"""


def test_root_ping_through_an_esp_tunnel_prints_what_linux_prints(tmp_path):
    """iputils ping as root: ping_group_range "1 0" refuses it a ping socket, so it takes
    raw ICMP sockets (IPv4: the reply with its IP header; IPv6: ICMP6_FILTER and the hop
    limit); three replies through the tunnel, the wire carries ESP only."""
    require_shim("ip", "ping")
    pcap = str(tmp_path / "wire.pcap")
    emu = _emu(LINK + ESP + PINGS, env={**os.environ, "XFRMD_WIRE_PCAP": pcap})
    assert emu.returncode == 0, emu.stderr
    out = _norm(emu.stdout)
    assert out.startswith(
        "PING 10.9.0.2 (10.9.0.2) from 10.9.0.1 : 56(84) bytes of data.\n"
        "64 bytes from 10.9.0.2: icmp_seq=1 ttl=64 time=T ms\n"
        "64 bytes from 10.9.0.2: icmp_seq=2 ttl=64 time=T ms\n"
        "64 bytes from 10.9.0.2: icmp_seq=3 ttl=64 time=T ms\n"), emu.stdout
    assert "3 packets transmitted, 3 received, 0% packet loss" in out
    assert "PING 10.9.0.2 (10.9.0.2) from 10.9.0.1 va: 56(84) bytes of data." in out
    assert "64 bytes from fd00::2: icmp_seq=2 ttl=64 time=T ms" in out
    # the last ping (no answer) fails; its grep finds the summary
    assert out.count("status 0") == 4, out
    # the host's ping over the bare veth (its kernel may lack rfc4106(gcm(aes))): the same text
    host = _host(LINK + "sleep 1\n" + PINGS)
    assert host.returncode == 0, host.stderr
    assert out == _norm(host.stdout)
    assert _norm(emu.stderr) == _norm(host.stderr)
    # tshark reads the wire: the 5 IPv4 echoes each way as ESP, the IPv6 echoes in clear
    require(shutil.which("tshark") is not None, "tshark is not installed")
    t = subprocess.run(["tshark", "-r", pcap, "-T", "fields", "-e", "_ws.col.Protocol",
                        "-e", "esp.spi"], capture_output=True, text=True, timeout=60)
    assert t.returncode == 0, t.stderr
    rows = [ln.split("\t") for ln in t.stdout.splitlines()]
    esp = [r for r in rows if r[0] == "ESP"]
    assert [r[1] for r in esp] == ["0x00000100", "0x00000200"] * 5, t.stdout
    # then the echo to 10.9.0.7 (no policy: in clear, unanswered)
    assert [r[0] for r in rows if r[0] != "ESP"] == ["ICMPv6"] * 4 + ["ICMP"], t.stdout


PROBE = r'''
import errno, socket, struct, sys

def csum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF

def echo(ident, seq, v6=False):
    body = struct.pack("!BBHHH", 128 if v6 else 8, 0, 0, ident, seq) + b"raw-probe"
    if v6:
        return body                                  # the kernel fills the checksum in
    return body[:2] + struct.pack("!H", csum(body)) + body[4:]

def err(f, *a):
    try:
        f(*a)
        return "ok"
    except OSError as e:
        return errno.errorcode[e.errno]

print("ping socket", err(socket.socket, socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP))
print("range", repr(open("/proc/sys/net/ipv4/ping_group_range").read()))
r = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
print("type raw", r.getsockopt(socket.SOL_SOCKET, socket.SO_TYPE) == socket.SOCK_RAW)
print("name", r.getsockname())
print("bind other", err(r.bind, ("10.9.9.9", 0)))
r.bind(("10.9.0.1", 0))
print("name", r.getsockname())
r.settimeout(2)
r.sendto(echo(0x4242, 1), ("10.9.0.2", 0))
while True:                                          # skip what is not our reply
    pkt, peer = r.recvfrom(2000)
    if pkt[20] == 0 and struct.unpack_from("!H", pkt, 24)[0] == 0x4242:
        break
print("v4 reply", peer, len(pkt), hex(pkt[0]), pkt[9], socket.inet_ntoa(pkt[12:16]),
      socket.inet_ntoa(pkt[16:20]), pkt[8], struct.unpack_from("!H", pkt, 26)[0], pkt[28:])
r.setsockopt(255, 1, struct.pack("=I", 1 << 0))   # ICMP_FILTER: no echo replies
r.sendto(echo(0x4242, 2), ("10.9.0.2", 0))
try:
    while True:
        pkt = r.recv(2000)
        if pkt[20] == 0:
            print("filtered reply came", pkt[20])
            break
except socket.timeout:
    print("filtered: timeout")
s6 = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
print("name6", s6.getsockname())
filt = bytearray(b"\xff" * 32)
filt[129 >> 3] &= ~(1 << (129 & 7)) & 0xFF                 # pass echo replies only
s6.setsockopt(58, 1, bytes(filt))
s6.settimeout(2)
s6.sendto(echo(0x4343, 7, True), ("fd00::2", 0))
pkt, peer = s6.recvfrom(2000)
print("v6 reply", peer[:2], len(pkt), pkt[0], struct.unpack_from("!HH", pkt, 4), pkt[8:])
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
print("connect unreachable", err(u.connect, ("198.51.100.1", 9)))
u.connect(("10.9.0.2", 9))
print("connected from", u.getsockname()[0])
'''


def test_raw_socket_semantics_are_the_kernels(tmp_path):
    """The same probe on the host kernel and under xfrmd: no ping socket for root in a new
    namespace, getsockname's protocol "port", bind to a foreign address, the echo reply with
    its IPv4 header, ICMP_FILTER, an ICMPv6 raw socket (checksum by the kernel, no IPv6
    header, ICMP6_FILTER), and a UDP connect: the route's error or its source address."""
    require_shim("ip")
    py = tmp_path / "probe.py"
    py.write_text(PROBE)
    script = LINK + f"sleep 1\nip netns exec $A {sys.executable} {py}\n"
    emu = _emu(script)
    assert emu.returncode == 0, emu.stderr
    assert emu.stdout.splitlines() == [
        "ping socket EACCES", r"range '1\t0\n'", "type raw True", "name ('0.0.0.0', 1)",
        "bind other EADDRNOTAVAIL", "name ('10.9.0.1', 1)",
        "v4 reply ('10.9.0.2', 0) 37 0x45 1 10.9.0.2 10.9.0.1 64 1 b'raw-probe'",
        "filtered: timeout", "name6 ('::', 58, 0, 0)",
        "v6 reply ('fd00::2', 0) 17 129 (17219, 7) b'raw-probe'",
        "connect unreachable ENETUNREACH", "connected from 10.9.0.1"]
    host = _host(script)
    assert host.returncode == 0, host.stderr
    assert emu.stdout == host.stdout


GROUPS = r'''
import errno, socket
def ping_socket():
    try:
        socket.socket(socket.AF_INET6, socket.SOCK_DGRAM, socket.IPPROTO_ICMPV6).close()
        return "ok"
    except OSError as e:
        return errno.errorcode[e.errno]
print(ping_socket(), repr(open("/proc/sys/net/ipv4/ping_group_range").read()))
'''


def test_ping_group_range_is_per_namespace(tmp_path):
    """`sysctl -w net.ipv4.ping_group_range` lets root's group have ping sockets in that
    namespace only; an empty range is stored as "1 0"."""
    require_shim("ip", "sysctl")
    py = tmp_path / "groups.py"
    py.write_text(GROUPS)
    run = f"{sys.executable} {py}"
    script = LINK + f"""
ip netns exec $A sysctl -qw net.ipv4.ping_group_range="0 2147483647"
ip netns exec $A {run}; ip netns exec $B {run}
ip netns exec $A sysctl -qw net.ipv4.ping_group_range="5 2"
ip netns exec $A {run}
"""
    emu = _emu(script)
    assert emu.returncode == 0, emu.stderr
    assert emu.stdout.splitlines() == [
        r"ok '0\t2147483647\n'", r"EACCES '1\t0\n'", r"EACCES '1\t0\n'"]
    host = _host(script)
    assert host.returncode == 0, host.stderr
    assert emu.stdout == host.stdout


VARIANTS = """set +e; sleep 1
ip netns exec $A ping -c 2 -i 0.2 -I va fd00::2; echo "status $?"
ip netns exec $A ping -c 2 -i 0.2 -I fd00::1 fd00::2; echo "status $?"
ip netns exec $A ping -c 1 198.51.100.1; echo "status $?"
ip netns exec $A ping -c 1 2001:db8::9; echo "status $?"
ip netns exec $A ping -c 2 -i 0.2 -s 2000 10.9.0.2; echo "status $?"
ip netns exec $A ping -c 1 -W 1 -b 10.9.0.255; echo "status $?"
ip netns exec $A ping -c 1 -W 1 10.9.0.255; echo "status $?"
ip netns exec $A ping -c 2 -i 0.2 -I lo 127.0.0.1; echo "status $?"
ip netns exec $A ping -c 1 -I 10.9.9.9 10.9.0.2; echo "status $?"
ip netns exec $A ping -c 1 -I nosuch 10.9.0.2; echo "status $?"
ip netns exec $A ping -c 2 -i 0.2 -M do -s 2000 10.9.0.2; echo "status $?"
ip netns exec $A ping -c 2 -i 0.2 -M do -s 1472 10.9.0.2 | grep transmitted; echo "status $?"
ip netns exec $A ping -c 2 -i 0.2 -M do -s 2000 fd00::2; echo "status $?"
"""


def test_ping_options_and_failures_print_what_linux_prints():
    """-I DEV and -I ADDR for IPv6, no route (its source probe's connect), a 2000-byte
    echo, broadcast with and without -b (connect's EACCES without SO_BROADCAST; nobody
    answers: icmp_echo_ignore_broadcasts), lo, a foreign source, an unknown device, and
    `-M do` above the MTU (EMSGSIZE, the error queue's local error with the MTU)."""
    require_shim("ip", "ping")
    emu = _emu(LINK + VARIANTS)
    host = _host(LINK + VARIANTS)
    assert "ping: Do you want to ping broadcast? Then -b." in emu.stderr + emu.stdout
    assert "ping: local error: message too long, mtu=1500" in emu.stderr
    assert _norm(emu.stdout) == _norm(host.stdout)
    assert _norm(emu.stderr) == _norm(host.stderr)
    assert emu.returncode == host.returncode == 0


PING_SOCKETS = """set +e; sleep 1
ip netns exec $A sysctl -qw net.ipv4.ping_group_range="0 2147483647"
ip netns exec $A ping -c 2 -i 0.2 10.9.0.2; echo "status $?"
ip netns exec $A ping -c 2 -i 0.2 fd00::2; echo "status $?"
ip netns exec $A ping -c 2 -i 0.2 -I va 10.9.0.2; echo "status $?"
"""


def test_ping_with_a_ping_socket_prints_what_linux_prints():
    """With the group in ping_group_range ping takes ping sockets (SOCK_DGRAM): the TTL and
    hop limit come as IP_TTL / IPV6_HOPLIMIT control messages."""
    require_shim("ip", "ping", "sysctl")
    emu = _emu(LINK + PING_SOCKETS)
    host = _host(LINK + PING_SOCKETS)
    assert "64 bytes from 10.9.0.2: icmp_seq=2 ttl=64 time=T ms" in _norm(emu.stdout)
    assert _norm(emu.stdout) == _norm(host.stdout)
    assert emu.stderr == host.stderr
