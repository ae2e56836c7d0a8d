"""The emulated input path: an IP packet arriving in a namespace (net/xfrm/xfrm_input.c
``xfrm_input``, xfrm_replay.c ``xfrm_replay_check*`` / ``xfrm_replay_advance*`` /
``xfrm_replay_seqhi``, esp4/esp6 ``esp_input``, xfrm_policy.c ``__xfrm_policy_check``).

ESP (and ESP-in-UDP on port 4500) is looked up by (daddr, SPI, proto), replay-checked
against the state's window (XFRMA_REPLAY_ESN_VAL or replay_window; the ESN high word
inferred as RFC 4303 Appendix A says), its lifetime checked, decrypted (AES-GCM with the
state's key), re-checked, the window advanced, curlft counted; the inner packet then meets
the inbound policy check. A state offloaded ``dir in`` is handled by its driver when the
packet arrives on its device: crypto offload — the hardware decrypts and counts; packet
offload — the hardware's own replay context decides (mlx5-like per port, a bond's RFC
replicas per slave) unless the driver has the LAG tree's software accounting (SOE, the
newest bond: X06 on the one state). Each packet's fate is an :class:`RxRecord` (from the
:class:`RxHop` of ``xfrm_input`` and the IN policy check); alike packets form batches."""
from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NoReturn

from cryptography.exceptions import InvalidTag

from bonding.hash import LAYER34, Flow, xmit_slave
from devices.xfrmdev import OffloadError
from netlink_codec import xfrm as X

from ..rtnl.xfrmi import xfrmi_lookup
from ..xfrm import aevent
from ..xfrm.acquire import _sel_covers, host_selector, xfrm_policy_lookup
from ..xfrm.offload import (XFRM_DEV_OFFLOAD_IN, XFRM_DEV_OFFLOAD_PACKET,
                            xfrm_dev_lower_dev_handle, xfrm_dev_state_advance_esn)
from ..xfrm.sadb import sad
from ..xfrm.state import XFRM_STATE_ACQ, XFRM_STATE_VALID, own_replay, own_stats, sel_family
from . import packet as P
from .mib import XFRM_INC_STATS
from .output import Drop, dev_ops, esp_gcm, put_set
from .words import addr, hw_hint, km_state_text, sa_name, sel_text

if TYPE_CHECKING:
    from devices.netdev import NetDevice

    from ..kernel import NetNamespace
    from ..xfrm.acquire import Template
    from ..xfrm.policy import Policy

U32 = 0xFFFFFFFF
UDP_ENCAP_ESPINUDP = 2


# -- replay (xfrm_replay.c) ----------------------------------------------------------------------

def _mode(x: Any) -> str:
    if x.replay_esn is None:
        return "legacy"
    return "esn" if x.flags & X.XFRM_STATE_ESN else "bmp"


def xfrm_replay_seqhi(x: Any, seq: int) -> int:
    """``xfrm_replay_seqhi``: the high 32 bits an ESN receiver infers for ``seq``."""
    if not x.flags & X.XFRM_STATE_ESN:
        return 0
    r = x.replay_esn
    bottom = (r.seq - r.replay_window + 1) & U32
    hi: int
    if r.seq >= r.replay_window - 1:
        hi = (r.seq_hi + 1) & U32 if seq < bottom else r.seq_hi
    else:
        hi = (r.seq_hi - 1) & U32 if seq >= bottom else r.seq_hi
    return hi


def _bit(seq_diff_pos: int) -> tuple[int, int]:
    return seq_diff_pos >> 5, 1 << (seq_diff_pos & 31)


def _bitnr(r: Any, diff: int) -> int:
    win: int = r.replay_window
    pos: int = (r.seq - 1) % win
    return (pos - diff) % win if pos >= diff else win - (diff - pos)


