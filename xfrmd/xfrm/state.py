"""``struct xfrm_state`` and how xfrm_user.c writes it to userspace.

:class:`SecurityAssociation` mirrors the kernel struct (id, props, sel, algorithms, lifetimes,
replay state, mark, if_id, dir, pcpu_num, km state, offload). The encoders reproduce
``copy_to_user_state`` / ``copy_to_user_state_extra`` (dumps, GETSA, NEWSA/UPDSA/DELSA events),
``build_expire`` and ``build_aevent`` byte for byte.
"""
from __future__ import annotations

import struct
from typing import TYPE_CHECKING, NamedTuple

from netlink_codec import cext
from netlink_codec import xfrm as X
from netlink_codec.netlink import NLM_F_MULTI, encode_msg, nla, nla_u8, nla_u32

from ..cext import source
from . import iptfs, offload
from .uapi import A, M

if TYPE_CHECKING:
    from ..kernel import Timer
    from .iptfs import IptfsConfig
    from .offload import XfrmDevOffload
    from .policy import Policy, PolicyWire, Template
    from .sadb import StateDb

UINT_MAX = 0xFFFFFFFF

# km.state (enum in include/net/xfrm.h)
XFRM_STATE_VOID, XFRM_STATE_ACQ, XFRM_STATE_VALID = 0, 1, 2
XFRM_STATE_ERROR, XFRM_STATE_EXPIRED, XFRM_STATE_DEAD = 3, 4, 5

# xfrm_usersa_info: sel, id, saddr, lft (8 u64), curlft (4 u64), stats (3 u32), seq, reqid,
# family, mode, replay_window, flags, 7 bytes of padding
# (the 3 padding bytes of xfrm_id are kept: copy_from_user_state memcpy's the id and
# copy_to_user_state copies it back, so a sender's padding reappears in dumps)
USERSA_INFO = struct.Struct("=56s16s4sB3s16s8Q4Q3III HBBB7x".replace(" ", ""))
assert USERSA_INFO.size == 224
_pack_usersa_info = USERSA_INFO.pack
_BE32 = struct.Struct(">I").pack
USERSA_ID = struct.Struct("=16s4sHBx")
AEVENT_ID_TAIL = struct.Struct("=16sII")
REPLAY = struct.Struct("=III")
ESN_HEAD = struct.Struct("=6I")
LIFETIME_CFG = struct.Struct("=8Q")      # xfrm_lifetime_cfg
LIFETIME_CUR = struct.Struct("=4Q")
_pack_replay = REPLAY.pack
_new_object = object.__new__
# the attributes every state's reply ends with, their headers made once
_REPLAY_VAL_HDR = struct.pack("=HH", 4 + REPLAY.size, A.REPLAY_VAL)
_SA_DIR_ATTR = {d: nla_u8(A.SA_DIR, d) for d in (X.XFRM_SA_DIR_IN, X.XFRM_SA_DIR_OUT)}


class StateId(NamedTuple):
    """``struct xfrm_id``: daddr (16 bytes), spi (host order), proto."""
    daddr: bytes
    spi: int
    proto: int


_NO_ID = StateId(bytes(16), 0, 0)

# ``struct xfrm_selector`` is kept as its 56 bytes, as the user sent them (an SA's selector
# never changes once built): one bytes object, not tracked by the collector, where a ctypes
# structure took two allocations. Fields: daddr 0:16, saddr 16:32, dport/dport_mask/sport/
# sport_mask (be16) 32:40, family (u16) 40:42, prefixlen_d 42, prefixlen_s 43, proto 44,
# ifindex 48:52, user 52:56.
NO_SEL = bytes(56)
SEL_FAMILY = struct.Struct("=H")


def sel_family(sel: bytes) -> int:
    """The selector's ``family``."""
    return sel[40] | sel[41] << 8


def sel_with_family(sel: bytes, family: int) -> bytes:
    """The selector with its ``family`` set (``x->sel.family = p->family``)."""
    return sel[:40] + SEL_FAMILY.pack(family) + sel[42:]


def host_sel(daddr: bytes, saddr: bytes, family: int) -> bytes:
    """A selector covering exactly ``daddr`` and ``saddr`` (family left 0), as
    ``__find_acq_core`` fills the larval state's."""
    if family == X.AF_INET:
        return _pack_host_sel4(daddr[:4], saddr[:4], 32, 32)
    return daddr[:16].ljust(16, b"\0") + saddr[:16].ljust(16, b"\0") + _HOST_SEL6_TAIL


