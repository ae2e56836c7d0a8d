"""UDP and ping sockets of real programs in emulated namespaces (net/ipv4/udp.c,
net/ipv6/udp.c, net/ipv4/ping.c; the echo answer of net/ipv4/icmp.c / net/ipv6/icmp.c).

A socket is one INET connection of the server (docs/protocol.md, "INET connection"): the
shim sends BIND, CONNECT, SETSOCKOPT and SEND records; delivered datagrams go back to the
program as DGRAM records, which the shim hands to ``recvfrom``. This module is sans-IO: the
server gives each socket a ``push`` callable that queues a record on its connection.

The send path is the emulated one: ``ip_route_output_flow`` (:func:`route_lookup`) picks the
source address and device, the data path's :func:`xfrm_xmit` runs the SPD, SAD and ESP, and
what leaves a veth enters its peer's namespace through :func:`deliver_packets`
(``xfrm_input`` and the inbound policy check); the inner packet meets this module's demux
(``__udp4_lib_lookup`` / ``__udp6_lib_lookup``: the best-scoring socket gets it). A packet to
an address of the namespace itself goes through loopback, without the SPD (xfrmd: the
kernel looks policies up on loopback too; no test needs it).

A ping socket (``SOCK_DGRAM``, IPPROTO_ICMP / IPPROTO_ICMPV6) sends echo requests whose
identifier is its bound "port" (``ping_v4_sendmsg``); the destination's namespace answers
them (``icmp_echo``), through its own output path, and the reply reaches the socket whose
identifier it carries (``ping_rcv``).

Not modelled: fragmentation (a datagram larger than the MTU crosses as one packet), ICMP
errors (a datagram to a port nobody listens on is dropped silently), multicast and
broadcast, IPv4-mapped addresses on IPv6 sockets, errors of a send (routing, a blocking
policy: the datagram is dropped, counted per socket, as it would be after ``sendto``
returned on Linux for errors found past routing)."""
from __future__ import annotations

import errno as E
import ipaddress
import logging
import os
import random
import struct
import time
from typing import TYPE_CHECKING, Callable, cast

from ..datapath import packet as P
from ..datapath.input import deliver_packets
from ..datapath.output import xfrm_xmit
from ..rtnl.fib import RTCF_BROADCAST, RTCF_LOCAL, RTN_LOCAL, RouteResult, route_lookup
from .. import transport as T
from ..netlink.socket import PROTOCOL_VERSION
from . import raw as R
from bonding.hash import Flow, xmit_slave
from devices.netstats import frame_len, netstats_add

if TYPE_CHECKING:
    from devices.netdev import NetDevice
    from ..kernel import NetNamespace

log = logging.getLogger("xfrmd.inet")

AF_INET, AF_INET6 = 2, 10
IPPROTO_ICMP, IPPROTO_UDP, IPPROTO_ICMPV6 = 1, 17, 58
ICMP_ECHO, ICMP_ECHOREPLY, ICMPV6_ECHO_REQUEST, ICMPV6_ECHO_REPLY = 8, 0, 128, 129
PING_IDENTS = (1, 65535)
SOL_SOCKET, SO_REUSEADDR, SO_BROADCAST, SO_BINDTODEVICE, SO_REUSEPORT = 1, 2, 6, 25, 15
EPHEMERAL = (32768, 60999)          # net.ipv4.ip_local_port_range's default
MAX_PAYLOAD = 65507                 # 65535 - 20 (IPv4) - 8 (UDP)
_SIN = struct.Struct("!H4s8x")      # after sin_family (host order): port, address, zero
_SIN6 = struct.Struct("!HI16sI")    # after sin6_family: port, flowinfo, address, scope id


class SockError(Exception):
    """A bind/connect the kernel refuses: ``errno``."""

    def __init__(self, errno: int, text: str = ""):
        super().__init__(text or os.strerror(errno))
        self.errno = errno


