"""NETLINK_XFRM wire format of Linux 6.18 (include/uapi/linux/xfrm.h): every message type,
struct and XFRMA_* attribute. Pure declarations; no kernel behaviour here."""
from __future__ import annotations

import ctypes
from enum import IntEnum

from .cstruct import CStruct, be16, be32, chars, s32, u8, u16, u32, u64
from .message import AttrSpace, Family, Kind
from .netlink import NLM_F_DUMP

XFRM_MAX_DEPTH = 6
XFRM_INF = 0xFFFFFFFFFFFFFFFF
XFRM_SC_DOI_RESERVED, XFRM_SC_DOI_LSM = 0, 1
XFRM_SC_ALG_RESERVED, XFRM_SC_ALG_SELINUX = 0, 1
XFRMA_REPLAY_ESN_MAX = 4096


class XfrmMsg(IntEnum):
    NEWSA = 0x10
    DELSA = 0x11
    GETSA = 0x12
    NEWPOLICY = 0x13
    DELPOLICY = 0x14
    GETPOLICY = 0x15
    ALLOCSPI = 0x16
    ACQUIRE = 0x17
    EXPIRE = 0x18
    UPDPOLICY = 0x19
    UPDSA = 0x1A
    POLEXPIRE = 0x1B
    FLUSHSA = 0x1C
    FLUSHPOLICY = 0x1D
    NEWAE = 0x1E
    GETAE = 0x1F
    REPORT = 0x20
    MIGRATE = 0x21
    NEWSADINFO = 0x22
    GETSADINFO = 0x23
    NEWSPDINFO = 0x24
    GETSPDINFO = 0x25
    MAPPING = 0x26
    SETDEFAULT = 0x27
    GETDEFAULT = 0x28


XFRM_MSG_BASE = 0x10
XFRM_MSG_MAX = 0x28


class Xfrma(IntEnum):
    UNSPEC = 0
    ALG_AUTH = 1
    ALG_CRYPT = 2
    ALG_COMP = 3
    ENCAP = 4
    TMPL = 5
    SA = 6
    POLICY = 7
    SEC_CTX = 8
    LTIME_VAL = 9
    REPLAY_VAL = 10
    REPLAY_THRESH = 11
    ETIMER_THRESH = 12
    SRCADDR = 13
    COADDR = 14
    LASTUSED = 15
    POLICY_TYPE = 16
    MIGRATE = 17
    ALG_AEAD = 18
    KMADDRESS = 19
    ALG_AUTH_TRUNC = 20
    MARK = 21
    TFCPAD = 22
    REPLAY_ESN_VAL = 23
    SA_EXTRA_FLAGS = 24
    PROTO = 25
    ADDRESS_FILTER = 26
    PAD = 27
    OFFLOAD_DEV = 28
    SET_MARK = 29
    SET_MARK_MASK = 30
    IF_ID = 31
    MTIMER_THRESH = 32
    SA_DIR = 33
    NAT_KEEPALIVE_INTERVAL = 34
    SA_PCPU = 35
    IPTFS_DROP_TIME = 36
    IPTFS_REORDER_WINDOW = 37
    IPTFS_DONT_FRAG = 38
    IPTFS_INIT_DELAY = 39
    IPTFS_MAX_QSIZE = 40
    IPTFS_PKT_SIZE = 41


XFRMA_MAX = 41
XFRMA_OUTPUT_MARK = Xfrma.SET_MARK


class XfrmaSad(IntEnum):
    UNSPEC = 0
    CNT = 1
    HINFO = 2


class XfrmaSpd(IntEnum):
    UNSPEC = 0
    INFO = 1
    HINFO = 2
    IPV4_HTHRESH = 3
    IPV6_HTHRESH = 4


XFRMA_SPD_MAX = 4


class XfrmNlGrp(IntEnum):
    NONE = 0
    ACQUIRE = 1
    EXPIRE = 2
    SA = 3
    POLICY = 4
    AEVENTS = 5
    REPORT = 6
    MIGRATE = 7
    MAPPING = 8