# host_sel's selector: one pack for IPv4 (the addresses, prefix lengths 32/32); IPv6's tail
# (ports, family 0, prefix lengths 128/128, proto, ifindex, user) made once
_pack_host_sel4 = struct.Struct("=4s12x4s12x10xBB12x").pack
_HOST_SEL6_TAIL = bytes(10) + bytes((128, 128)) + bytes(12)
# the replay state an aevent last reported (x.preplay), read-only: one shared tuple until
# the first aevent (xfrm_replay_notify copies x->replay there)
_NO_REPLAY = (0, 0, 0)


class Algo(NamedTuple):
    """An attached algorithm: ``xfrm_algo`` / ``xfrm_algo_auth`` / ``xfrm_algo_aead``.
    Immutable (a tuple the collector stops tracking after its first pass)."""
    name: str             # canonical name from the table
    key_len: int          # bits
    key: bytes            # (key_len + 7) // 8 bytes
    trunc_len: int = 0    # auth: ICV truncation bits
    icv_len: int = 0      # aead: ICV bits

    def head(self, extra: int | None = None) -> bytes:
        name = self.name.encode()[:63].ljust(64, b"\0")
        if extra is None:
            return name + struct.pack("=I", self.key_len)
        return name + struct.pack("=II", self.key_len, extra)


_NO_ADDR = bytes(16)
# the replay state and the statistics of a state that saw no packet: one shared tuple each
# until the data path counts (xfrm_replay_state / xfrm_stats, see count_replay, count_stat)
NO_REPLAY = (0, 0, 0)
NO_STATS = (0, 0, 0)


def own_replay(x: SecurityAssociation) -> list[int]:
    """``x.replay`` (oseq, seq, bitmap) to write in place: a state that never counted shares
    :data:`NO_REPLAY`, and gets a list of its own at its first write."""
    r = x.replay
    if type(r) is not list:
        r = x.replay = list(r)
    return r


def own_stats(x: SecurityAssociation) -> list[int]:
    """``x.stats`` (replay_window, replay, integrity_failed) to count in: a list of the
    state's own from its first count on (:data:`NO_STATS` before)."""
    st = x.stats
    if type(st) is not list:
        st = x.stats = list(st)
    return st


class ReplayEsn:
    """``struct xfrm_replay_state_esn`` with its bitmap as a list of u32 words."""
    __slots__ = ("bmp_len", "oseq", "seq", "oseq_hi", "seq_hi", "replay_window", "bmp")

    def __init__(self, bmp_len: int = 0, oseq: int = 0, seq: int = 0, oseq_hi: int = 0,
                 seq_hi: int = 0, replay_window: int = 0, bmp: list[int] | None = None) -> None:
        self.bmp_len, self.oseq, self.seq = bmp_len, oseq, seq
        self.oseq_hi, self.seq_hi, self.replay_window = oseq_hi, seq_hi, replay_window
        self.bmp = list(bmp) if bmp is not None else [0] * bmp_len

    @classmethod
    def decode(cls, raw: bytes) -> "ReplayEsn":
        """From an attribute payload; a 24-byte attribute has an all-zero bitmap
        (``xfrm_alloc_replay_state_esn`` copies only what is there)."""
        n, oseq, seq, oseq_hi, seq_hi, window = ESN_HEAD.unpack_from(raw.ljust(24, b"\0"))
        words = raw[24:24 + 4 * n] if len(raw) >= 24 + 4 * n else b""
        bmp = list(struct.unpack(f"={n}I", words)) if words else [0] * n
        return cls(n, oseq, seq, oseq_hi, seq_hi, window, bmp=bmp)

    def encode(self) -> bytes:
        return (ESN_HEAD.pack(self.bmp_len, self.oseq, self.seq, self.oseq_hi, self.seq_hi,
                              self.replay_window) + struct.pack(f"={self.bmp_len}I", *self.bmp))

    def copy(self) -> "ReplayEsn":
        return ReplayEsn(self.bmp_len, self.oseq, self.seq, self.oseq_hi, self.seq_hi,
                         self.replay_window, self.bmp)


