"""The emulated output path: a packet an application in an emulated namespace sends, through
routing, the SPD, the SAD, offload and ESP (net/xfrm/xfrm_policy.c ``xfrm_lookup``,
xfrm_state.c ``xfrm_state_find``, xfrm_output.c ``xfrm_output`` / ``xfrm_output_one``,
xfrm_replay.c ``xfrm_replay_overflow*``, xfrm_device.c ``xfrm_dev_offload_ok``).

Sans-IO: :func:`xfrm_xmit` takes the namespace and a flow and returns what happened to each
packet (a :class:`TxRecord` with a :class:`Hop` per transform, alike packets grouped into
batches) plus the ESP packets as bytes. The SPD's policy object is read as it is: selector,
action, templates, device binding. Drops carry the kernel's MIB name (counted in
``/proc/net/xfrm_stat``) and the errno the sender would see.

What is modelled where the kernel has a choice:

* larval drop (``net.core.xfrm_larval_drop`` = 1, the default): a packet without SA while an
  acquire is pending is blackholed — XfrmOutNoStates, the sender sees no error;
* one ``xfrm_state_find`` and outer route lookup per bundle: the next packet of the flow in
  the same call reuses them while :func:`xfrm_bundle_ok` holds (every state still VALID),
  as the kernel's cached dst does, and re-resolves once a state stops being VALID;
* real ESP (RFC 4303/4106) for ``rfc4106(gcm(aes))`` states; other algorithms are numbered
  and counted exactly, but the packet is not encrypted (``crypto`` says so in the result);
* packet offload: the hardware numbers packets (mlx5-like: per port; a bond's RFC replicas:
  the context the slave's driver resolves with ``xfrm_dev_state_lower_handle``) unless the
  device has ``xdo_dev_packet_xmit`` (the LAG tree's X01/X05: SOE, the newest bond), where
  the core keeps the software accounting on the one state.
"""
from __future__ import annotations

import errno as E
import ipaddress
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from bonding.hash import Flow
from devices.xfrmdev import OffloadError
from netlink_codec import xfrm as X

from ..errors import KernelError
from ..rtnl.fib import route_lookup
from ..xfrm import aevent
from ..xfrm.acquire import host_selector, state_find, xfrm_policy_lookup
from ..xfrm.esp import _authsize, _blksize, _ivsize
from ..xfrm.offload import (XFRM_DEV_OFFLOAD_CRYPTO, XFRM_DEV_OFFLOAD_PACKET,
                            xfrm_dev_offload_ok, xfrm_dev_state_advance_esn,
                            xfrm_dev_state_update_stats, xfrm_dst_offload_ok)
from ..xfrm.sadb import addr_key, oldest_first, sad
from ..xfrm.state import XFRM_STATE_VALID, own_replay
from . import packet as P
from .esp import EspGcmSA
from .mib import XFRM_INC_STATS
from .words import addr, hw_hint, km_state_text, offload_hint, sa_name, sel_text

if TYPE_CHECKING:
    from devices.netdev import NetDevice
    from devices.xfrmdev import XfrmDevOps

    from ..kernel import NetNamespace
    from ..xfrm.acquire import Template
    from ..xfrm.policy import Policy
    from ..xfrm.sadb import StateDb

U32 = 0xFFFFFFFF
GCM = "rfc4106(gcm(aes))"


class Drop(Exception):
    """A packet dropped: ``mib`` (the XFRM MIB counter or None), the errno the sender sees
    (0: silently), a text saying why."""

    def __init__(self, mib: str | None, errno: int, text: str) -> None:
        super().__init__(text)
        self.mib, self.errno, self.text = mib, errno, text


# -- routing ------------------------------------------------------------------------------------

def ip_route_output_key(ns: NetNamespace, daddr: str, saddr: str | None = None,
                        oif: int = 0) -> NetDevice:
    """The output device of a packet (``ip_route_output_key_hash_rcu`` through the rules:
    the FIB's ``route_lookup``), or KernelError with the lookup's errno. ``oif``: the output
    device asked for (an XFRM interface's link for the outer packet)."""
    res = route_lookup(ns, daddr, src=saddr, oif=oif or None)
    if isinstance(res, int):
        raise KernelError(-res)
    return cast("NetDevice", res.dev)


# -- the device a state is offloaded to --------------------------------------------------------

def _ops(dev: Any) -> XfrmDevOps | None:
    ops: XfrmDevOps | None = dev.xfrmdev_ops
    return ops


def dev_ops(dev: NetDevice) -> XfrmDevOps:
    """The offload ops of the device a state is offloaded to (xdo_dev_state_add ran: it
    has them)."""
    ops = _ops(dev)
    assert ops is not None
    return ops


# -- sequence numbers (xfrm_replay.c) ---------------------------------------------------------