class UdpSock:
    """``struct udp_sock``: the bound (laddr, lport), the connected peer, the device bound to."""
    __slots__ = ("ns", "family", "proto", "laddr", "lport", "raddr", "rport", "ifindex", "reuse",
                 "push", "sent", "received", "drops", "closed", "type", "icmp_filter",
                 "broadcast")

    def __init__(self, ns: NetNamespace, family: int, push: Callable[[bytes], bool],
                 proto: int = IPPROTO_UDP, type: int = R.SOCK_DGRAM):
        self.ns = ns
        self.family = family
        self.proto = proto                 # IPPROTO_UDP, or ICMP/ICMPV6: a ping socket
        self.type = type                   # SOCK_RAW: a raw ICMP/ICMPv6 socket (raw.py)
        self.icmp_filter = b""             # ICMP_FILTER / ICMP6_FILTER of a raw socket
        self.broadcast = False             # SO_BROADCAST
        self.laddr: str | None = None      # None: wildcard
        self.lport = 0                     # 0: not bound
        self.raddr: str | None = None
        self.rport = 0
        self.ifindex = 0                   # SO_BINDTODEVICE
        self.reuse = 0                     # bit 0 SO_REUSEADDR, bit 1 SO_REUSEPORT
        self.push = push                   # queue a record on the connection; False: full
        self.sent = self.received = self.drops = 0
        self.closed = False
        if type == R.SOCK_RAW:
            # inet_create: a raw socket is hashed at once, its "port" the protocol
            self.lport = proto
            R.table(ns).append(self)


def _table(ns: NetNamespace, proto: int = IPPROTO_UDP) -> dict[int, list[UdpSock]]:
    """The namespace's ``udp_table`` (port → the sockets bound to it), or for ping sockets
    its ``ping_table`` (identifier → sockets)."""
    attr = "udp_table" if proto == IPPROTO_UDP else "ping_table"
    t = getattr(ns, attr, None)
    if t is None:
        t = {}
        setattr(ns, attr, t)
    return t


# -- socket addresses ------------------------------------------------------------------------

def sockaddr(family: int, addr: str | None, port: int) -> bytes:
    """``struct sockaddr_in`` (16 bytes) or ``sockaddr_in6`` (28)."""
    if family == AF_INET:
        raw = ipaddress.IPv4Address(addr or "0.0.0.0").packed
        return struct.pack("=H", AF_INET) + _SIN.pack(port, raw)
    raw = ipaddress.IPv6Address(addr or "::").packed
    return struct.pack("=H", AF_INET6) + _SIN6.pack(port, 0, raw, 0)


def parse_sockaddr(family: int, raw: bytes) -> tuple[str, int]:
    """(address, port) of a sockaddr the program gave; EAFNOSUPPORT/EINVAL as inet_bind /
    udp_sendmsg say for a wrong family or length."""
    if len(raw) < 2:
        raise SockError(E.EINVAL)
    (fam,) = struct.unpack_from("=H", raw)
    if fam != family:
        raise SockError(E.EAFNOSUPPORT)
    if family == AF_INET:
        if len(raw) < 16:
            raise SockError(E.EINVAL)
        port, a = struct.unpack_from("!H4s", raw, 2)
        return str(ipaddress.IPv4Address(a)), port
    if len(raw) < 24:
        raise SockError(E.EINVAL)
    port, _, a = struct.unpack_from("!HI16s", raw, 2)
    return str(ipaddress.IPv6Address(a)), port


def _wildcard(addr: str) -> bool:
    return ipaddress.ip_address(addr).packed == bytes(len(ipaddress.ip_address(addr).packed))


def _local_dev(ns: NetNamespace, addr: str) -> NetDevice | None:
    """The device holding ``addr`` in ``ns`` (``inet_addr_type == RTN_LOCAL``)."""
    a = ipaddress.ip_address(addr)
    for dev in ns.links:
        for ifa in getattr(dev, "addresses", ()):
            if ipaddress.ip_address(ifa.address) == a:
                return dev
    return None


def is_local(ns: NetNamespace, addr: str) -> bool:
    """Whether ``addr`` is an address of ``ns`` (the shim's test before it emulates a bind)."""
    try:
        return _local_dev(ns, addr) is not None
    except ValueError:
        return False


# -- bind / connect / setsockopt ---------------------------------------------------------------

def _conflict(sk: UdpSock, addr: str | None, port: int, reuse: int) -> bool:
    """``udp_lib_lport_inuse``: another socket of the family on the port, the addresses
    overlapping (one a wildcard, or equal), not both with SO_REUSEADDR/SO_REUSEPORT."""
    for o in _table(sk.ns, sk.proto).get(port, ()):
        if o is sk or o.family != sk.family:
            continue
        if o.laddr is not None and addr is not None and o.laddr != addr:
            continue
        if o.ifindex and sk.ifindex and o.ifindex != sk.ifindex:
            continue
        if reuse & o.reuse:
            continue
        return True
    return False