class LifetimeCfg(NamedTuple):
    """``struct xfrm_lifetime_cfg`` (limits: XFRM_INF = none; seconds: 0 = none). Immutable:
    a tuple of ints is not tracked by the garbage collector, which 100k SAs notice."""
    soft_byte_limit: int = X.XFRM_INF
    hard_byte_limit: int = X.XFRM_INF
    soft_packet_limit: int = X.XFRM_INF
    hard_packet_limit: int = X.XFRM_INF
    soft_add_expires_seconds: int = 0
    hard_add_expires_seconds: int = 0
    soft_use_expires_seconds: int = 0
    hard_use_expires_seconds: int = 0

    def values(self) -> tuple[int, ...]:
        return tuple(self)

    def has_timeouts(self) -> bool:
        return bool(self[4] or self[5] or self[6] or self[7])


DEFAULT_LFT = LifetimeCfg()


class LifetimeCur:
    """``struct xfrm_lifetime_cur``: the datapath counts bytes/packets and sets use_time."""
    __slots__ = ("bytes", "packets", "add_time", "use_time")

    def __init__(self, nbytes: int = 0, packets: int = 0, add_time: int = 0,
                 use_time: int = 0) -> None:
        self.bytes, self.packets, self.add_time, self.use_time = nbytes, packets, add_time, use_time

    def encode(self) -> bytes:
        return LIFETIME_CUR.pack(self.bytes, self.packets, self.add_time, self.use_time)