XFRMNLGRP_MAX = 8
# legacy bind() group masks
XFRMGRP_ACQUIRE, XFRMGRP_EXPIRE, XFRMGRP_SA, XFRMGRP_POLICY, XFRMGRP_REPORT = 1, 2, 4, 8, 0x20

# modes
XFRM_MODE_TRANSPORT, XFRM_MODE_TUNNEL, XFRM_MODE_ROUTEOPTIMIZATION = 0, 1, 2
XFRM_MODE_IN_TRIGGER, XFRM_MODE_BEET, XFRM_MODE_IPTFS, XFRM_MODE_MAX = 3, 4, 5, 6
# policy directions, actions, flags, share, types
XFRM_POLICY_IN, XFRM_POLICY_OUT, XFRM_POLICY_FWD, XFRM_POLICY_MASK, XFRM_POLICY_MAX = 0, 1, 2, 3, 3
XFRM_POLICY_ALLOW, XFRM_POLICY_BLOCK = 0, 1
XFRM_POLICY_LOCALOK, XFRM_POLICY_ICMP, XFRM_POLICY_CPU_ACQUIRE = 1, 2, 4
XFRM_SHARE_ANY, XFRM_SHARE_SESSION, XFRM_SHARE_USER, XFRM_SHARE_UNIQUE = 0, 1, 2, 3
XFRM_POLICY_TYPE_MAIN, XFRM_POLICY_TYPE_SUB, XFRM_POLICY_TYPE_MAX, XFRM_POLICY_TYPE_ANY = 0, 1, 2, 255
XFRM_USERPOLICY_UNSPEC, XFRM_USERPOLICY_BLOCK, XFRM_USERPOLICY_ACCEPT = 0, 1, 2
# SA flags (xfrm_usersa_info.flags)
XFRM_STATE_NOECN = 1
XFRM_STATE_DECAP_DSCP = 2
XFRM_STATE_NOPMTUDISC = 4
XFRM_STATE_WILDRECV = 8
XFRM_STATE_ICMP = 16
XFRM_STATE_AF_UNSPEC = 32
XFRM_STATE_ALIGN4 = 64
XFRM_STATE_ESN = 128
XFRM_SA_XFLAG_DONT_ENCAP_DSCP = 1
XFRM_SA_XFLAG_OSEQ_MAY_WRAP = 2
XFRM_SA_DIR_IN, XFRM_SA_DIR_OUT = 1, 2
# aevent flags
XFRM_AE_UNSPEC, XFRM_AE_RTHR, XFRM_AE_RVAL, XFRM_AE_LVAL = 0, 1, 2, 4
XFRM_AE_ETHR, XFRM_AE_CR, XFRM_AE_CE, XFRM_AE_CU = 8, 16, 32, 64
# offload flags
XFRM_OFFLOAD_IPV6, XFRM_OFFLOAD_INBOUND, XFRM_OFFLOAD_PACKET = 1, 2, 4
# protocols
IPPROTO_ROUTING, IPPROTO_ESP, IPPROTO_AH, IPPROTO_DSTOPTS, IPPROTO_COMP = 43, 50, 51, 60, 108
IPSEC_PROTO_ANY = 255
AF_INET, AF_INET6 = 2, 10
# encapsulation
UDP_ENCAP_ESPINUDP_NON_IKE, UDP_ENCAP_ESPINUDP, TCP_ENCAP_ESPINTCP = 1, 2, 7


# ---------------------------------------------------------------------------------------
# structs, in the order of linux/xfrm.h