def _insert(sk: UdpSock, addr: str | None, port: int, reuse: int) -> None:
    """``udp_v4_get_port``: a given port, or a free ephemeral one (random start as
    ``udp_lib_get_port`` does)."""
    if port == 0:
        lo, hi = EPHEMERAL if sk.proto == IPPROTO_UDP else PING_IDENTS
        n = hi - lo + 1
        start = random.randrange(n)
        for i in range(n):
            p = lo + (start + i) % n
            if not _conflict(sk, addr, p, 0):
                port = p
                break
        else:
            raise SockError(E.EADDRINUSE)
    elif _conflict(sk, addr, port, reuse):
        raise SockError(E.EADDRINUSE)
    sk.laddr, sk.lport, sk.reuse = addr, port, reuse
    _table(sk.ns, sk.proto).setdefault(port, []).append(sk)


def bind(sk: UdpSock, raw: bytes, reuse: int = 0) -> None:
    """``inet_bind`` / ``inet6_bind``: the address must be the namespace's (or a wildcard)."""
    if sk.type == R.SOCK_RAW:
        # raw_bind / rawv6_bind: only the address (the port is ignored), rebinding allowed
        addr, _ = parse_sockaddr(sk.family, raw)
        if not _wildcard(addr) and _local_dev(sk.ns, addr) is None:
            raise SockError(E.EADDRNOTAVAIL)
        sk.laddr = None if _wildcard(addr) else str(ipaddress.ip_address(addr))
        return
    if sk.lport:
        raise SockError(E.EINVAL)
    addr, port = parse_sockaddr(sk.family, raw)
    if _wildcard(addr):
        _insert(sk, None, port, reuse)
        return
    if _local_dev(sk.ns, addr) is None:
        raise SockError(E.EADDRNOTAVAIL)
    _insert(sk, str(ipaddress.ip_address(addr)), port, reuse)


def autobind(sk: UdpSock) -> None:
    """``inet_autobind``: an ephemeral port on the wildcard address."""
    if not sk.lport and sk.type != R.SOCK_RAW:
        _insert(sk, None, 0, 0)


def connect(sk: UdpSock, raw: bytes) -> None:
    """``ip4_datagram_connect`` / ``ip6_datagram_connect``: the route to the peer must exist
    (its error otherwise, ENETUNREACH); an unbound address becomes the route's source; the
    peer is remembered (AF_UNSPEC: forgotten)."""
    if len(raw) >= 2 and struct.unpack_from("=H", raw)[0] == 0:
        sk.raddr, sk.rport = None, 0
        return
    addr, port = parse_sockaddr(sk.family, raw)
    addr = str(ipaddress.ip_address(addr))
    res = route_lookup(sk.ns, addr, src=sk.laddr, oif=sk.ifindex or None)
    if isinstance(res, int):
        raise SockError(-res)
    if res.flags & RTCF_BROADCAST and not sk.broadcast:
        raise SockError(E.EACCES)           # a broadcast peer needs SO_BROADCAST
    autobind(sk)
    if sk.laddr is None and res.src is not None:
        sk.laddr = str(ipaddress.ip_address(res.src))
    sk.raddr, sk.rport = addr, port


def setsockopt(sk: UdpSock, level: int, optname: int, value: bytes) -> None:
    """The options the server needs: SO_BINDTODEVICE (a name, empty to unbind),
    SO_REUSEADDR, SO_REUSEPORT, SO_BROADCAST, a raw socket's ICMP filter. Others are the shim's business."""
    if sk.type == R.SOCK_RAW and R.set_filter(sk, level, optname, value):
        return
    if level != SOL_SOCKET:
        return
    if optname == SO_BINDTODEVICE:
        name = value.split(b"\0", 1)[0].decode("utf-8", "replace")
        if not name:
            sk.ifindex = 0
            return
        dev = sk.ns.links.by_name(name)
        if dev is None:
            raise SockError(E.ENODEV)
        sk.ifindex = dev.ifindex
    elif optname == SO_BROADCAST:
        sk.broadcast = bool(int.from_bytes(value[:4], "little")) if value else False
    elif optname in (SO_REUSEADDR, SO_REUSEPORT):
        v = int.from_bytes(value[:4], "little") if value else 0
        bit = 1 if optname == SO_REUSEADDR else 2
        sk.reuse = (sk.reuse | bit) if v else (sk.reuse & ~bit)