class SecurityAssociation:
    """``struct xfrm_state``. Addresses are 16-byte network-order strings; SPI in host order."""
    # Fields every state sets or the data path reads per packet are slots; the rarely set
    # ones are class attributes (their defaults) until a state sets one, which gives that
    # state a __dict__. A state is built with 27 stores instead of 44 and is 112 bytes
    # smaller; reading a default costs ~20 ns more than a slot.
    __slots__ = ("id", "family", "saddr", "mode", "reqid", "replay_window", "flags", "sel", "aead", "auth", "enc", "encap", "lft", "curlft",
                 "stats", "replay", "replay_esn", "replay_maxdiff", "replay_maxage", "mark",
                 "if_id", "dir", "lastused", "km_state", "km_seq", "km_dying", "xso", "geniv",
                 "timer", "rtimer_when", "uid", "net", "all_pos", "__dict__", "__weakref__")

    comp: Algo | None = None
    coaddr: bytes | None = None     # 16 bytes
    tfcpad = 0
    preplay: tuple[int, ...] = _NO_REPLAY   # what the last aevent said (x->preplay)
    preplay_esn: ReplayEsn | None = None
    mapping_maxage = 0
    pcpu_num = UINT_MAX
    nat_keepalive_interval = 0
    # IPComp tunnel mode: the hidden IPIP / IPv6 state
    tunnel: SecurityAssociation | None = None
    tunnel_users = 0                # > 0: held by the kernel (xfrm_state_kern)
    xflags = 0                      # XFRM_TIME_DEFER
    rtimer: Timer | None = None     # replay timer (xfrm_replay_timer_handler)
    iptfs: IptfsConfig | None = None   # IP-TFS mode configuration
    id_pad = b"\0\0\0"              # xfrm_id padding as the user sent it
    new_mapping = 0                 # km_new_mapping rate limit (seconds) and last port
    new_mapping_sport = 0
    extra_flags = 0                 # x->props.extra_flags (XFRMA_SA_EXTRA_FLAGS)
    smark: tuple[int, int] = (0, 0)   # x->props.smark (XFRMA_SET_MARK / _MASK)

    def __init__(self, lft: LifetimeCfg | None = None, xid: StateId = _NO_ID,
                 sel: bytes = NO_SEL, family: int = 0, saddr: bytes = _NO_ADDR, mode: int = 0,
                 reqid: int = 0, replay_window: int = 0, flags: int = 0, add_time: int = 0,
                 net: StateDb | None = None) -> None:
        self.id = xid
        # x->props: its fields are the state's own (one object less per state, one
        # attribute step less per read); extra_flags and smark are class defaults
        self.family = family
        self.saddr = saddr
        self.mode = mode
        self.reqid = reqid
        self.replay_window = replay_window
        self.flags = flags
        self.sel = sel       # the 56 bytes of struct xfrm_selector (sel_family, …)
        self.aead: Algo | None = None
        self.auth: Algo | None = None
        self.enc: Algo | None = None
        self.encap: X.XfrmEncapTmpl | None = None
        # xfrm_state_alloc: every limit infinite, no expiry
        self.lft = lft if lft is not None else DEFAULT_LFT
        # LifetimeCur(0, 0, add_time) without the call of a Python __init__ (a frame and
        # ≈ 2k instructions per state)
        self.curlft = cur = _new_object(LifetimeCur)
        cur.bytes = cur.packets = cur.use_time = 0
        cur.add_time = add_time
        self.stats: list[int] | tuple[int, ...] = NO_STATS   # replay_window, replay, integrity_failed
        self.replay: list[int] | tuple[int, ...] = NO_REPLAY  # oseq, seq, bitmap
        self.replay_esn: ReplayEsn | None = None
        self.replay_maxdiff = 0
        self.replay_maxage = 0   # jiffies (HZ=1000 here), see build_aevent
        self.mark: tuple[int, int] = (0, 0)
        self.if_id = 0
        self.dir = 0
        self.lastused = 0
        self.km_state = XFRM_STATE_VOID
        self.km_seq = 0
        self.km_dying = 0
        self.xso: XfrmDevOffload | None = None
        self.geniv: str | None = None
        self.timer: Timer | None = None
        self.rtimer_when: float | None = None   # the replay timer's first expiry, kept lazily until the datapath runs
        self.uid = 0
        self.net = net
        self.all_pos = -1       # its place in state_all (state_list.py) once inserted

    @property
    def props(self) -> SecurityAssociation:
        """``x->props``: the state itself (its family, saddr, mode, reqid, replay_window,
        flags, extra_flags and smark are the state's own fields)."""
        return self

    # -- identity ------------------------------------------------------------------------

    @property
    def use_spi(self) -> bool:
        """``xfrm_id_proto_match(proto, IPSEC_PROTO_ANY)``: ESP, AH and IPComp use SPIs."""
        return self.id.proto in (X.IPPROTO_ESP, X.IPPROTO_AH, X.IPPROTO_COMP)

    def mark_match(self, mark: int) -> bool:
        return (mark & self.mark[1]) == self.mark[0]

    def __repr__(self) -> str:
        return (f"<SA proto {self.id.proto} spi {self.id.spi:#x} dst {self.id.daddr.hex()} "
                f"state {self.km_state}>")

    # -- copy_to_user_state ---------------------------------------------------------------

    def usersa_info(self) -> bytes:
        """``copy_to_user_state``: the 224-byte xfrm_usersa_info, padding zeroed. An offloaded
        state first asks its driver for fresh counters (``xfrm_dev_state_update_stats``)."""
        if self.xso is not None:
            offload.xfrm_dev_state_update_stats(self)
        cur = self.curlft
        daddr, spi, proto = self.id      # (a named tuple's fields are slow attributes on 3.11)
        stats = self.stats
        return _pack_usersa_info(
            self.sel, daddr, _BE32(spi), proto, self.id_pad, self.saddr, *self.lft,
            cur.bytes, cur.packets, cur.add_time, cur.use_time, stats[0], stats[1], stats[2],
            self.km_seq, self.reqid, self.family, self.mode, self.replay_window, self.flags)

    def usersa_id(self) -> bytes:
        return USERSA_ID.pack(self.id.daddr, struct.pack(">I", self.id.spi), self.family,
                              self.id.proto)

    def replay_attr(self) -> bytes:
        if self.replay_esn is not None:
            return nla(A.REPLAY_ESN_VAL, self.replay_esn.encode())
        return nla(A.REPLAY_VAL, REPLAY.pack(*self.replay))

    def extra_attrs(self, hdr_len: int) -> bytes:
        """``copy_to_user_state_extra`` after the fixed part; ``hdr_len`` is the message
        length so far (XFRMA_LASTUSED is 64-bit aligned with XFRMA_PAD, as
        ``nla_put_u64_64bit`` does on a platform that needs it — x86_64 does not)."""
        out: list[bytes] = []
        add = out.append
        if self.extra_flags:
            add(nla(A.SA_EXTRA_FLAGS, struct.pack("=I", self.extra_flags)))
        if self.coaddr is not None:
            add(nla(A.COADDR, self.coaddr))
        if self.lastused:
            add(nla(A.LASTUSED, struct.pack("=Q", self.lastused)))
        if self.aead is not None:
            a = self.aead
            add(nla(A.ALG_AEAD, a.head(a.icv_len) + a.key))
        if self.auth is not None:
            a = self.auth
            add(nla(A.ALG_AUTH, a.head() + a.key))
            add(nla(A.ALG_AUTH_TRUNC, a.head(a.trunc_len) + a.key))
        if self.enc is not None:
            a = self.enc
            add(nla(A.ALG_CRYPT, a.head() + a.key))
        if self.comp is not None:
            # copy_to_user_calg: the bare struct, key length 0
            add(nla(A.ALG_COMP, self.comp.name.encode()[:63].ljust(64, b"\0") + bytes(4)))
        if self.encap is not None:
            e = self.encap
            add(nla(A.ENCAP, struct.pack("=H2s2s2x16s", e.encap_type,
                                         struct.pack(">H", e.encap_sport),
                                         struct.pack(">H", e.encap_dport),
                                         bytes(e.encap_oa))))
        if self.tfcpad:
            add(nla(A.TFCPAD, struct.pack("=I", self.tfcpad)))
        if self.mark[0] | self.mark[1]:
            add(nla(A.MARK, struct.pack("=II", *self.mark)))
        smark = self.smark
        if smark[0] | smark[1]:
            add(nla(A.SET_MARK, struct.pack("=I", smark[0])))
            add(nla(A.SET_MARK_MASK, struct.pack("=I", smark[1])))
        if self.replay_esn is None:     # replay_attr(), without the call and nla()'s
            add(_REPLAY_VAL_HDR + _pack_replay(*self.replay))
        else:
            add(self.replay_attr())
        if self.xso is not None:
            add(offload.copy_user_offload(self))
        if self.if_id:
            add(nla_u32(A.IF_ID, self.if_id))
        if self.iptfs is not None:
            add(iptfs.copy_to_user(self))
        if self.mapping_maxage:
            add(nla_u32(A.MTIMER_THRESH, self.mapping_maxage))
        if self.pcpu_num != UINT_MAX:
            add(nla_u32(A.SA_PCPU, self.pcpu_num))
        if self.dir:
            add(_SA_DIR_ATTR.get(self.dir) or nla_u8(A.SA_DIR, self.dir))
        if self.nat_keepalive_interval:
            add(nla_u32(A.NAT_KEEPALIVE_INTERVAL, self.nat_keepalive_interval))
        return b"".join(out)

    def dump_message(self, seq: int, portid: int, flags: int = NLM_F_MULTI,
                     msg_type: int = M.NEWSA) -> bytes:
        """``dump_one_state``: a NEWSA message (dumps, GETSA and ALLOCSPI replies; with
        ``msg_type``, the NEWSA/UPDSA event). The reference of the C builder: callers use
        the module-level :data:`dump_message`."""
        return encode_msg(msg_type, flags, seq, portid,
                          self.usersa_info() + self.extra_attrs(240))

    # -- events ---------------------------------------------------------------------------

    def notify_message(self, event: int, seq: int, pid: int) -> bytes:
        """``xfrm_notify_sa``: NEWSA / UPDSA carry usersa_info; DELSA carries usersa_id and
        the usersa_info inside XFRMA_SA, then the usual attributes."""
        if event != M.DELSA:
            return dump_message(self, seq, pid, 0, event)
        body = self.usersa_id() + nla(A.SA, self.usersa_info())
        return encode_msg(event, 0, seq, pid, body + self.extra_attrs(16 + len(body)))

    def expire_message(self, hard: bool, pid: int) -> bytes:
        """``build_expire``: xfrm_user_expire (padding after ``hard`` cleared), seq 0."""
        body = self.usersa_info() + bytes([1 if hard else 0]) + bytes(7)
        return encode_msg(M.EXPIRE, 0, 0, pid, body + b"".join(self._km_attrs([])))

    def _km_attrs(self, attrs: list[bytes]) -> list[bytes]:
        """``attrs`` and what build_expire and build_aevent end with: xfrm_mark_put,
        xfrm_if_id_put, XFRMA_SA_PCPU, XFRMA_SA_DIR."""
        mark, if_id, pcpu, sa_dir = self.mark, self.if_id, self.pcpu_num, self.dir
        if mark[0] | mark[1]:
            attrs.append(nla(A.MARK, struct.pack("=II", *mark)))
        attrs.extend(nla_u32(t, v) for t, v, put in ((A.IF_ID, if_id, if_id),
                                                     (A.SA_PCPU, pcpu, pcpu != UINT_MAX)) if put)
        if sa_dir:
            attrs.append(nla_u8(A.SA_DIR, sa_dir))
        return attrs

    def acquire_message(self, t: Template, pol: Policy | PolicyWire) -> bytes:
        """``build_acquire``: xfrm_user_acquire + TMPL + POLICY_TYPE + MARK + IF_ID + OFFLOAD
        + PCPU, for the larval state of template ``t`` of ``pol``."""
        ua = (struct.pack("=16s4sB3x", self.id.daddr, self.id.spi.to_bytes(4, "big"),
                          self.id.proto)
              + self.saddr + self.sel + pol.out_info()
              + struct.pack("=IIII", t.aalgos, t.ealgos, t.calgos, self.km_seq))
        attrs = []
        if pol.templates:
            attrs.append(nla(A.TMPL, b"".join(tt.encode() for tt in pol.templates)))
        # CONFIG_XFRM_SUB_POLICY=y on the reference kernel: the type is always sent
        attrs.append(nla(A.POLICY_TYPE, struct.pack("=BxHBx", pol.ptype, 0, 0)))
        if pol.mark[0] | pol.mark[1]:
            attrs.append(nla(A.MARK, struct.pack("=II", *pol.mark)))
        if pol.if_id:
            attrs.append(nla_u32(A.IF_ID, pol.if_id))
        offload_attr = pol.offload
        if offload_attr:
            attrs.append(offload_attr)
        if self.pcpu_num != UINT_MAX:
            attrs.append(nla_u32(A.SA_PCPU, self.pcpu_num))
        return encode_msg(M.ACQUIRE, 0, 0, 0, ua + b"".join(attrs))

    def aevent_message(self, flags: int, seq: int, pid: int) -> bytes:
        """``build_aevent``: NEWAE with xfrm_aevent_id and the replay/lifetime state."""
        head = self.usersa_id() + AEVENT_ID_TAIL.pack(self.saddr, flags, self.reqid)
        attrs = [self.replay_attr(), nla(A.LTIME_VAL, self.curlft.encode())]
        if flags & X.XFRM_AE_RTHR:
            attrs.append(nla_u32(A.REPLAY_THRESH, self.replay_maxdiff))
        if flags & X.XFRM_AE_ETHR:
            # replay_maxage is in jiffies; reported in units of 100 ms (HZ = 1000)
            attrs.append(nla_u32(A.ETIMER_THRESH, self.replay_maxage * 10 // HZ))
        return encode_msg(M.NEWAE, 0, seq, pid, head + b"".join(self._km_attrs(attrs)))


HZ = 1000

# the C half of dump_one_state (None: the Python path, XFRMD_PURE_PYTHON or not built)
_sadump = cext.load("xfrmd.xfrm._sadump", source("xfrmd.xfrm._sadump"))
if _sadump is not None:
    try:
        _sadump.setup(SecurityAssociation, LifetimeCur, Algo, SecurityAssociation.dump_message)
    except (TypeError, ValueError):     # a slot it reads is gone: Python (test_sadump fails)
        _sadump = None

#: ``dump_one_state(x, seq, portid, flags=NLM_F_MULTI, msg_type=NEWSA)``: a state's NEWSA
#: message for a dump, a GETSA or an ALLOCSPI answer (and the NEWSA/UPDSA event). The C
#: half (``_sadump.c``) builds the usual state's in one allocation from its fields; a state
#: with an offload binding, an encapsulation, ESN or a rare field of its own goes to
#: :meth:`SecurityAssociation.dump_message`.
dump_message = SecurityAssociation.dump_message if _sadump is None else _sadump.message


def flush_message(proto: int, seq: int, pid: int) -> bytes:
    """``xfrm_notify_sa_flush``: xfrm_usersa_flush is 1 byte, but ``nlmsg_end`` measures
    the aligned tail, so nlmsg_len is 20 (probed), the padding zeroed."""
    return encode_msg(M.FLUSHSA, 0, seq, pid, bytes([proto, 0, 0, 0]))
