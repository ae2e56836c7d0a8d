"""The errors `sendmsg` returns at once on emulated UDP and raw ICMP sockets
(xfrmd/inet/sendmsg.py): no route, unreachable/prohibit/blackhole routes, a broadcast
without SO_BROADCAST, port 0, oversize, above the MTU with IP_MTU_DISCOVER "do", a blocking
XFRM policy — the same probe on the host
kernel in fresh namespaces and under xfrmd."""
from __future__ import annotations

import sys

from .conftest import require_shim
from .test_inet_raw import LINK, _emu, _host

PROBE = r'''
import errno, socket, struct

def send(s, data, addr):
    try:
        s.sendto(data, addr)
        return "ok"
    except OSError as e:
        return errno.errorcode[e.errno]

u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for what, addr in (("no route", ("198.51.100.1", 9)), ("unreachable", ("192.0.2.1", 9)),
                   ("prohibit", ("203.0.113.1", 9)), ("blackhole", ("198.18.0.1", 9)),
                   ("broadcast", ("10.9.0.255", 9)), ("limited broadcast", ("255.255.255.255", 9)),
                   ("port 0", ("10.9.0.2", 0)), ("blocked by policy", ("10.9.0.3", 9)),
                   ("fine", ("10.9.0.2", 9))):
    print("udp", what, send(u, b"x", addr))
print("udp oversize", send(u, bytes(65508), ("10.9.0.2", 9)))
u.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
print("udp broadcast allowed", send(u, b"x", ("10.9.0.255", 9)))
c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
c.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b"lo")
print("udp bound to lo", send(c, b"x", ("10.9.0.2", 9)))
r = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
echo = struct.pack("!BBHHH", 8, 0, 0xF7FF, 0, 0)
for what, addr in (("no route", ("198.51.100.1", 0)), ("broadcast", ("10.9.0.255", 0)),
                   ("blocked by policy", ("10.9.0.3", 0)), ("fine", ("10.9.0.2", 0))):
    print("raw", what, send(r, echo, addr))
v6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
print("udp6 no route", send(v6, b"x", ("2001:db8::1", 9)))
print("udp6 fine", send(v6, b"x", ("fd00::2", 9)))
# IP_MTU_DISCOVER "do": no fragments, a datagram above the MTU (1500) is EMSGSIZE
print("udp 2000 may fragment", send(u, bytes(2000), ("10.9.0.2", 9)))
u.setsockopt(socket.IPPROTO_IP, 10, 2)                   # IP_MTU_DISCOVER, IP_PMTUDISC_DO
print("udp df 1472", send(u, bytes(1472), ("10.9.0.2", 9)))
print("udp df 1473", send(u, bytes(1473), ("10.9.0.2", 9)))
v6.setsockopt(socket.IPPROTO_IPV6, 23, 2)               # IPV6_MTU_DISCOVER
print("udp6 df 1452", send(v6, bytes(1452), ("fd00::2", 9)))
print("udp6 df 1453", send(v6, bytes(1453), ("fd00::2", 9)))
'''


def test_send_errors_are_the_kernels(tmp_path):
    require_shim("ip")
    py = tmp_path / "probe.py"
    py.write_text(PROBE)
    script = LINK + f"""
ip -n $A route add unreachable 192.0.2.0/24
ip -n $A route add prohibit 203.0.113.0/24
ip -n $A route add blackhole 198.18.0.0/15
ip -n $A xfrm policy add src 10.9.0.1 dst 10.9.0.3 dir out action block
sleep 1
ip netns exec $A {sys.executable} {py}
"""
    emu = _emu(script)
    assert emu.returncode == 0, emu.stderr
    assert emu.stdout.splitlines() == [
        "udp no route ENETUNREACH", "udp unreachable EHOSTUNREACH", "udp prohibit EACCES",
        "udp blackhole EINVAL", "udp broadcast EACCES", "udp limited broadcast ENETUNREACH",
        "udp port 0 EINVAL", "udp blocked by policy EPERM", "udp fine ok",
        "udp oversize EMSGSIZE", "udp broadcast allowed ok", "udp bound to lo ok",
        "raw no route ENETUNREACH", "raw broadcast EACCES", "raw blocked by policy EPERM",
        "raw fine ok", "udp6 no route ENETUNREACH", "udp6 fine ok",
        "udp 2000 may fragment ok", "udp df 1472 ok", "udp df 1473 EMSGSIZE",
        "udp6 df 1452 ok", "udp6 df 1453 EMSGSIZE"]
    host = _host(script)
    assert host.returncode == 0, host.stderr
    assert emu.stdout == host.stdout