def xfrm_replay_check(x: Any, seq: int) -> None:
    """``xfrm_replay_check_legacy`` / ``_bmp`` / ``_esn``: Drop(XfrmInStateSeqError) for a
    replay (``x->stats.replay``) or a packet left of the window (``stats.replay_window``)."""
    mode = _mode(x)

    def fail(what: str, counter: int | None) -> NoReturn:
        if counter is not None:
            own_stats(x)[counter] += 1
        hint = ("a replayed or reordered packet; a larger replay-window (now "
                f"{win}) tolerates more reordering") if counter is not None else \
            "a sender starts at sequence number 1"
        raise Drop("XfrmInStateSeqError", 0, f"{sa_name(x)}: {what}: {hint}")
    if mode == "legacy":
        win = x.replay_window
        if not win:
            return
        if seq == 0:
            fail("sequence number 0", None)
        top, bitmap = x.replay[1], x.replay[2]
        if seq > top:
            return
        diff = top - seq
        if diff >= win:
            fail(f"sequence {seq} left of the window (top {top})", 0)
        if bitmap & (1 << diff):
            fail(f"sequence {seq} already received (replay)", 1)
        return
    r = x.replay_esn
    win = r.replay_window
    if not win:
        return
    if mode == "bmp":
        if seq == 0:
            fail("sequence number 0", None)
        if seq > r.seq:
            return
        diff = (r.seq - seq) & U32
    else:
        top, bottom = r.seq, (r.seq - win + 1) & U32
        if seq == 0 and r.seq_hi == 0 and r.seq < win - 1:
            fail("sequence number 0", None)
        diff = (top - seq) & U32
        if top >= win - 1:
            if seq > top or seq < bottom:
                return
        else:
            if top < seq < bottom:
                return
            if seq >= bottom:
                diff = (~seq + top + 1) & U32
    if diff >= win:
        fail(f"sequence {seq} left of the window (top {r.seq})", 0)
    nr, mask = _bit(_bitnr(r, diff))
    if r.bmp[nr] & mask:
        fail(f"sequence {seq} already received (replay)", 1)


def xfrm_replay_advance(x: Any, seq: int) -> None:
    """``xfrm_replay_advance`` (legacy / ``_bmp`` / ``_esn``; the ESN variant calls
    ``xfrm_dev_state_advance_esn``), then the NEWAE notification."""
    mode = _mode(x)
    if mode == "legacy":
        win = x.replay_window
        if not win:
            return
        rp = own_replay(x)
        top = rp[1]
        if seq > top:
            diff = seq - top
            rp[2] = ((rp[2] << diff) | 1) & U32 if diff < win else 1
            rp[1] = seq
        else:
            rp[2] |= 1 << (top - seq)
        aevent.replay_advanced(x)
        return
    r = x.replay_esn
    win = r.replay_window
    if not win:
        return
    pos = (r.seq - 1) % win
    wrap = 0
    if mode == "esn":
        seq_hi = xfrm_replay_seqhi(x, seq)
        wrap = (seq_hi - r.seq_hi) & U32
        wrap = wrap - (1 << 32) if wrap >= 1 << 31 else wrap
    if (not wrap and seq > r.seq) or wrap > 0:
        diff = (seq - r.seq) & U32 if not wrap else (~r.seq + seq + 1) & U32
        if diff < win:
            for i in range(1, diff):
                nr, mask = _bit((pos + i) % win)
                r.bmp[nr] &= ~mask & U32
        else:
            for i in range(((win - 1) >> 5) + 1):
                r.bmp[i] = 0
        bitnr = (pos + diff) % win
        r.seq = seq
        if wrap > 0:
            r.seq_hi = (r.seq_hi + 1) & U32
    else:
        diff = (r.seq - seq) & U32
        bitnr = (pos - diff) % win if pos >= diff else win - (diff - pos)
    if mode == "esn":
        xfrm_dev_state_advance_esn(x)
    nr, mask = _bit(bitnr)
    r.bmp[nr] |= mask
    aevent.replay_advanced(x)


# -- results ----------------------------------------------------------------------------------------

@dataclass(slots=True)
class RxHop:
    """What ``xfrm_input`` did with a packet: the last state it unwrapped (``x``), its full
    sequence number (``seq``: 64 bits with ESN), the path (software, crypto-offload,
    packet-offload) and the offloading device. ``dev_first``: the device was named before
    the path (the order ``--json`` prints them in). On a bond slave also which slave it
    arrived on and which replay context checked it (a port's, an engine slot's, the
    stack's)."""
    x: Any = None
    seq: int | None = None
    path: str | None = None
    dev: str | None = None
    dev_first: bool = False
    slave: str | None = None        # the bond slave the packet arrived on
    context: str | None = None      # (on a bond slave) the replay context that checked it

    def set_dev(self, name: str) -> None:
        if self.path is None and self.dev is None:
            self.dev_first = True
        self.dev = name