def close(sk: UdpSock) -> None:
    """``udp_lib_unhash`` / ``raw_unhash_sk``."""
    sk.closed = True
    if sk.type == R.SOCK_RAW:
        raws = R.table(sk.ns)
        if sk in raws:
            raws.remove(sk)
        return
    if sk.lport:
        t = _table(sk.ns, sk.proto)
        socks = t.get(sk.lport)
        if socks and sk in socks:
            socks.remove(sk)
            if not socks:
                del t[sk.lport]


# -- send ----------------------------------------------------------------------------------------

def _udp_packet(src: str, dst: str, sport: int, dport: int, data: bytes) -> bytes:
    s, d = ipaddress.ip_address(src).packed, ipaddress.ip_address(dst).packed
    seg = P.l4_segment(P.IPPROTO_UDP, s, d, sport, dport, len(data), payload=data)
    return P.ip_header(s, d, P.IPPROTO_UDP, len(seg)) + seg


def _icmp_segment(src: str, dst: str, typ: int, rest: bytes) -> bytes:
    """An ICMP (IPv4) or ICMPv6 message of ``typ`` (code 0) and ``rest`` (from the
    identifier on), checksummed (ICMPv6 over the pseudo header)."""
    body = bytes((typ, 0, 0, 0)) + rest
    s, d = ipaddress.ip_address(src).packed, ipaddress.ip_address(dst).packed
    pseudo = s + d + struct.pack("!IxxxB", len(body), IPPROTO_ICMPV6) if len(s) == 16 else b""
    return body[:2] + struct.pack("!H", P.ip_compute_csum(pseudo + body)) + body[4:]


def _output(ns: NetNamespace, res: RouteResult, src: str, daddr: str, proto: int, sport: int, dport: int,
            data: bytes, oif: int = 0) -> int:
    """``ip_local_out``: a local destination through loopback, else the data path's output
    (SPD, SAD, ESP) and the device's wire. 0 or the errno of a drop."""
    if res.type == RTN_LOCAL or res.flags & RTCF_LOCAL:
        if proto == IPPROTO_UDP:
            pkt = _udp_packet(src, daddr, sport, dport, data)
        else:
            s, d = ipaddress.ip_address(src).packed, ipaddress.ip_address(daddr).packed
            pkt = P.ip_header(s, d, proto, len(data)) + data
        transmit(ns, res.dev if getattr(res.dev, "kind", None) == "loopback"
                 else ns.links.by_index(1), pkt)
        return 0
    xr = xfrm_xmit(ns, src, daddr, proto, sport, dport, len(data), 1,
                   keep_packets=True, payload=data, oif=oif)
    if not xr.batches:
        return E.EINVAL
    rec = xr.batches[0].rec
    if rec.result != "sent":
        log.debug("datagram %s → %s dropped: %s", src, daddr, rec.detail or rec.reason)
        return int(getattr(E, rec.errno or "", 0))
    out = ns.links.by_name(rec.out_dev or rec.clear_dev or "")
    for pkt, _ in xr.packets:
        transmit(ns, out, pkt)
    return 0


def sendmsg(sk: UdpSock, dest: bytes, data: bytes) -> int:
    """``udp_sendmsg`` / ``ping_v4_sendmsg``: 0 or the errno the datagram met (it is
    dropped then)."""
    if dest:
        daddr, dport = parse_sockaddr(sk.family, dest)
        daddr = str(ipaddress.ip_address(daddr))
    elif sk.raddr is not None:
        daddr, dport = sk.raddr, sk.rport
    else:
        return E.EDESTADDRREQ
    if sk.type == R.SOCK_RAW:
        return _raw_sendmsg(sk, daddr, data)
    ping = sk.proto != IPPROTO_UDP
    if ping:
        # ping_common_sendmsg: an echo request header of the family, code 0
        echo = ICMP_ECHO if sk.family == AF_INET else ICMPV6_ECHO_REQUEST
        if len(data) < 8 or data[0] != echo or data[1] != 0:
            return E.EINVAL
    elif dport == 0:
        return E.EINVAL
    if len(data) > MAX_PAYLOAD:
        return E.EMSGSIZE
    autobind(sk)
    ns = sk.ns
    routed = _route_output(sk, daddr)
    if isinstance(routed, int):
        return routed
    res, src = routed
    if ping:
        # the identifier is the socket's; the kernel computes the checksum
        seg = _icmp_segment(src, daddr, data[0], struct.pack("!H", sk.lport) + data[6:])
        return _output(ns, res, src, daddr, sk.proto, 0, 0, seg, sk.ifindex)
    return _output(ns, res, src, daddr, IPPROTO_UDP, sk.lport, dport, data, sk.ifindex)