class XfrmAddress(ctypes.Union):
    """xfrm_address_t: a union of __be32 a4 / a6[4] / in6_addr — 16 bytes, 4-byte aligned.

    IPv4 uses the first 4 bytes. ``bytes(addr)`` gives all 16 bytes; :meth:`of` builds one.
    """
    _fields_ = [("raw", chars(16)), ("a4", be32)]

    @classmethod
    def of(cls, raw: bytes) -> "XfrmAddress":
        return cls.from_buffer_copy(raw.ljust(16, b"\0"))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, XfrmAddress) and bytes(self) == bytes(other)

    def __hash__(self) -> int:
        return hash(bytes(self))

    def __repr__(self) -> str:
        return f"XfrmAddress({bytes(self).hex()})"


class XfrmId(CStruct):
    _fields_ = [("daddr", XfrmAddress), ("spi", be32), ("proto", u8)]


class XfrmSecCtx(CStruct):
    """Kernel-internal head of a security context; listed for completeness."""
    _fields_ = [("ctx_doi", u8), ("ctx_alg", u8), ("ctx_len", u16), ("ctx_sid", u32)]


class XfrmSelector(CStruct):
    _fields_ = [("daddr", XfrmAddress), ("saddr", XfrmAddress),
                ("dport", be16), ("dport_mask", be16), ("sport", be16), ("sport_mask", be16),
                ("family", u16), ("prefixlen_d", u8), ("prefixlen_s", u8), ("proto", u8),
                ("ifindex", s32), ("user", u32)]


class XfrmLifetimeCfg(CStruct):
    _fields_ = [("soft_byte_limit", u64), ("hard_byte_limit", u64),
                ("soft_packet_limit", u64), ("hard_packet_limit", u64),
                ("soft_add_expires_seconds", u64), ("hard_add_expires_seconds", u64),
                ("soft_use_expires_seconds", u64), ("hard_use_expires_seconds", u64)]


class XfrmLifetimeCur(CStruct):
    _fields_ = [("bytes", u64), ("packets", u64), ("add_time", u64), ("use_time", u64)]


class XfrmReplayState(CStruct):
    _fields_ = [("oseq", u32), ("seq", u32), ("bitmap", u32)]


class XfrmReplayStateEsn(CStruct):
    """Head of xfrm_replay_state_esn; ``bmp_len`` u32 words of bitmap follow it."""
    _fields_ = [("bmp_len", u32), ("oseq", u32), ("seq", u32), ("oseq_hi", u32),
                ("seq_hi", u32), ("replay_window", u32)]


class XfrmAlgo(CStruct):
    """Head of xfrm_algo; ``(alg_key_len + 7) // 8`` key bytes follow it."""
    _fields_ = [("alg_name", chars(64)), ("alg_key_len", u32)]


class XfrmAlgoAuth(CStruct):
    _fields_ = [("alg_name", chars(64)), ("alg_key_len", u32), ("alg_trunc_len", u32)]


class XfrmAlgoAead(CStruct):
    _fields_ = [("alg_name", chars(64)), ("alg_key_len", u32), ("alg_icv_len", u32)]


class XfrmStats(CStruct):
    _fields_ = [("replay_window", u32), ("replay", u32), ("integrity_failed", u32)]


class XfrmUserSecCtx(CStruct):
    _fields_ = [("len", u16), ("exttype", u16), ("ctx_alg", u8), ("ctx_doi", u8), ("ctx_len", u16)]


class XfrmUserTmpl(CStruct):
    _fields_ = [("id", XfrmId), ("family", u16), ("saddr", XfrmAddress), ("reqid", u32),
                ("mode", u8), ("share", u8), ("optional", u8),
                ("aalgos", u32), ("ealgos", u32), ("calgos", u32)]


class XfrmEncapTmpl(CStruct):
    _fields_ = [("encap_type", u16), ("encap_sport", be16), ("encap_dport", be16),
                ("encap_oa", XfrmAddress)]


class XfrmUsersaInfo(CStruct):
    _fields_ = [("sel", XfrmSelector), ("id", XfrmId), ("saddr", XfrmAddress),
                ("lft", XfrmLifetimeCfg), ("curlft", XfrmLifetimeCur), ("stats", XfrmStats),
                ("seq", u32), ("reqid", u32), ("family", u16), ("mode", u8),
                ("replay_window", u8), ("flags", u8)]