@dataclass(slots=True)
class RxRecord:
    """What happened to one packet on the input path: the SA and path (from its
    :class:`RxHop`), the XFRM interface it arrived on, the IN policy that let it in (its
    index), or why it was dropped. Consecutive alike packets form a batch."""
    result: str = "delivered"
    spi: int | None = None
    reqid: int | None = None
    path: str | None = None
    dev: str | None = None
    dev_first: bool = field(default=False, compare=False)
    xfrm_dev: str | None = None
    policy: int | None = None
    reason: str | None = None
    detail: str | None = None
    slave: str | None = None
    context: str | None = None

    def took(self, hop: RxHop) -> None:
        if hop.x is not None:
            self.spi, self.reqid = hop.x.id.spi, hop.x.reqid
        self.path, self.dev, self.dev_first = hop.path, hop.dev, hop.dev_first
        self.arrived(hop)

    def arrived(self, hop: RxHop) -> None:
        """Which bond slave, which context: kept on a drop too."""
        self.slave, self.context = hop.slave, hop.context

    def to_dict(self) -> dict[str, object]:
        """The batch as ``xfrmd ctl xmit --deliver --json`` prints it."""
        d: dict[str, object] = {"result": self.result}
        if self.spi is not None:
            d["spi"] = f"0x{self.spi:08x}"
        put_set(d, self, ("reqid", "dev", "path", "xfrm_dev") if self.dev_first
                else ("reqid", "path", "dev", "xfrm_dev"))
        if self.policy is not None:
            d["policy"] = {"index": self.policy, "dir": "in"}
        return put_set(d, self, ("slave", "context", "reason", "detail"))


@dataclass(slots=True)
class InputBatch:
    """Consecutive packets with equal records: how many, their sequence numbers' range."""
    rec: RxRecord
    count: int = 1
    seq: list[int] | None = None

    def to_dict(self) -> dict[str, object]:
        d = self.rec.to_dict()
        d["count"] = self.count
        if self.seq is not None:
            d["seq"] = self.seq
        return d


@dataclass(slots=True)
class InputResult:
    batches: list[InputBatch] = field(default_factory=list)
    delivered: int = 0
    dropped: int = 0
    inner: list[bytes] = field(default_factory=list)       # the packets the stack delivered

    def add(self, rec: RxRecord, seq: int | None = None, inner: bytes | None = None) -> None:
        last = self.batches[-1] if self.batches else None
        if last is not None and last.rec == rec and (seq is None) == (last.seq is None):
            last.count += 1
            if seq is not None and last.seq is not None:
                last.seq[1] = seq
        else:
            self.batches.append(InputBatch(rec, 1, None if seq is None else [seq, seq]))
        if rec.result == "delivered":
            self.delivered += 1
            if inner is not None:
                self.inner.append(inner)
        else:
            self.dropped += 1

    def to_dict(self) -> dict[str, object]:
        return {"batches": [b.to_dict() for b in self.batches],
                "delivered": self.delivered, "dropped": self.dropped}


# -- the input path -----------------------------------------------------------------------------

def _owner(ns: NetNamespace, raw: bytes) -> NetDevice | None:
    """The device holding the local address ``raw``, or None."""
    return local_dev(ns, str(ipaddress.ip_address(raw)))


def local_dev(ns: NetNamespace, a: str) -> NetDevice | None:
    """The device of ``ns`` holding the local address ``a`` (text), or None."""
    dev: NetDevice
    for dev in ns.links:
        for ifa in dev.addresses:
            if ifa.address == a:
                return dev
    return None


def _expired(x: Any) -> str:
    return (f"{sa_name(x)} reached its hard lifetime: the key manager must rekey before the "
            "hard limit (or raise it: `limit time-hard|byte-hard|packet-hard`)")


def _input_account(ns: NetNamespace, x: Any, seq: int, length: int) -> None:
    """The software part of ``xfrm_input`` around the decryption (also the LAG tree's
    ``xfrm_dev_packet_input_state_check``): replay check, lifetime, advance, curlft."""
    xfrm_replay_check(x, seq & U32)
    if x.net.check_expire(x):
        raise Drop("XfrmInStateExpired", 0, _expired(x))
    xfrm_replay_advance(x, seq & U32)
    x.curlft.bytes += length
    x.curlft.packets += 1
    x.lastused = ns.kernel.clock.wall()