def _route_output(sk: UdpSock, daddr: str) -> tuple[RouteResult, str] | int:
    """``ip_route_output_flow`` for a datagram of ``sk`` to ``daddr``: the route and the
    source address (the bound one, else the route's), or the errno the send fails with; a
    datagram that gets a route counts as sent."""
    res = route_lookup(sk.ns, daddr, src=sk.laddr, oif=sk.ifindex or None)
    if isinstance(res, int):
        return -res
    src = sk.laddr or res.src
    if src is None:
        return E.EADDRNOTAVAIL
    sk.sent += 1
    return res, src


def _raw_sendmsg(sk: UdpSock, daddr: str, data: bytes) -> int:
    """``raw_sendmsg`` / ``rawv6_sendmsg`` (no IP_HDRINCL): the program's bytes are the ICMP
    message; routed, sent as the socket's protocol (the destination's port is ignored)."""
    if len(data) > R.RAW_MAX:
        return E.EMSGSIZE
    routed = _route_output(sk, daddr)
    if isinstance(routed, int):
        return routed
    res, src = routed
    return _output(sk.ns, res, src, daddr, sk.proto, 0, 0, R.out_segment(sk, src, daddr, data),
                   sk.ifindex)


def raw_local_deliver(ns: NetNamespace, pkt: bytes, dev: NetDevice | None) -> None:
    """``raw_local_deliver`` / ``ipv6_raw_deliver``: a copy of the packet to every matching
    raw socket of its protocol (IPv4 with the IP header, IPv6 without), unless the socket's
    ICMP filter drops its type."""
    socks = getattr(ns, "raw_table", None)
    if not socks:
        return
    src, dst, proto, seg = P.split_ip(pkt)
    family = AF_INET if len(src) == 4 else AF_INET6
    saddr, daddr = str(ipaddress.ip_address(src)), str(ipaddress.ip_address(dst))
    ifindex = getattr(dev, "ifindex", 0)
    name = sockaddr(family, saddr, 0)
    body = pkt if family == AF_INET else seg
    for sk in list(socks):
        if not R.matches(sk, family, proto, saddr, daddr, ifindex):
            continue
        if seg and proto in (IPPROTO_ICMP, IPPROTO_ICMPV6) and R.filtered(sk, seg[0]):
            continue
        rec = T.frame(T.F_INET_DGRAM, struct.pack("=I", len(name)) + name + body)
        if sk.push(rec):
            sk.received += 1
        else:
            sk.drops += 1


# -- the wire between namespaces -----------------------------------------------------------------

class _WirePcap:
    """``XFRMD_WIRE_PCAP=FILE``: every packet that crosses a veth, LINKTYPE_RAW (101)."""
    path: str | None = None
    f = None

    @classmethod
    def write(cls, pkt: bytes) -> None:
        path = os.environ.get("XFRMD_WIRE_PCAP")
        if not path:
            return
        if cls.f is None or cls.path != path:
            cls.f = open(path, "wb")
            cls.path = path
            cls.f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 101))
        t = time.time()
        cls.f.write(struct.pack("<IIII", int(t), int((t % 1) * 1e6), len(pkt), len(pkt)) + pkt)
        cls.f.flush()


_rr = [0]                   # balance-rr's rr_tx_counter (one for all bonds: enough here)