def xfrm_replay_overflow(x: Any, offload: bool = False) -> int:
    """``xfrm_replay_overflow`` (legacy, bmp and ESN modes, the ``_offload`` variants when the
    skb carries crypto offload): the next outbound sequence number (64-bit with ESN), or
    Drop(XfrmOutStateSeqError, EOVERFLOW) when it would wrap without OSEQ_MAY_WRAP. The
    offload ESN variant calls ``xfrm_dev_state_advance_esn`` on every packet."""
    if x.id.proto not in (X.IPPROTO_ESP, X.IPPROTO_AH):      # XFRM_TYPE_REPLAY_PROT
        return 0
    may_wrap = x.extra_flags & X.XFRM_SA_XFLAG_OSEQ_MAY_WRAP
    r = x.replay_esn
    if r is None or not x.flags & X.XFRM_STATE_ESN:
        cur = x.replay[0] if r is None else r.oseq
        seq = (cur + 1) & U32
        if seq == 0 and not may_wrap:
            raise Drop("XfrmOutStateSeqError", E.EOVERFLOW,
                       f"{sa_name(x)}: its 32-bit sequence number would wrap (no ESN, no "
                       "oseq-may-wrap): the key manager must rekey before 2^32 packets, or add "
                       "the SA with `flag esn` (or `extra-flag oseq-may-wrap`)")
        if r is None:
            own_replay(x)[0] = seq
        else:
            r.oseq = seq
    else:
        lo, hi = (r.oseq + 1) & U32, r.oseq_hi
        if lo == 0:
            hi = (hi + 1) & U32
            if hi == 0:
                raise Drop("XfrmOutStateSeqError", E.EOVERFLOW,
                           f"{sa_name(x)}: its 64-bit ESN sequence number would wrap: the key "
                           "manager must rekey before that")
        r.oseq, r.oseq_hi = lo, hi
        seq = (hi << 32) | lo
        if offload:
            xfrm_dev_state_advance_esn(x)
    aevent.replay_advanced(x)
    out: int = seq
    return out


def oseq_of(x: Any) -> int:
    r = x.replay_esn
    seq: int = x.replay[0] if r is None else (
        (r.oseq_hi << 32) | r.oseq if x.flags & X.XFRM_STATE_ESN else r.oseq)
    return seq


# -- ESP ------------------------------------------------------------------------------------------

_esp_cache: weakref.WeakKeyDictionary[Any, EspGcmSA] = weakref.WeakKeyDictionary()


def esp_gcm(x: Any) -> EspGcmSA | None:
    """The AES-GCM context of an rfc4106(gcm(aes)) state (keys from XFRMA_ALG_AEAD)."""
    a = x.aead
    if a is None or a.name != GCM:
        return None
    sa = _esp_cache.get(x)
    if sa is None or sa.key != a.key:
        try:
            sa = EspGcmSA(x.id.spi, bytes(a.key), icv_len=a.icv_len // 8, replay_window=0,
                          esn=bool(x.flags & X.XFRM_STATE_ESN))
        except ValueError:
            return None
        _esp_cache[x] = sa
    return sa


def crypto_name(x: Any) -> str:
    if x.aead is not None:
        name: str = x.aead.name
        return name
    names = [a.name for a in (x.enc, x.auth) if a is not None]
    return "+".join(names) or "null"


def esp_output(x: Any, pkt: bytes, seq: int) -> tuple[bytes, bool]:
    """``esp_output`` after the outer mode: the packet with ESP applied (tunnel: the whole
    packet inside a new outer header; transport: the L4 segment, the IP header kept), and
    whether real crypto was applied. NAT-T adds the UDP header (RFC 3948)."""
    src, dst, proto, seg = P.split_ip(pkt)
    w = 4 if x.family == X.AF_INET else 16
    if x.mode == X.XFRM_MODE_TUNNEL:
        body, nh = pkt, (P.IPPROTO_IPIP if pkt[0] >> 4 == 4 else P.IPPROTO_IPV6)
        src, dst = bytes(x.saddr[:w]), bytes(x.id.daddr[:w])
    else:
        body, nh = seg, proto
    g = esp_gcm(x)
    if g is not None:
        esp = g.encapsulate(body, nh, seq=seq)
        real = True
    else:
        # numbered and counted, not encrypted: header, zero IV, clear body, trailer, zero ICV
        pad = (-(len(body) + 2)) % _blksize(x)
        esp = ((x.id.spi).to_bytes(4, "big") + (seq & U32).to_bytes(4, "big") + bytes(_ivsize(x))
               + body + bytes(range(1, pad + 1)) + bytes((pad, nh)) + bytes(_authsize(x)))
        real = False
    if x.encap is not None:
        e = x.encap
        udp = (e.encap_sport.to_bytes(2, "big") + e.encap_dport.to_bytes(2, "big")
               + (8 + len(esp)).to_bytes(2, "big") + b"\0\0")
        return P.ip_header(src, dst, P.IPPROTO_UDP, 8 + len(esp)) + udp + esp, real
    return P.ip_header(src, dst, P.IPPROTO_ESP, len(esp)) + esp, real


def skb_len_at_accounting(x: Any, pkt: bytes) -> int:
    """``skb->len`` when xfrm_output_one adds it to curlft: the outer mode has pulled the IP
    header in transport mode (the L4 segment is left); in tunnel mode the whole packet."""
    if x.mode == X.XFRM_MODE_TUNNEL:
        return len(pkt)
    return len(P.split_ip(pkt)[3])


# -- results --------------------------------------------------------------------------------------