def _esp_decrypt(x: Any, esp: bytes, seq_lo: int) -> tuple[bytes, int]:
    """``esp_input`` with the state's AES-GCM key: (payload, next header), or
    Drop(XfrmInStateProtoError) with ``x->stats.integrity_failed`` counted."""
    g = esp_gcm(x)
    if g is None:
        raise Drop(None, 0, f"xfrmd: {sa_name(x)}: ESP with "
                            f"{x.aead.name if x.aead else 'this algorithm'} is not modelled on "
                            "input (use aead 'rfc4106(gcm(aes))' to carry packets across)")
    hi = xfrm_replay_seqhi(x, seq_lo)
    seq = (hi << 32) | seq_lo
    icv = g.icv_len
    if len(esp) < 16 + icv + 2:
        raise Drop("XfrmInHdrError", 0, f"{sa_name(x)}: packet too short for ESP with "
                                        f"{g.icv_len}-byte ICV ({len(esp)} bytes)")
    try:
        plain = g.open_esp(esp, seq)
    except InvalidTag:
        own_stats(x)[2] += 1
        raise Drop("XfrmInStateProtoError", 0,
                   f"ICV mismatch (integrity failed) on {sa_name(x)}: the sender's key, "
                   "algorithm or ESN setting differs from this SA's") from None
    padlen, nh = plain[-2], plain[-1]
    return plain[:-2 - padlen], nh