def _bond_xmit_slave(bond_dev: NetDevice, pkt: bytes) -> NetDevice | None:
    """``bond_start_xmit``'s slave: the active one (active-backup), the next (balance-rr),
    or the one ``bond_xmit_hash`` picks for the packet (balance-xor, 802.3ad)."""
    bond = getattr(bond_dev, "bond", None)
    if bond is None:
        return None
    slaves = bond.usable_slaves()
    if bond.mode == "active-backup":
        # the active slave; none chosen yet (the bonding model does not always choose one
        # when a slave's carrier comes from its veth peer): bond_find_best_slave's choice
        return cast("NetDevice | None", bond.active or (slaves[0] if slaves else None))
    if not slaves:
        return None
    if bond.mode == "balance-rr":
        _rr[0] += 1
        return cast("NetDevice", slaves[(_rr[0] - 1) % len(slaves)])
    src, dst, proto, seg = P.split_ip(pkt)
    sport, dport = P.l4_ports(proto, seg)
    flow = Flow(bytes(6), bytes(6), str(ipaddress.ip_address(src)),
                str(ipaddress.ip_address(dst)), proto, sport, dport)
    return cast("NetDevice | None", xmit_slave(flow, bond.xmit_hash_policy, slaves))


def transmit(ns: NetNamespace, dev: NetDevice | None, pkt: bytes) -> None:
    """``dev_queue_xmit`` on ``dev``, counted as its driver counts (devices/netstats.py): a
    veth hands the packet to its peer (``veth_xmit``: tx here, rx there), which receives it
    in its namespace; loopback back into ``ns``; a bond through its slave; a dummy counts
    and frees it (``dummy_xmit``); netdevsim without a linked peer drops it (``tx_dropped``,
    ``nsim_start_xmit``); other devices have no wire here (gone, as on a port without a
    cable). A device that is down drops it (a packet to the namespace's own address with
    lo down too, as on Linux)."""
    if dev is None:
        return
    if not dev.up:
        netstats_add(dev, dropped=True)     # __dev_queue_xmit on a device that is down
        return
    kind = getattr(dev, "kind", None)
    if kind == "loopback":
        netstats_add(dev, nbytes=len(pkt))                 # loopback_xmit: both directions
        netstats_add(dev, rx=True, nbytes=len(pkt))
        ip_local_deliver(ns, pkt, dev)
        return
    if kind == "bond":
        transmit(ns, _bond_xmit_slave(dev, pkt), pkt)
        return
    if kind == "netdevsim":
        netstats_add(dev, dropped=True)
        return
    if kind != "veth":
        netstats_add(dev, nbytes=frame_len(dev, len(pkt)))
        return
    peer = getattr(dev, "peer", None)
    if peer is None or peer.netns is None or not peer.up:
        netstats_add(dev, dropped=True)                    # veth_xmit: no peer to take it
        return
    netstats_add(dev, nbytes=frame_len(dev, len(pkt)))
    netstats_add(peer, rx=True, nbytes=frame_len(peer, len(pkt)))
    _WirePcap.write(pkt)
    ip_rcv(peer.netns, pkt, peer)


def ip_rcv(ns: NetNamespace, pkt: bytes, dev: NetDevice) -> None:
    """A packet arriving on ``dev`` of ``ns``: ``xfrm_input`` and the policy check, then the
    transport protocol of what is left."""
    res = deliver_packets(ns, [pkt], rx_dev=dev)
    for inner in res.inner:
        ip_local_deliver(ns, inner, dev)


def ip_local_deliver(ns: NetNamespace, pkt: bytes, dev: NetDevice | None) -> None:
    """``ip_local_deliver_finish``: the raw sockets' copies, then the transport protocol of a
    packet for this namespace."""
    raw_local_deliver(ns, pkt, dev)
    proto = P.split_ip(pkt)[2]
    if proto == IPPROTO_UDP:
        udp_rcv(ns, pkt, dev)
    elif proto in (IPPROTO_ICMP, IPPROTO_ICMPV6):
        icmp_rcv(ns, pkt, dev)