def put_set(d: dict[str, object], rec: object, keys: tuple[str, ...]) -> dict[str, object]:
    """``d`` with the fields ``keys`` of ``rec`` that are set (not None), in that order."""
    for key in keys:
        v = getattr(rec, key)
        if v is not None:
            d[key] = v
    return d


_MODE_NAME = {X.XFRM_MODE_TRANSPORT: "transport", X.XFRM_MODE_TUNNEL: "tunnel",
              X.XFRM_MODE_BEET: "beet"}
NOT_MODELLED = " (not modelled: numbered and counted, not encrypted)"


@dataclass(slots=True)
class Hop:
    """One transform of a packet's bundle (``xfrm_output_one`` for one state): the SA, where
    it was processed (``path``: software, crypto-offload or packet-offload; ``dev``, and the
    bond's ``slave``), who numbered the packet, why crypto offload was not used
    (``fallback``), whether the crypto is real (``modelled``) and the sequence number the
    packet got (``seq``: not part of what makes two packets alike)."""
    spi: int
    reqid: int
    mode: int
    crypto: str
    seq: int | None = field(default=None, compare=False)
    fallback: str | None = None
    path: str | None = None
    dev: str | None = None
    slave: str | None = None
    numbered_by: str | None = None
    modelled: bool = True
    # offloaded states only: xfrm_dst_offload_ok, i.e. may a socket on this bundle keep GSO
    # (sk_setup_caps)
    gso: bool | None = None

    @classmethod
    def of(cls, x: Any) -> Hop:
        return cls(x.id.spi, x.reqid, x.mode, crypto_name(x))

    def to_dict(self) -> dict[str, object]:
        d: dict[str, object] = {
            "spi": f"0x{self.spi:08x}", "reqid": self.reqid,
            "mode": _MODE_NAME.get(self.mode, str(self.mode)),
            "crypto": self.crypto if self.modelled else self.crypto + NOT_MODELLED}
        return put_set(d, self, ("fallback", "path", "dev", "slave", "numbered_by", "gso"))


@dataclass(slots=True)
class TxRecord:
    """What happened to one packet on the output path: the out policy (its index), the
    result, the transforms (``hops``), the templates an ACQUIRE went out for, the device it
    left through (``clear_dev`` in clear, ``out_dev`` after ESP; ``xfrm_dev`` the XFRM
    interface it was routed to), or why it was dropped (``reason``, ``detail``, the errno
    name the sender sees). Consecutive alike packets form a batch."""
    policy: int | None
    result: str = "sent"
    hops: list[Hop] = field(default_factory=list)
    acquire: list[int] | None = None
    clear_dev: str | None = None
    out_dev: str | None = None
    xfrm_dev: str | None = None
    reason: str | None = None
    detail: str | None = None
    errno: str | None = None

    def drop(self, reason: str, errno: str, detail: str | None = None) -> None:
        self.result, self.reason, self.detail, self.errno = "dropped", reason, detail, errno

    def to_dict(self) -> dict[str, object]:
        """The batch as ``xfrmd ctl xmit --json`` prints it."""
        d: dict[str, object] = {
            "policy": None if self.policy is None else {"index": self.policy, "dir": "out"},
            "result": self.result, "sas": [h.to_dict() for h in self.hops]}
        if self.acquire is not None:
            d["acquire"] = self.acquire
        if self.clear_dev is not None:
            d["path"], d["dev"] = "clear", self.clear_dev
        return put_set(d, self, ("out_dev", "xfrm_dev", "reason", "detail", "errno"))