def xfrm_input(ns: NetNamespace, pkt: bytes, rx_dev: NetDevice | None = None,
               mark: int = 0, hop: RxHop | None = None) -> tuple[bytes, list[Any], RxHop]:
    """One packet into ``ns``: (the inner packet handed to the stack, the states used, what
    was done: ``hop``, filled in as far as it got when a Drop is raised). ESP inside ESP is
    unwrapped in a loop, as xfrm_input does."""
    db = sad(ns.xfrm)
    sp: list[Any] = []
    hop = RxHop() if hop is None else hop
    if rx_dev is not None and rx_dev.master is not None:
        hop.slave = rx_dev.name
    while True:
        src, dst, proto, seg = P.split_ip(pkt)
        family = X.AF_INET if len(src) == 4 else X.AF_INET6
        encap = 0
        esp = None
        if proto == P.IPPROTO_ESP:
            esp = seg
        elif proto == P.IPPROTO_UDP and len(seg) >= 16 and struct.unpack_from("!H", seg, 2)[0] == 4500 \
                and seg[8:12] != b"\0\0\0\0":
            esp, encap = seg[8:], UDP_ENCAP_ESPINUDP
        if esp is None:
            return pkt, sp, hop
        if len(esp) < 8:
            raise Drop("XfrmInHdrError", 0, f"ESP header truncated ({len(esp)} bytes) in a "
                                            f"packet to {addr(dst, family)}")
        spi, seq_lo = struct.unpack_from("!II", esp)
        x = db.lookup(mark, dst.ljust(16, b"\0"), spi, X.IPPROTO_ESP, family)
        if x is None:
            raise Drop("XfrmInNoStates", 0, f"no SA for spi 0x{spi:08x} to "
                       f"{addr(dst, family)} in {ns.name}: add the inbound SA (ip xfrm state "
                       f"add src {addr(src, family)} dst {addr(dst, family)} proto esp spi "
                       f"0x{spi:x} …) with the sender's keys")
        hop.x = x
        if x.dir and x.dir != X.XFRM_SA_DIR_IN:
            raise Drop("XfrmInStateDirError", 0, f"the SA is dir out: {sa_name(x)} received an "
                                                 "ESP packet; add the inbound SA with dir in "
                                                 "(or no dir)")
        if x.km_state != XFRM_STATE_VALID:
            raise Drop("XfrmAcquireError" if x.km_state == XFRM_STATE_ACQ else "XfrmInStateInvalid",
                       0, f"{sa_name(x)} is {km_state_text(x)}, not valid: the key manager "
                          "must install a fresh SA")
        if (x.encap.encap_type if x.encap is not None else 0) != encap:
            has = "ESP-in-UDP" if encap else "plain ESP"
            wants = "encap espinudp" if x.encap is not None else "no encap"
            raise Drop("XfrmInStateMismatch", 0, f"encapsulation differs from the state's: the "
                       f"packet is {has} but {sa_name(x)} has {wants}; add the SA with the "
                       "sender's encapsulation (NAT-T: encap espinudp SPORT DPORT 0.0.0.0)")
        xso = x.xso
        # the device the packet arrived on when the state is offloaded there (to it or to its
        # master); None: the software path
        rx = rx_dev if (xso is not None and xso.dir == XFRM_DEV_OFFLOAD_IN and rx_dev is not None
                        and (rx_dev is xso.dev or rx_dev.master is xso.dev)) else None
        if (rx is not None and rx is not xso.dev and xso.type != XFRM_DEV_OFFLOAD_PACKET
                and not xfrm_dev_lower_dev_handle(x, rx)):
            # crypto offload: a slave whose driver resolves no hardware SA for the state
            # (an active-backup bond's backup) hands the packet up undecrypted
            rx = None
        if rx is not None and xso is not None and xso.type == XFRM_DEV_OFFLOAD_PACKET:
            # the hardware decrypts (emulated with the state's key) and its replay context,
            # or the core's check on the one state (X06), decides
            try:
                payload, nh = _esp_decrypt(x, esp, seq_lo)
            except Drop as d:
                raise Drop(None, 0, f"hardware auth drop on {rx.name}: {d.text}") from None
            ops = dev_ops(xso.dev)
            if hop.slave is not None:
                hop.context = rx_context(ops, rx, x)
            try:
                # X06 (xfrm_dev_packet_input_state_check) where the device has
                # xdo_dev_packet_xmit; otherwise the hardware's replay context decides
                ops.hw_recv(
                    xso.dev, x, rx, seq_lo, len(payload),
                    (lambda: _input_account(ns, x, seq_lo, len(payload)))
                    if ops.has_packet_xmit else None)
            except OffloadError as e:
                msg = e.msg or "dropped by the hardware"
                raise Drop(None, 0, f"{msg}: {sa_name(x)} packet-offloaded on {xso.dev.name}, "
                                    f"arrived on {rx.name}; "
                                    + hw_hint(msg, x, xso.dev)) from None
            path = "packet-offload"
            hop.set_dev(rx.name)
        else:
            if rx is not None and xso is not None:
                # crypto offload: the device decrypted before xfrm_input looked (CRYPTO_DONE);
                # a failed ICV is counted before the replay check
                payload, nh = _esp_decrypt(x, esp, seq_lo)
                try:
                    # the port it arrived on counts it (a bond's slave: in the SA its driver
                    # resolves with xfrm_dev_state_lower_handle)
                    dev_ops(rx).hw_traffic(rx, x, 1, len(payload))
                except OffloadError:
                    pass
                path = "crypto-offload"
                hop.set_dev(rx.name)
            if hop.slave is not None:
                hop.context = "stack (xfrm_replay_check on the xfrm_state)"
            xfrm_replay_check(x, seq_lo)
            if db.check_expire(x):
                raise Drop("XfrmInStateExpired", 0, _expired(x))
            if rx is None:
                payload, nh = _esp_decrypt(x, esp, seq_lo)
                path = "software"
                xfrm_replay_check(x, seq_lo)             # xfrm_replay_recheck
            xfrm_replay_advance(x, seq_lo)
            x.curlft.bytes += len(payload)
            x.curlft.packets += 1
            x.lastused = ns.kernel.clock.wall()
        hop.path = path
        hop.seq = (xfrm_replay_seqhi(x, seq_lo) << 32) | seq_lo if _mode(x) == "esn" else seq_lo
        sp.append(x)
        if x.mode == X.XFRM_MODE_TUNNEL:
            if nh not in (P.IPPROTO_IPIP, P.IPPROTO_IPV6):
                raise Drop("XfrmInStateModeError", 0, f"{sa_name(x)} is tunnel mode but the "
                           f"packet carries next header {nh}: the sender uses transport mode; "
                           "both ends need the same mode")
            pkt = payload
        else:
            pkt = P.ip_header(src, dst, nh, len(payload)) + payload


def _tmpl_ok(t: Template, x: Any, family: int) -> bool:
    """``xfrm_state_ok``."""
    w = 4 if family == X.AF_INET else 16
    if t.spi and t.spi != x.id.spi:
        return False
    if t.proto != x.id.proto or (t.reqid and t.reqid != x.reqid) or t.mode != x.mode:
        return False
    if x.mode != X.XFRM_MODE_TRANSPORT:
        if any(t.daddr[:w]) and t.daddr[:w] != x.id.daddr[:w]:
            return False
        if any(t.saddr[:w]) and t.saddr[:w] != x.saddr[:w]:
            return False
    return True