class XfrmUsersaId(CStruct):
    _fields_ = [("daddr", XfrmAddress), ("spi", be32), ("family", u16), ("proto", u8)]


class XfrmAeventId(CStruct):
    _fields_ = [("sa_id", XfrmUsersaId), ("saddr", XfrmAddress), ("flags", u32), ("reqid", u32)]


class XfrmUserspiInfo(CStruct):
    _fields_ = [("info", XfrmUsersaInfo), ("min", u32), ("max", u32)]


class XfrmUserpolicyInfo(CStruct):
    _fields_ = [("sel", XfrmSelector), ("lft", XfrmLifetimeCfg), ("curlft", XfrmLifetimeCur),
                ("priority", u32), ("index", u32), ("dir", u8), ("action", u8),
                ("flags", u8), ("share", u8)]


class XfrmUserpolicyId(CStruct):
    _fields_ = [("sel", XfrmSelector), ("index", u32), ("dir", u8)]


class XfrmUserAcquire(CStruct):
    _fields_ = [("id", XfrmId), ("saddr", XfrmAddress), ("sel", XfrmSelector),
                ("policy", XfrmUserpolicyInfo), ("aalgos", u32), ("ealgos", u32),
                ("calgos", u32), ("seq", u32)]


class XfrmUserExpire(CStruct):
    _fields_ = [("state", XfrmUsersaInfo), ("hard", u8)]


class XfrmUserPolexpire(CStruct):
    _fields_ = [("pol", XfrmUserpolicyInfo), ("hard", u8)]


class XfrmUsersaFlush(CStruct):
    _fields_ = [("proto", u8)]


class XfrmUserReport(CStruct):
    _fields_ = [("proto", u8), ("sel", XfrmSelector)]


class XfrmUserKmaddress(CStruct):
    _fields_ = [("local", XfrmAddress), ("remote", XfrmAddress), ("reserved", u32), ("family", u16)]


class XfrmUserMigrate(CStruct):
    _fields_ = [("old_daddr", XfrmAddress), ("old_saddr", XfrmAddress),
                ("new_daddr", XfrmAddress), ("new_saddr", XfrmAddress),
                ("proto", u8), ("mode", u8), ("reserved", u16), ("reqid", u32),
                ("old_family", u16), ("new_family", u16)]


class XfrmUserMapping(CStruct):
    _fields_ = [("id", XfrmUsersaId), ("reqid", u32), ("old_saddr", XfrmAddress),
                ("new_saddr", XfrmAddress), ("old_sport", be16), ("new_sport", be16)]


class XfrmAddressFilter(CStruct):
    _fields_ = [("saddr", XfrmAddress), ("daddr", XfrmAddress), ("family", u16),
                ("splen", u8), ("dplen", u8)]


class XfrmUserOffload(CStruct):
    _fields_ = [("ifindex", ctypes.c_int), ("flags", u8)]


class XfrmUserpolicyDefault(CStruct):
    _fields_ = [("in_", u8), ("fwd", u8), ("out", u8)]


class XfrmUserpolicyType(CStruct):
    _fields_ = [("type", u8), ("reserved1", u16), ("reserved2", u8)]


class XfrmMark(CStruct):
    _fields_ = [("v", u32), ("m", u32)]


class XfrmuSadhinfo(CStruct):
    _fields_ = [("sadhcnt", u32), ("sadhmcnt", u32)]


class XfrmuSpdinfo(CStruct):
    _fields_ = [("incnt", u32), ("outcnt", u32), ("fwdcnt", u32),
                ("inscnt", u32), ("outscnt", u32), ("fwdscnt", u32)]


class XfrmuSpdhinfo(CStruct):
    _fields_ = [("spdhcnt", u32), ("spdhmcnt", u32)]