@dataclass(slots=True)
class XmitBatch:
    """Consecutive packets with equal records: how many, and the range of sequence numbers
    each SA (by SPI) gave them."""
    rec: TxRecord
    count: int = 1
    seq: dict[int, list[int]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        d = self.rec.to_dict()
        d["count"] = self.count
        d["seq"] = {f"0x{spi:08x}": rng for spi, rng in self.seq.items()}
        return d


@dataclass(slots=True)
class XmitResult:
    """What happened to the packets of one ``xmit`` call."""
    batches: list[XmitBatch] = field(default_factory=list)
    packets: list[tuple[bytes, bool]] = field(default_factory=list)  # (bytes, crypto applied)
    sent: int = 0
    dropped: int = 0

    def add(self, rec: TxRecord, pkt_bytes: bytes | None = None, real: bool = False) -> None:
        last = self.batches[-1] if self.batches else None
        if last is not None and last.rec == rec:
            last.count += 1
        else:
            last = XmitBatch(rec)
            self.batches.append(last)
        if rec.result == "sent":
            self.sent += 1
            if rec.hops:
                seqs = {h.spi: h.seq for h in rec.hops if h.seq is not None}
                for spi, s in seqs.items():
                    rng = last.seq.setdefault(spi, [s, s])
                    rng[1] = s
        else:
            self.dropped += 1
        if pkt_bytes is not None:
            self.packets.append((pkt_bytes, real))

    def to_dict(self) -> dict[str, object]:
        return {"batches": [b.to_dict() for b in self.batches], "sent": self.sent,
                "dropped": self.dropped}


# -- the output path ----------------------------------------------------------------------------

def _account(ns: NetNamespace, x: Any, pkt: bytes, offload: bool) -> int:
    """The part of ``xfrm_output_one`` (and of the LAG tree's ``xfrm_dev_packet_state_check``)
    that runs under the state lock: VALID, lifetime check, sequence number, curlft."""
    db = x.net
    if x.km_state != XFRM_STATE_VALID:
        raise Drop("XfrmOutStateInvalid", E.EINVAL,
                   f"{sa_name(x)} is {km_state_text(x)}, not valid: the key manager must "
                   "install a fresh SA for this reqid")
    if db.check_expire(x):
        raise Drop("XfrmOutStateExpired", E.EINVAL, f"{sa_name(x)} reached its hard lifetime "
                   f"({_hard_limits(x)}): the key manager must rekey before the hard limit "
                   "(or raise it: `limit time-hard|byte-hard|packet-hard`)")
    seq = xfrm_replay_overflow(x, offload)
    x.curlft.bytes += skb_len_at_accounting(x, pkt)
    x.curlft.packets += 1
    x.lastused = ns.kernel.clock.wall()
    return seq


def _hard_limits(x: Any) -> str:
    lft = x.lft
    parts = [f"{what} {v}" for what, v in (("time-hard", lft.hard_add_expires_seconds),
                                           ("time-use-hard", lft.hard_use_expires_seconds),
                                           ("byte-hard", lft.hard_byte_limit),
                                           ("packet-hard", lft.hard_packet_limit))
             if v not in (0, X.XFRM_INF)]
    return ", ".join(parts) or "hard limit"


def _finite_limits(x: Any) -> bool:
    lft = x.lft
    return any(v != X.XFRM_INF for v in (lft.soft_byte_limit, lft.hard_byte_limit,
                                         lft.soft_packet_limit, lft.hard_packet_limit))


def _xfrm_output_state(ns: NetNamespace, x: Any, pkt: bytes, path_dev: NetDevice,
                       nstates: int, hop: Hop, spray: Flow | None = None) -> tuple[bytes, bool]:
    """``xfrm_output`` + ``xfrm_output_one`` for one state: returns (packet after ESP, crypto
    applied); fills ``hop`` with where it was processed and the sequence number."""
    xso = x.xso
    if x.mode not in (X.XFRM_MODE_TRANSPORT, X.XFRM_MODE_TUNNEL):
        raise Drop(None, E.EOPNOTSUPP, f"xfrmd: {sa_name(x)}: only transport and tunnel mode "
                                        "are modelled on the data path (use mode transport "
                                        "or tunnel)")
    if x.id.proto != X.IPPROTO_ESP:
        raise Drop(None, E.EOPNOTSUPP, f"xfrmd: {sa_name(x)}: only ESP is modelled on the data "
                                        "path (use proto esp)")
    if xso is not None and xso.dev is not None:
        hop.gso = xfrm_dst_offload_ok(x, path_dev, nstates)
    if xso is not None and xso.type == XFRM_DEV_OFFLOAD_PACKET:
        ok, why = xfrm_dev_offload_ok(x, path_dev, len(pkt), nstates)
        if not ok:
            raise Drop("XfrmOutError", E.EHOSTUNREACH,
                       f"packet offload: {why}: {sa_name(x)} is packet-offloaded on "
                       f"{xso.dev.name} and a packet-offloaded SA has no software fallback; "
                       + offload_hint(why, x, xso.dev))
        ops = dev_ops(xso.dev)
        hop.path = "packet-offload"
        hop.dev = xso.dev.name
        numbered: list[int] = []

        def account() -> int:
            numbered.append(_account(ns, x, pkt, False))
            return numbered[-1]
        try:
            # X05 (xfrm_dev_packet_state_check): the core keeps the accounting of a state
            # whose device has xdo_dev_packet_xmit; otherwise the hardware does
            port, hw_seq = ops.hw_xmit(xso.dev, x, len(pkt),
                                       account if ops.has_packet_xmit else None, spray)
        except OffloadError as e:
            msg = e.msg or "dropped by the hardware"
            text = (f"{msg}: {sa_name(x)} packet-offloaded on {xso.dev.name}; "
                    + hw_hint(msg, x, xso.dev))
            if e.errno == 0:
                raise Drop(None, 0, text) from None
            raise Drop("XfrmOutError", e.errno, text) from None
        if port is not None and port is not xso.dev:
            hop.slave = port.name
        if hw_seq is None:
            seq = numbered[-1] if numbered else None
            hop.numbered_by = "core"
        else:
            seq = hw_seq
            hop.numbered_by = "hardware"
            if _finite_limits(x) and x.km_state == XFRM_STATE_VALID:
                # the driver's limit events / 1 s work (mlx5e_ipsec_handle_sw_limits):
                # fresh counters from the hardware, then xfrm_state_check_expire
                xfrm_dev_state_update_stats(x)
                x.net.check_expire(x)
        hop.seq = seq
        return esp_output(x, pkt, seq or 0)
    offload = False
    if xso is not None and xso.type == XFRM_DEV_OFFLOAD_CRYPTO:
        offload, why = xfrm_dev_offload_ok(x, path_dev, len(pkt), nstates)
        if not offload:
            hop.fallback = why
    hop.seq = _account(ns, x, pkt, offload)
    out, real = esp_output(x, pkt, hop.seq)
    if offload:
        hop.path = "crypto-offload"
        hop.dev = xso.dev.name
        real_dev = xso.real_dev
        if real_dev is not None and real_dev is not xso.dev:
            hop.slave = real_dev.name
        try:
            # the device's xmit sees the secpath (nsim_ipsec_tx counts it, mlx5 counts)
            dev_ops(xso.dev).hw_traffic(xso.dev, x, 1, len(out))
        except OffloadError:
            pass
    else:
        hop.path = "software"
    return out, real


def xfrm_bundle_ok(states: list[Any]) -> bool:
    """``xfrm_bundle_ok``: the flow's cached bundle may carry the next packet while every
    state in it is still VALID (nothing else changes within one ``xfrm_xmit`` call: no
    state is added, no route changes), so the next packet skips ``xfrm_state_find`` and
    the route lookup, as the kernel's cached dst does."""
    return all(x.km_state == XFRM_STATE_VALID for x in states)


def _path_dev(ns: NetNamespace, states: list[Any], dst: str, rt_dev: NetDevice,
              xfrmi: Any) -> NetDevice:
    """The bundle's path device: the route toward the outermost tunnel endpoint (through an
    XFRM interface's link, ``xfrmi_xmit``)."""
    outer = _outer_daddr(states, dst)
    try:
        if xfrmi is not None:
            return ip_route_output_key(ns, outer, None, xfrmi.link)
        return rt_dev if outer == dst else ip_route_output_key(ns, outer)
    except KernelError as e:
        raise Drop(None, e.errno, f"no route to the tunnel endpoint {outer} of "
                                  f"{sa_name(states[-1])}: add a route to {outer}") from None


def _outer_daddr(states: list[Any], dst: str) -> str:
    """The outermost tunnel endpoint of a bundle (``dst`` without a tunnel-mode state)."""
    outer = dst
    for x in states:
        if x.mode == X.XFRM_MODE_TUNNEL:
            outer = addr(x.id.daddr, x.family)
    return outer


def xfrm_xmit(ns: NetNamespace, src: str, dst: str, proto: int = P.IPPROTO_UDP,
              sport: int = 0, dport: int = 0, size: int = 0, count: int = 1, mark: int = 0,
              keep_packets: bool = False, spray: bool = False,
              payload: bytes | None = None, oif: int = 0) -> XmitResult:
    """Send ``count`` packets of a flow from namespace ``ns`` (``ip_route_output_flow`` →
    ``xfrm_lookup`` → ``xfrm_output``). ``spray``: a bond transmits each packet-offloaded
    packet through the slave ``bond_xmit_hash`` picks for the inner flow, using that slave's
    replica — the naive per-flow replication the LAG review questioned (not any patch).
    ``payload``: what a socket sent (xfrmd.inet) instead of ``size`` filler bytes: the UDP
    payload, or for another protocol the whole transport segment (an ICMP echo). ``oif``: the
    device the socket is bound to (SO_BINDTODEVICE: ``flowi4_oif``)."""
    res = XmitResult()
    family = X.AF_INET if ipaddress.ip_address(dst).version == 4 else X.AF_INET6
    sbytes = ipaddress.ip_address(src).packed.ljust(16, b"\0")
    dbytes = ipaddress.ip_address(dst).packed.ljust(16, b"\0")
    if proto == P.IPPROTO_ICMP and family == X.AF_INET6:
        proto = P.IPPROTO_ICMPV6
    l4_sport, l4_dport = (sport, dport) if proto in (P.IPPROTO_UDP, P.IPPROTO_TCP) else (0, 0)
    flow_sel = host_selector(sbytes, dbytes, family, proto, l4_sport, l4_dport)
    flow = bytes(flow_sel)
    rt_dev: NetDevice | None
    try:
        rt_dev, rt_err = ip_route_output_key(ns, dst, src, oif), 0
    except KernelError as e:
        rt_dev, rt_err = None, e.errno
    # a route through an XFRM interface: xfrmi_xmit2 looks the policy up by its if_id
    # (xfrm_lookup_with_ifid); any other route by if_id 0
    xfrmi = getattr(rt_dev, "xfrmi", None)
    if_id = xfrmi.if_id if xfrmi is not None else 0
    pol: Policy | None = xfrm_policy_lookup(ns, X.XFRM_POLICY_OUT, flow, family, mark, if_id)
    db = sad(ns.xfrm)
    pol_index = pol.index if pol is not None else None
    spray_flow = Flow(bytes(6), bytes(6), src, dst, proto, l4_sport, l4_dport) if spray else None
    w = 4 if family == X.AF_INET else 16
    s_raw, d_raw = sbytes[:w], dbytes[:w]
    udp_seg = P.l4_segment(proto, s_raw, d_raw, sport, dport, size, payload=payload) \
        if proto == P.IPPROTO_UDP else None
    # the flow's bundle (its states and path device), cached while xfrm_bundle_ok holds
    bundle: tuple[list[Any], NetDevice] | None = None
    i = -1
    while i + 1 < count:
        i += 1
        rec = TxRecord(pol_index)
        if udp_seg is not None:
            seg = udp_seg                      # one UDP datagram is like the next
        elif payload is not None:
            seg = payload                      # a socket's own segment (an ICMP echo)
        else:
            seg = P.l4_segment(proto, s_raw, d_raw, sport, dport, size, i + 1)
        pkt = P.ip_header(s_raw, d_raw, proto, len(seg)) + seg
        if rt_dev is None:
            rec.drop("no route", E.errorcode.get(rt_err, str(rt_err)),
                     f"no route from {src} to {dst} in {ns.name}: add a route (ip route "
                     f"add {dst} dev …) or an address on a link that is up")
            res.add(rec)
            continue
        if xfrmi is not None and (xfrmi.collect_md or pol is None):
            # xfrmi_xmit2: no metadata (a socket's packet on the collect_md interface) is
            # -EINVAL; no state for the if_id is tx_err_link_failure (tx_carrier_errors).
            # Only tc/BPF (bpf_skb_set_xfrm_info) or an lwtunnel xfrm encap gives a packet
            # the metadata, and xfrmd models neither.
            why = ("collect_md interface: the packet carries no xfrm metadata (if_id, link),"
                   " which only a tc/BPF program (bpf_skb_set_xfrm_info) or a route's xfrm"
                   " encap sets and xfrmd does not model; route through an interface with its"
                   " own if_id instead" if xfrmi.collect_md
                   else f"no policy for if_id {if_id}")
            rec.drop(f"xfrm interface {rt_dev.name}: {why}",
                     "EINVAL" if xfrmi.collect_md else "EHOSTUNREACH")
            res.add(rec)
            continue
        if pol is None:
            if ns.xfrm.policy_default[X.XFRM_POLICY_OUT] == X.XFRM_USERPOLICY_BLOCK:
                rec.drop("policy default out block", "EPERM",
                         f"no out policy matches {src} → {dst} and the namespace's "
                         "default for out is block: add a policy for this flow or "
                         "`ip xfrm policy setdefault out accept`")
                res.add(rec)
                continue
            rec.clear_dev = rt_dev.name
            res.add(rec, pkt if keep_packets else None)
            continue
        pol.curlft_use = ns.kernel.clock.wall()        # xfrm_lookup: pol->curlft.use_time
        try:
            if pol.action != X.XFRM_POLICY_ALLOW:
                raise Drop("XfrmOutPolBlock", E.EPERM,
                           f"policy action block: its selector {sel_text(pol.sel)} covers "
                           "this flow; delete the policy or add it with action allow")
            if bundle is not None and xfrm_bundle_ok(bundle[0]):
                states, path_dev = bundle
            else:
                bundle = None
                states = _tmpl_resolve(db, flow_sel, pol, sbytes, dbytes, family, rec)
                if not states and xfrmi is not None:
                    raise Drop(None, E.EHOSTUNREACH, f"xfrm interface {rt_dev.name}: no state")
                if not states:
                    rec.clear_dev = rt_dev.name
                    res.add(rec, pkt if keep_packets else None)
                    continue
                path_dev = _path_dev(ns, states, dst, rt_dev, xfrmi)
                bundle = (states, path_dev)
            real = True
            for x in states:
                hop = Hop.of(x)
                rec.hops.append(hop)
                pkt, r = _xfrm_output_state(ns, x, pkt, path_dev, len(states), hop, spray_flow)
                real = real and r
                hop.modelled = r
            rec.out_dev = path_dev.name
            if xfrmi is not None:
                rec.xfrm_dev = rt_dev.name
            res.add(rec, pkt if keep_packets else None, real)
            if udp_seg is not None and xfrmi is None and i + 1 < count:
                # the packets after this one take the same path: the batch below does for
                # them what the loop would, counted together (None: not such a path)
                i += _software_batch(ns, pol, states, res, s_raw, d_raw, proto, udp_seg,
                                     count - i - 1, keep_packets)
        except Drop as d:
            if d.mib:
                XFRM_INC_STATS(ns, d.mib)
            rec.drop(d.mib or d.text, E.errorcode.get(d.errno, str(d.errno)) if d.errno
                     else "none", d.text)
            res.add(rec)
    return res


_CHUNK = 64      # packets per encapsulate_batch: large enough to amortise, small for the cache


def _software_batch(ns: NetNamespace, pol: Policy, states: list[Any], res: XmitResult,
                    s_raw: bytes, d_raw: bytes, proto: int, seg: bytes, n: int,
                    keep_packets: bool) -> int:
    """Up to ``n`` more packets of a flow whose previous packet went out through one
    rfc4106(gcm(aes)) state the core numbers (no NAT-T, ESN or aevent listener) — in
    software, or packet-offloaded to a device with ``xdo_dev_packet_xmit`` (X05: the core
    keeps the accounting; the previous packet passed ``xfrm_dev_offload_ok``, and nothing
    it asks changes within the call): the ones that meet no limit in ``xfrm_output_one`` —
    VALID, below every lifetime limit ``check_expire`` would act on, no sequence wrap —
    each numbered, encrypted and counted as the per-packet loop would, with the state's
    counters (curlft, oseq, lastused) written once at the end and the device's hardware
    counters moved once (``hw_traffic``). The packet that would meet a limit is left to
    that loop. Returns how many were sent."""
    if len(states) != 1:
        return 0
    x = states[0]
    g = esp_gcm(x)
    if x.xso is not None and not _core_numbered_offload(res):
        return 0
    if (g is None or x.encap is not None or g.esn
            or x.flags & X.XFRM_STATE_ESN or x.km_state != XFRM_STATE_VALID
            or x.mode not in (X.XFRM_MODE_TUNNEL, X.XFRM_MODE_TRANSPORT)
            or x.id.proto != X.IPPROTO_ESP or aevent._aevent_is_on(x.net)):
        return 0
    tunnel = x.mode == X.XFRM_MODE_TUNNEL
    inner_len = (20 if len(s_raw) == 4 else 40) + len(seg)
    skb_len = inner_len if tunnel else len(seg)          # skb_len_at_accounting
    cur, lft = x.curlft, x.lft
    r = x.replay_esn
    oseq = x.replay[0] if r is None else r.oseq

    def room(count: int, limit: int, step: int) -> int:
        """How many more packets keep ``count + k * step < limit`` (check_expire quiet)."""
        return max(0, -(-(limit - count) // step))
    n = min(n, U32 - oseq,
            room(cur.packets, lft.hard_packet_limit, 1), room(cur.bytes, lft.hard_byte_limit, skb_len))
    if not x.km_dying:
        n = min(n, room(cur.packets, lft.soft_packet_limit, 1),
                room(cur.bytes, lft.soft_byte_limit, skb_len))
    if n <= 0:
        return 0
    w = 4 if x.family == X.AF_INET else 16
    if tunnel:
        nh = P.IPPROTO_IPIP if len(s_raw) == 4 else P.IPPROTO_IPV6
        o_src, o_dst = bytes(x.saddr[:w]), bytes(x.id.daddr[:w])
    else:
        nh, o_src, o_dst = proto, s_raw, d_raw
    esp_proto = P.IPPROTO_ESP
    # the per-packet loop takes an IPv4 ID for the inner header, then one for the outer: the
    # same IDs, reserved here, as the inner headers are built first and the outer ones last
    step = (len(s_raw) == 4) + (len(o_src) == 4)
    first = P.take_ip_ids(n * step)
    seg_len, keep = len(seg), res.packets.extend if keep_packets else None
    for c in range(0, n, _CHUNK):
        m = min(_CHUNK, n - c)
        ids = [(first + j * step) & 0xFFFF for j in range(c, c + m)]
        # tunnel: each packet's inner IP header goes in front of the segment inside the
        # plaintext (encapsulate_batch's inner=)
        inner = P.ip_headers(s_raw, d_raw, proto, seg_len, ids) if tunnel else None
        # every ESP packet of the chunk has the same length (the same payload each time):
        # the outer headers first, each packet then made behind its own
        outer = P.ip_headers(o_src, o_dst, esp_proto, g.esp_len(skb_len),
                             [(i + step - 1) & 0xFFFF for i in ids])
        outs = g.encapsulate_batch([seg] * m, nh, oseq + 1 + c, outer, inner)
        if keep is not None:
            keep((out, True) for out in outs)
    seq = oseq + n
    if x.xso is not None:
        # the packets cross the hardware (the bond's pinned slave, the SOE's slot)
        dev_ops(x.xso.dev).hw_traffic(x.xso.dev, x, n, n * inner_len)
    # the counters, as n passes through _account and xfrm_replay_overflow would leave them
    if r is None:
        own_replay(x)[0] = seq
    else:
        r.oseq = seq
    cur.bytes += n * skb_len
    cur.packets += n
    x.lastused = pol.curlft_use = ns.kernel.clock.wall()
    aevent.replay_advanced(x)
    last = res.batches[-1]
    last.count += n
    last.seq[x.id.spi][1] = seq
    res.sent += n
    return n


def xfrm_outer_daddr(ns: NetNamespace, src: str, dst: str, proto: int, sport: int = 0,
                     dport: int = 0, mark: int = 0) -> str:
    """Where the flow's packets will be addressed after ESP, without sending any: the last
    tunnel-mode template's endpoint of the out policy ``xfrm_policy_lookup`` finds (what
    ``xfrm_tmpl_resolve_one`` would take), else DST."""
    family = X.AF_INET if ipaddress.ip_address(dst).version == 4 else X.AF_INET6
    sel = host_selector(ipaddress.ip_address(src).packed.ljust(16, b"\0"),
                        ipaddress.ip_address(dst).packed.ljust(16, b"\0"), family, proto,
                        sport, dport)
    pol = xfrm_policy_lookup(ns, X.XFRM_POLICY_OUT, bytes(sel), family, mark, 0)
    outer = dst
    for t in pol.templates if pol is not None else ():
        fam = t.family or family
        w = 4 if fam == X.AF_INET else 16
        if t.mode in (X.XFRM_MODE_TUNNEL, X.XFRM_MODE_BEET) and any(t.daddr[:w]):
            outer = addr(t.daddr, fam)
    return outer


def _core_numbered_offload(res: XmitResult) -> bool:
    """Did the previous packet go out packet-offloaded, numbered by the core (X05)?"""
    hops = res.batches[-1].rec.hops if res.batches else []
    return (len(hops) == 1 and hops[0].path == "packet-offload"
            and hops[0].numbered_by == "core")


def _tmpl_text(t: Template, src: bytes, dst: bytes, family: int) -> str:
    """A template as `ip xfrm policy` writes it, addresses filled in as the lookup used them."""
    fam = t.family or family
    w = 4 if fam == X.AF_INET else 16
    daddr = t.daddr if any(t.daddr[:w]) else dst
    saddr = t.saddr if any(t.saddr[:w]) else src
    mode = _MODE_NAME.get(t.mode, t.mode)
    proto = {X.IPPROTO_ESP: "esp", X.IPPROTO_AH: "ah"}.get(t.proto, t.proto)
    return (f"src {addr(saddr, fam)} dst {addr(daddr, fam)} proto {proto} reqid {t.reqid} "
            f"mode {mode}")


def _tmpl_resolve(db: StateDb, sel: X.XfrmSelector, pol: Policy, src: bytes, dst: bytes,
                  family: int, rec: TxRecord) -> list[Any]:
    """``xfrm_tmpl_resolve_one``: a VALID state per template of the policy; an optional
    template without one is skipped. Failures: -EAGAIN (acquire sent or pending) →
    XfrmOutNoStates, blackholed under larval drop; anything else (-ESRCH: no key manager) →
    XfrmOutPolError."""
    states = []
    local, remote = src, dst
    for t in pol.templates:
        x, err, sent = state_find(db, sel, t, pol, local, remote, family)
        if x is not None and x.dir and x.dir != X.XFRM_SA_DIR_OUT:
            raise Drop("XfrmOutStateDirError", E.EINVAL,
                       f"{sa_name(x)} is dir in, but the out policy's template finds it: add "
                       "the outbound SA with dir out (or no dir)")
        if x is not None:
            states.append(x)
            if t.mode in (X.XFRM_MODE_TUNNEL, X.XFRM_MODE_BEET):
                remote, local = x.id.daddr, x.saddr
            continue
        if sent:
            if rec.acquire is None:
                rec.acquire = []
            rec.acquire.append(t.reqid)
        if t.optional:
            continue
        why = offload_mismatch(db, t, pol, local, remote, family)
        tmpl = _tmpl_text(t, local, remote, family)
        via = f" (template {tmpl})"
        if err == -E.EAGAIN:
            raise Drop("XfrmOutNoStates", 0, (f"no usable SA for reqid {t.reqid}: {why}; "
                                              if why else f"no SA for reqid {t.reqid}{via} ")
                       + ("(ACQUIRE sent)" if sent else "(acquire pending)")
                       + "; blackholed (xfrm_larval_drop) until the key manager adds the SA")
        if err == -E.ESRCH:
            raise Drop("XfrmOutPolError", E.ESRCH, f"no usable SA for reqid {t.reqid}: {why}"
                       if why else f"no SA for reqid {t.reqid}{via} and no key manager listens: "
                                   "add the SA (ip xfrm state add … reqid "
                                   f"{t.reqid}) or start the IKE daemon first")
        raise Drop("XfrmOutPolError", -err, f"no usable SA for reqid {t.reqid}: {why}" if why
                   else f"xfrm_state_find failed for reqid {t.reqid}{via}")
    return states


def offload_mismatch(db: StateDb, t: Template, pol: Policy, src: bytes, dst: bytes,
                     family: int) -> str | None:
    """Why an SA that matches the template was passed over, when packet offload is the
    reason (xfrm_state_find keeps packet-offloaded states and software policies apart),
    in words a user can act on; None when no such SA exists."""
    w = 4 if (t.family or family) == X.AF_INET else 16
    daddr = t.daddr if any(t.daddr[:w]) else dst
    saddr = t.saddr if any(t.saddr[:w]) else src
    fam = t.family or family
    xdo = pol.xdo
    pol_dev = xdo.dev if xdo is not None and xdo.type == XFRM_DEV_OFFLOAD_PACKET else None
    for x in oldest_first(db.bydst.get((addr_key(daddr, fam), addr_key(saddr, fam), t.reqid, fam))):
        if x.id.proto != t.proto or x.mode != t.mode:
            continue
        xso = x.xso
        x_dev = xso.dev if xso is not None and xso.type == XFRM_DEV_OFFLOAD_PACKET else None
        if x_dev is pol_dev:
            continue
        spi = f"SA 0x{x.id.spi:x}"
        if x_dev is not None and pol_dev is None:
            return (f"{spi} is packet-offloaded on {x_dev.name}, but the matching policy is a "
                    "software policy: the kernel only uses packet-offloaded SAs through "
                    f"packet-offloaded policies (add the policy with `offload packet dev "
                    f"{x_dev.name}`)")
        if pol_dev is not None and x_dev is None:
            return (f"the matching policy is packet-offloaded on {pol_dev.name}, but {spi} is "
                    "not: a packet-offloaded policy only uses SAs packet-offloaded on its "
                    "device")
        if x_dev is not None and pol_dev is not None:
            return (f"{spi} is packet-offloaded on {x_dev.name} but the matching policy on "
                    f"{pol_dev.name}: both must be on the same device")
    return None