def _policy_ok(t: Template, sp: list[Any], start: int, family: int) -> int:
    """``xfrm_policy_ok``."""
    idx = start
    if t.optional:
        if t.mode == X.XFRM_MODE_TRANSPORT:
            return start
    else:
        start = -1
    while idx < len(sp):
        if _tmpl_ok(t, sp[idx], family):
            return idx + 1
        if sp[idx].mode != X.XFRM_MODE_TRANSPORT:
            if start == -1:
                start = -2 - idx
            break
        idx += 1
    return start


def xfrm_policy_check(ns: NetNamespace, pkt: bytes, sp: list[Any], if_id: int = 0,
                      found: dict[tuple[bytes, int], Policy | None] | None = None
                      ) -> Policy | None:
    """``__xfrm_policy_check(dir IN)`` for the inner packet: the SAs' selectors must match
    (XfrmInStateMismatch), the best IN policy's templates must be matched by the secpath
    (XfrmInTmplMismatch); block → XfrmInPolBlock; no policy after a tunnel-mode SA →
    XfrmInNoPols. ``if_id``: the XFRM interface's the packet came in on (0: none).
    ``found``: the IN policies already looked up by (flow, if_id) while the SPD has not
    changed (the packets of one delivery). Returns the policy (or None)."""
    src, dst, proto, seg = P.split_ip(pkt)
    family = X.AF_INET if len(src) == 4 else X.AF_INET6
    sport, dport = P.l4_ports(proto, seg)
    flow = bytes(host_selector(src.ljust(16, b"\0"), dst.ljust(16, b"\0"), family, proto,
                               sport, dport))
    for x in sp:
        if sel_family(x.sel) and not _sel_covers(x.sel, flow):
            raise Drop("XfrmInStateMismatch", 0, f"flow outside SA 0x{x.id.spi:08x}'s selector: "
                       f"the inner packet {sel_text(flow)} is not covered by {sa_name(x)}'s "
                       f"selector {sel_text(x.sel)}; widen the SA's `sel` or send within it")
    key = (flow, if_id)
    if found is not None and key in found:
        pol = found[key]
    else:
        pol = xfrm_policy_lookup(ns, X.XFRM_POLICY_IN, flow, family, 0, if_id)
        if found is not None:
            found[key] = pol
    if pol is None:
        if ns.xfrm.policy_default[X.XFRM_POLICY_IN] == X.XFRM_USERPOLICY_BLOCK:
            raise Drop("XfrmInNoPols", 0, f"no IN policy and policy default in block: no in "
                       f"policy matches {sel_text(flow)}; add one or `ip xfrm policy setdefault "
                       "in accept`")
        if any(x.mode != X.XFRM_MODE_TRANSPORT for x in sp):
            t = next(x for x in sp if x.mode != X.XFRM_MODE_TRANSPORT)
            raise Drop("XfrmInNoPols", 0, f"tunnel-mode SA but no IN policy: {sa_name(t)} "
                       f"decrypted the packet, but no in policy matches {sel_text(flow)}; add "
                       "a dir in policy with a template for this SA")
        return None
    pol.curlft_use = ns.kernel.clock.wall()
    if pol.action != X.XFRM_POLICY_ALLOW:
        raise Drop("XfrmInPolBlock", 0, f"IN policy {pol.index} blocks: its selector "
                   f"{sel_text(pol.sel)} covers this flow; delete the policy or add it with "
                   "action allow")
    k = 0
    for t in reversed(pol.templates):
        k = _policy_ok(t, sp, k, family)
        if k < 0:
            used = ", ".join(sa_name(x) for x in sp) or "no SA (the packet came in clear)"
            raise Drop("XfrmInTmplMismatch", 0, f"IN policy {pol.index} ({sel_text(pol.sel)}): no "
                       f"SA matches template reqid {t.reqid}: the packet used {used}; make the "
                       "template's reqid, mode and addresses match the SA (or the template "
                       "optional: `level use`)")
    if any(x.mode != X.XFRM_MODE_TRANSPORT for x in sp[k:]):
        extra = ", ".join(sa_name(x) for x in sp[k:] if x.mode != X.XFRM_MODE_TRANSPORT)
        raise Drop("XfrmInTmplMismatch", 0, f"IN policy {pol.index} ({sel_text(pol.sel)}): "
                   f"tunnel SA not in the policy: it has no template for {extra}; add one")
    return pol