class XfrmuSpdhthresh(CStruct):
    _fields_ = [("lbits", u8), ("rbits", u8)]


# The C names of the structs above, for the layout test and for readers coming from the header.
C_NAMES: dict[str, type[CStruct]] = {
    "struct xfrm_id": XfrmId,
    "struct xfrm_sec_ctx": XfrmSecCtx,
    "struct xfrm_selector": XfrmSelector,
    "struct xfrm_lifetime_cfg": XfrmLifetimeCfg,
    "struct xfrm_lifetime_cur": XfrmLifetimeCur,
    "struct xfrm_replay_state": XfrmReplayState,
    "struct xfrm_replay_state_esn": XfrmReplayStateEsn,
    "struct xfrm_algo": XfrmAlgo,
    "struct xfrm_algo_auth": XfrmAlgoAuth,
    "struct xfrm_algo_aead": XfrmAlgoAead,
    "struct xfrm_stats": XfrmStats,
    "struct xfrm_user_sec_ctx": XfrmUserSecCtx,
    "struct xfrm_user_tmpl": XfrmUserTmpl,
    "struct xfrm_encap_tmpl": XfrmEncapTmpl,
    "struct xfrm_usersa_info": XfrmUsersaInfo,
    "struct xfrm_usersa_id": XfrmUsersaId,
    "struct xfrm_aevent_id": XfrmAeventId,
    "struct xfrm_userspi_info": XfrmUserspiInfo,
    "struct xfrm_userpolicy_info": XfrmUserpolicyInfo,
    "struct xfrm_userpolicy_id": XfrmUserpolicyId,
    "struct xfrm_user_acquire": XfrmUserAcquire,
    "struct xfrm_user_expire": XfrmUserExpire,
    "struct xfrm_user_polexpire": XfrmUserPolexpire,
    "struct xfrm_usersa_flush": XfrmUsersaFlush,
    "struct xfrm_user_report": XfrmUserReport,
    "struct xfrm_user_kmaddress": XfrmUserKmaddress,
    "struct xfrm_user_migrate": XfrmUserMigrate,
    "struct xfrm_user_mapping": XfrmUserMapping,
    "struct xfrm_address_filter": XfrmAddressFilter,
    "struct xfrm_user_offload": XfrmUserOffload,
    "struct xfrm_userpolicy_default": XfrmUserpolicyDefault,
    "struct xfrm_userpolicy_type": XfrmUserpolicyType,
    "struct xfrm_mark": XfrmMark,
    "struct xfrmu_sadhinfo": XfrmuSadhinfo,
    "struct xfrmu_spdinfo": XfrmuSpdinfo,
    "struct xfrmu_spdhinfo": XfrmuSpdhinfo,
    "struct xfrmu_spdhthresh": XfrmuSpdhthresh,
}
# C field names that are Python keywords
C_FIELD_ALIASES = {("struct xfrm_userpolicy_default", "in"): "in_"}


# ---------------------------------------------------------------------------------------
# message and attribute tables


class U32Flags(CStruct):
    """The bare u32 some XFRM requests carry (GETSADINFO, GETSPDINFO, NEWSPDINFO)."""
    _fields_ = [("flags", u32)]