def icmp_rcv(ns: NetNamespace, pkt: bytes, dev: NetDevice | None) -> None:
    """An echo request is answered (``icmp_echo`` / ``icmpv6_echo_reply``: the reply goes
    out through the namespace's own route, SPD and SAD); an echo reply goes to the ping
    socket of its identifier (``ping_rcv``)."""
    src, dst, proto, seg = P.split_ip(pkt)
    if len(seg) < 8:
        return
    v6 = proto == IPPROTO_ICMPV6
    saddr, daddr = str(ipaddress.ip_address(src)), str(ipaddress.ip_address(dst))
    if seg[0] == (ICMPV6_ECHO_REQUEST if v6 else ICMP_ECHO) and seg[1] == 0:
        res = route_lookup(ns, saddr, src=daddr)
        if isinstance(res, int):
            return
        reply = _icmp_segment(daddr, saddr, ICMPV6_ECHO_REPLY if v6 else ICMP_ECHOREPLY, seg[4:])
        _output(ns, res, daddr, saddr, proto, 0, 0, reply)
        return
    if seg[0] != (ICMPV6_ECHO_REPLY if v6 else ICMP_ECHOREPLY):
        return
    (ident,) = struct.unpack_from("!H", seg, 4)
    family = AF_INET6 if v6 else AF_INET
    ifindex = getattr(dev, "ifindex", 0)
    for sk in _table(ns, proto).get(ident, ()):
        if sk.family != family or (sk.laddr is not None and sk.laddr != daddr) \
                or (sk.ifindex and sk.ifindex != ifindex):
            continue
        rec = T.frame(T.F_INET_DGRAM, struct.pack("=I", 16 if family == AF_INET else 28)
                      + sockaddr(family, saddr, 0) + seg)
        if sk.push(rec):
            sk.received += 1
        else:
            sk.drops += 1
        return


def udp_rcv(ns: NetNamespace, pkt: bytes, dev: NetDevice | None) -> None:
    """``__udp4_lib_rcv``: the datagram to the socket ``compute_score`` likes best."""
    src, dst, proto, seg = P.split_ip(pkt)
    if proto != P.IPPROTO_UDP or len(seg) < 8:
        return
    sport, dport, length = struct.unpack_from("!HHH", seg)
    if length < 8 or length > len(seg):
        return
    family = AF_INET if len(src) == 4 else AF_INET6
    saddr, daddr = str(ipaddress.ip_address(src)), str(ipaddress.ip_address(dst))
    ifindex = getattr(dev, "ifindex", 0)
    best, best_score = None, -1
    for sk in _table(ns).get(dport, ()):
        if sk.family != family:
            continue
        score = 0
        if sk.laddr is not None:
            if sk.laddr != daddr:
                continue
            score += 4
        if sk.raddr is not None:
            if sk.raddr != saddr or sk.rport != sport:
                continue
            score += 4
        if sk.ifindex:
            if sk.ifindex != ifindex:
                continue
            score += 4
        if score > best_score:
            best, best_score = sk, score
    if best is None:
        return
    rec = T.frame(T.F_INET_DGRAM, struct.pack("=I", 16 if family == AF_INET else 28)
                  + sockaddr(family, saddr, sport) + seg[8:length])
    if best.push(rec):
        best.received += 1
    else:
        best.drops += 1                                   # the receive buffer is full


# -- records from the shim -----------------------------------------------------------------------

def handle(sk: UdpSock, rec: bytes) -> bytes | None:
    """One record of an INET connection; the reply to send, if any. A malformed record
    raises ``struct.error`` or :class:`~xfrmd.transport.FrameError` (the server closes the
    connection)."""
    if not T.is_frame(rec):
        raise T.FrameError("an INET connection carries only frames")
    version, kind, payload = T.parse_frame(rec)
    if version != PROTOCOL_VERSION:
        raise T.FrameError(f"version {version}")
    if kind == T.F_INET_SEND:
        (alen,) = struct.unpack_from("=I", payload)
        if 4 + alen > len(payload):
            raise T.FrameError("address past the end")
        err = sendmsg(sk, payload[4:4 + alen], payload[4 + alen:])
        if err:
            sk.drops += 1
        return None
    if kind == T.F_INET_BIND:
        (reuse,) = struct.unpack_from("=I", payload)
        raw = payload[4:]
        try:
            if raw:
                bind(sk, raw, reuse)
            else:
                autobind(sk)
            err = 0
        except SockError as e:
            err = e.errno
        return T.frame(T.F_INET_BIND_REPLY, struct.pack("=i", -err)
                       + sockaddr(sk.family, sk.laddr, sk.lport))
    if kind == T.F_INET_CONNECT:
        try:
            connect(sk, payload)
            err = 0
        except SockError as e:
            err = e.errno
        return T.frame(T.F_INET_BIND_REPLY, struct.pack("=i", -err)
                       + sockaddr(sk.family, sk.laddr, sk.lport))
    if kind == T.F_INET_SETSOCKOPT:
        level, optname = struct.unpack_from("=II", payload)
        try:
            setsockopt(sk, level, optname, payload[8:])
        except SockError as e:
            log.debug("udp setsockopt refused: %s", e)
        return None
    log.warning("unknown INET frame kind %d", kind)
    return None