def rx_context(ops: Any, rx: NetDevice, x: Any) -> str:
    """The replay context that checks a packet-offloaded packet of ``x`` arriving on ``rx``:
    the core's, on the one state, where the state's device has ``xdo_dev_packet_xmit`` (the
    LAG tree's X06); else the hardware context ``rx``'s driver resolves with
    ``xfrm_dev_state_lower_handle`` (named by its ``hw_context``)."""
    if ops.has_packet_xmit:
        return "core (xfrm_dev_packet_input_state_check on the xfrm_state)"
    lower = rx.xfrmdev_ops
    ctx = lower.hw_context(rx, x) if lower is not None else None
    if ctx is None:
        return f"none ({rx.name} holds no hardware SA for it)"
    return f"{ctx['id']} ({'per ' + ctx['scope']})"


def lag_partner_slave(bond_dev: NetDevice, pkt: bytes) -> NetDevice | None:
    """The slave of ``bond_dev`` a packet arrives on: in active-backup the active slave (the
    backup's frames are not delivered); otherwise the one the link partner's LAG hash picks
    — ``bond_xmit_hash`` layer3+4 over the outer header (for ESP the SPI where the ports
    would be), modulo the usable links, the partner's links wired in the same order."""
    bond = bond_dev.bond
    if bond.mode == "active-backup":
        active: NetDevice | None = bond.active
        return active
    src, dst, proto, seg = P.split_ip(pkt)
    sport, dport = P.l4_ports(proto, seg)
    spi = int.from_bytes(seg[:4], "big") if proto == P.IPPROTO_ESP and len(seg) >= 4 else None
    flow = Flow(bytes(6), bytes(6), str(ipaddress.ip_address(src)),
                str(ipaddress.ip_address(dst)), proto, sport, dport, spi)
    slave: NetDevice | None = xmit_slave(flow, LAYER34, bond.usable_slaves())
    return slave


def deliver_packets(ns: NetNamespace, packets: list[bytes],
                    rx_dev: NetDevice | None = None,
                    via: NetDevice | None = None) -> InputResult:
    """Each packet into ``ns`` (arriving on ``rx_dev``, default: the device holding its
    destination address), through xfrm_input and the inbound policy check. A packet for a
    bond arrives on one slave: ``via``, or the one the link partner's LAG hash picks
    (:func:`lag_partner_slave`). Nothing changes the namespace's addresses or XFRM
    interfaces during the call: who owns a destination and which interface an if_id names
    are looked up once per value, and the SPD does not change: an inner flow's IN policy
    too."""
    res = InputResult()
    policies: dict[tuple[bytes, int], Policy | None] = {}
    owners: dict[bytes, NetDevice | None] = {}
    xfrmis: dict[int, Any] = {}
    for pkt in packets:
        rec = RxRecord()
        seq = None
        hop = RxHop()
        try:
            src, dst, _, _ = P.split_ip(pkt)
            owner = owners[dst] if dst in owners else owners.setdefault(dst, _owner(ns, dst))
            if owner is None:
                raise Drop(None, 0, f"{ipaddress.ip_address(dst)} is not local to {ns.name} "
                                    "(xfrmd: forwarding is not modelled): add the address to a "
                                    f"link in {ns.name} or send to one it has")
            arrival = owner if rx_dev is None else rx_dev
            if getattr(arrival, "bond", None) is not None:
                arrival = via or lag_partner_slave(arrival, pkt) or arrival
            inner, sp, hop = xfrm_input(ns, pkt, arrival, hop=hop)
            rec.took(hop)
            seq = hop.seq
            # xfrmi_rcv_cb: the inner packet arrives on the XFRM interface of the SA's if_id
            # (a running one), and the IN policy is looked up with that if_id
            # (xfrmi_decode_session)
            if_id = sp[-1].if_id if sp else None
            if if_id is not None and if_id not in xfrmis:
                xfrmis[if_id] = xfrmi_lookup(ns, if_id)
            xi = xfrmis[if_id] if if_id is not None else None
            if xi is not None:
                rec.xfrm_dev = xi.name
            pol = xfrm_policy_check(ns, inner, sp, sp[-1].if_id if xi is not None else 0,
                                    policies)
            if pol is not None:
                rec.policy = pol.index
            res.add(rec, seq, inner)
        except Drop as d:
            if d.mib:
                XFRM_INC_STATS(ns, d.mib)
            rec.result, rec.reason, rec.detail = "dropped", d.mib or d.text, d.text
            rec.arrived(hop)
            res.add(rec, seq)
    return res