# Fixed part of each message type as userspace sends it and the kernel emits it.
# (xfrm_msg_min in xfrm_user.c gives the minimum the kernel accepts; see MSG_MIN.)
MSG_FIXED: dict[int, type[CStruct] | None] = {
    XfrmMsg.NEWSA: XfrmUsersaInfo,
    XfrmMsg.UPDSA: XfrmUsersaInfo,
    XfrmMsg.DELSA: XfrmUsersaId,
    XfrmMsg.GETSA: XfrmUsersaId,
    XfrmMsg.NEWPOLICY: XfrmUserpolicyInfo,
    XfrmMsg.UPDPOLICY: XfrmUserpolicyInfo,
    XfrmMsg.DELPOLICY: XfrmUserpolicyId,
    XfrmMsg.GETPOLICY: XfrmUserpolicyId,
    XfrmMsg.ALLOCSPI: XfrmUserspiInfo,
    XfrmMsg.ACQUIRE: XfrmUserAcquire,
    XfrmMsg.EXPIRE: XfrmUserExpire,
    XfrmMsg.POLEXPIRE: XfrmUserPolexpire,
    XfrmMsg.FLUSHSA: XfrmUsersaFlush,
    XfrmMsg.FLUSHPOLICY: None,
    XfrmMsg.NEWAE: XfrmAeventId,
    XfrmMsg.GETAE: XfrmAeventId,
    XfrmMsg.REPORT: XfrmUserReport,
    XfrmMsg.MIGRATE: XfrmUserpolicyId,
    XfrmMsg.NEWSADINFO: U32Flags,
    XfrmMsg.GETSADINFO: U32Flags,
    XfrmMsg.NEWSPDINFO: U32Flags,
    XfrmMsg.GETSPDINFO: U32Flags,
    XfrmMsg.MAPPING: XfrmUserMapping,
    XfrmMsg.SETDEFAULT: XfrmUserpolicyDefault,
    XfrmMsg.GETDEFAULT: XfrmUserpolicyDefault,
}

# xfrm_msg_min[] of xfrm_user.c: minimum payload the kernel requires before attributes.
# Attributes start at NLMSG_ALIGN of this value. NEWSADINFO and MAPPING have 0 (no handler).
MSG_MIN: dict[int, int] = {
    t: (0 if cls is None else ctypes.sizeof(cls)) for t, cls in MSG_FIXED.items()}
MSG_MIN[XfrmMsg.NEWSADINFO] = 0
MSG_MIN[XfrmMsg.MAPPING] = 0

# Attribute payload kinds: a CStruct class (fixed head; may be followed by more bytes), or one of
# "u8" "u16" "u32" "u64" "flag" "addr" "binary"; TMPL and MIGRATE are arrays of their struct.
ATTR_KIND: dict[int, Kind] = {
    Xfrma.ALG_AUTH: XfrmAlgo,
    Xfrma.ALG_CRYPT: XfrmAlgo,
    Xfrma.ALG_COMP: XfrmAlgo,
    Xfrma.ENCAP: XfrmEncapTmpl,
    Xfrma.TMPL: ("array", XfrmUserTmpl),
    Xfrma.SA: XfrmUsersaInfo,
    Xfrma.POLICY: XfrmUserpolicyInfo,
    Xfrma.SEC_CTX: XfrmUserSecCtx,
    Xfrma.LTIME_VAL: XfrmLifetimeCur,
    Xfrma.REPLAY_VAL: XfrmReplayState,
    Xfrma.REPLAY_THRESH: "u32",
    Xfrma.ETIMER_THRESH: "u32",
    Xfrma.SRCADDR: "addr",
    Xfrma.COADDR: "addr",
    Xfrma.LASTUSED: "u64",
    Xfrma.POLICY_TYPE: XfrmUserpolicyType,
    Xfrma.MIGRATE: ("array", XfrmUserMigrate),
    Xfrma.ALG_AEAD: XfrmAlgoAead,
    Xfrma.KMADDRESS: XfrmUserKmaddress,
    Xfrma.ALG_AUTH_TRUNC: XfrmAlgoAuth,
    Xfrma.MARK: XfrmMark,
    Xfrma.TFCPAD: "u32",
    Xfrma.REPLAY_ESN_VAL: XfrmReplayStateEsn,
    Xfrma.SA_EXTRA_FLAGS: "u32",
    Xfrma.PROTO: "u8",
    Xfrma.ADDRESS_FILTER: XfrmAddressFilter,
    Xfrma.PAD: "binary",
    Xfrma.OFFLOAD_DEV: XfrmUserOffload,
    Xfrma.SET_MARK: "u32",
    Xfrma.SET_MARK_MASK: "u32",
    Xfrma.IF_ID: "u32",
    Xfrma.MTIMER_THRESH: "u32",
    Xfrma.SA_DIR: "u8",
    Xfrma.NAT_KEEPALIVE_INTERVAL: "u32",
    Xfrma.SA_PCPU: "u32",
    Xfrma.IPTFS_DROP_TIME: "u32",
    Xfrma.IPTFS_REORDER_WINDOW: "u16",
    Xfrma.IPTFS_DONT_FRAG: "flag",
    Xfrma.IPTFS_INIT_DELAY: "u32",
    Xfrma.IPTFS_MAX_QSIZE: "u32",
    Xfrma.IPTFS_PKT_SIZE: "u32",
}

SAD_ATTR_KIND: dict[int, Kind] = {XfrmaSad.CNT: "u32", XfrmaSad.HINFO: XfrmuSadhinfo}
SPD_ATTR_KIND: dict[int, Kind] = {
    XfrmaSpd.INFO: XfrmuSpdinfo, XfrmaSpd.HINFO: XfrmuSpdhinfo,
    XfrmaSpd.IPV4_HTHRESH: XfrmuSpdhthresh, XfrmaSpd.IPV6_HTHRESH: XfrmuSpdhthresh}


def attr_space(msg_type: int) -> tuple[dict[int, Kind], type[IntEnum]]:
    """Which attribute table a message type uses (SAD/SPD info messages have their own)."""
    if msg_type in (XfrmMsg.NEWSADINFO, XfrmMsg.GETSADINFO):
        return SAD_ATTR_KIND, XfrmaSad
    if msg_type in (XfrmMsg.NEWSPDINFO, XfrmMsg.GETSPDINFO):
        return SPD_ATTR_KIND, XfrmaSpd
    return ATTR_KIND, Xfrma


def attrs_offset(msg_type: int, dump: bool = False) -> int:
    """Where attributes start after the nlmsghdr. GETSA dumps carry them right after it."""
    if dump and msg_type == XfrmMsg.GETSA:
        return 0
    return (MSG_MIN.get(msg_type, 0) + 3) & ~3


# ---------------------------------------------------------------------------------------
# the family, for generic decoding (tests, client, trace, replayer)

XFRMA_SPACE = AttrSpace("XFRMA", ATTR_KIND, lambda t: "XFRMA_" + Xfrma(t).name)
SAD_SPACE = AttrSpace("XFRMA_SAD", SAD_ATTR_KIND, lambda t: "XFRMA_SAD_" + XfrmaSad(t).name)
SPD_SPACE = AttrSpace("XFRMA_SPD", SPD_ATTR_KIND, lambda t: "XFRMA_SPD_" + XfrmaSpd(t).name)

_REQUEST = 1


def _is_dump_request(t: int, flags: int) -> bool:
    return bool(flags & _REQUEST) and bool(flags & NLM_F_DUMP) and t in (XfrmMsg.GETSA, XfrmMsg.GETPOLICY)


def _fixed(t: int, flags: int) -> type[CStruct] | None:
    if _is_dump_request(t, flags):
        return None
    return MSG_FIXED.get(t)


def _attrs_at(t: int, flags: int) -> int:
    if _is_dump_request(t, flags):
        return 0
    cls = MSG_FIXED.get(t)
    return 0 if cls is None else (cls.size() + 3) & ~3


def _space(t: int, flags: int) -> AttrSpace | None:
    if t in (XfrmMsg.NEWSADINFO, XfrmMsg.GETSADINFO):
        return SAD_SPACE
    if t in (XfrmMsg.NEWSPDINFO, XfrmMsg.GETSPDINFO):
        return SPD_SPACE
    if _is_dump_request(t, flags) and t == XfrmMsg.GETPOLICY:
        return None
    return XFRMA_SPACE


XFRM = Family("xfrm", _fixed, _space, _attrs_at, lambda t: "XFRM_MSG_" + XfrmMsg(t).name)
