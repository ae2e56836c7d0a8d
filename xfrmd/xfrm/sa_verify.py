"""NEWSA/UPDSA checking and state construction, in the order of xfrm_user.c:
``verify_newsa_info`` (with ``verify_replay``) then ``xfrm_state_construct`` (attach the
algorithms, copy the attributes, ``__xfrm_init_state``, ``xfrm_init_replay``, AE overrides,
offload). Every failure raises :class:`~xfrmd.errors.KernelError` with the kernel's errno
and extack text.
"""
from __future__ import annotations

import errno as E
import struct
from typing import TYPE_CHECKING, NamedTuple

from netlink_codec import cext
from netlink_codec import xfrm as X

from .. import kconfig
from ..cext import source
from ..errors import KernelError
from . import algos, iptfs, offload, types
from .addrcache import SEEN, shared
from .request import XfrmRequest
from .globals import KEY as XFRM_GLOBALS_KEY, xfrm_globals
from .state import (DEFAULT_LFT, LIFETIME_CFG, UINT_MAX, USERSA_INFO, Algo, LifetimeCfg,
                    LifetimeCur, ReplayEsn, SecurityAssociation, StateId, sel_with_family)
from .uapi import A

if TYPE_CHECKING:
    from ..kernel import Kernel
    from .sadb import StateDb

EINVAL = E.EINVAL
_ESN_HEAD = struct.Struct("=6I")
_IPTFS = frozenset((A.IPTFS_DROP_TIME, A.IPTFS_REORDER_WINDOW, A.IPTFS_DONT_FRAG,
                    A.IPTFS_INIT_DELAY, A.IPTFS_MAX_QSIZE, A.IPTFS_PKT_SIZE))
_AE_THRESH = ((A.ETIMER_THRESH, "replay_maxage"), (A.REPLAY_THRESH, "replay_maxdiff"),
              (A.MTIMER_THRESH, "mapping_maxage"))
_FAMILIES = frozenset((X.AF_INET, X.AF_INET6))
_USER_MODES = frozenset((X.XFRM_MODE_TRANSPORT, X.XFRM_MODE_TUNNEL, X.XFRM_MODE_ROUTEOPTIMIZATION,
                         X.XFRM_MODE_BEET))
# what verify_newsa_info checks only when one is there
_RARE = _IPTFS | {A.TFCPAD, A.SEC_CTX, A.REPLAY_ESN_VAL, A.MTIMER_THRESH, A.SA_PCPU}
_AE = frozenset((A.REPLAY_ESN_VAL, A.REPLAY_VAL, A.LTIME_VAL, A.ETIMER_THRESH, A.REPLAY_THRESH,
                 A.MTIMER_THRESH))


_seen = SEEN.get     # addrcache.shared's lookup, without the call when the address is known
_NO_PAD = bytes(3)      # xfrm_id's padding as nearly everyone sends it: one shared object


# xfrm_usersa_info as a request is read: the selector, the lifetime limits, the current
# lifetime and the statistics whole (copy_from_user_state ignores the last two); the
# limits are then eight int objects only when they are not the default ones
USERSA_INFO_IN = struct.Struct("=56s16s4sB3s16s64s32s12sIIHBBB7x")
assert USERSA_INFO_IN.size == USERSA_INFO.size
_DEFAULT_LFT_RAW = LIFETIME_CFG.pack(*DEFAULT_LFT)


class UsersaInfo(NamedTuple):
    """A request's xfrm_usersa_info: the fields of :data:`USERSA_INFO_IN` (one
    ``unpack_from``, made a named tuple without copying: :func:`usersa_info`)."""
    sel: bytes          # struct xfrm_selector, 56 bytes (state.sel_family, …)
    daddr: bytes        # xfrm_id
    spi_be: bytes
    proto: int
    id_pad: bytes
    saddr: bytes
    lft_raw: bytes      # xfrm_lifetime_cfg (state_construct unpacks it)
    curlft_raw: bytes   # xfrm_lifetime_cur, ignored
    stats_raw: bytes    # xfrm_stats, ignored
    seq: int
    reqid: int
    family: int
    mode: int
    replay_window: int
    flags: int

    @property
    def spi(self) -> int:
        return int.from_bytes(self.spi_be, "big")


# a named tuple from a tuple of its fields, without the generated __new__'s Python frame
_as = tuple.__new__


def usersa_info(buf: bytes | bytearray, off: int) -> UsersaInfo:
    """The xfrm_usersa_info at ``off``."""
    return _as(UsersaInfo, USERSA_INFO_IN.unpack_from(buf, off))


# the C half of checked_newsa_info (None: the Python path, XFRMD_PURE_PYTHON or not built)
_safast = cext.load("xfrmd.xfrm._safast", source("xfrmd.xfrm._safast"))


def checked_newsa_info(req: XfrmRequest) -> UsersaInfo:
    """:func:`usersa_info` of a NEWSA/UPDSA, checked by :func:`verify_newsa_info`. The C
    half (``_safast.c``) answers in one call for the requests it is sure the checks accept
    (ESP or AH with the usual attributes); it leaves every other one, and every error, to
    the Python path."""
    if _safast is not None:
        p: UsersaInfo | None = _safast.newsa_info(req.buf, req.payload_offset, req.attrs,
                                                  UsersaInfo)
        if p is not None:
            return p
    p = usersa_info(req.buf, req.payload_offset)
    verify_newsa_info(req, p)
    return p


# the C half of checked_newsa_info + state_construct together (None: the Python path)
_sacons = cext.load("xfrmd.xfrm._sacons", source("xfrmd.xfrm._sacons"))
if _sacons is not None and not _sacons.setup(
        SecurityAssociation, LifetimeCur, LifetimeCfg, StateId, Algo, DEFAULT_LFT, SEEN, shared,
        {k: (d.name, d.geniv, d.keys, kconfig.ALGORITHM_OPTION.get(d.name))
         for k, d in algos.AEAD_BY_NAME_ICV.items()},
        algos.UNAVAILABLE, types.DISABLED_TYPES, kconfig.XFRM_TYPES[X.IPPROTO_ESP],
        offload.XfrmDevOffload):
    _sacons = None      # SecurityAssociation.__init__ is not one it can follow

#: ``SecurityAssociation(lft, xid, sel, family, saddr, mode, reqid, replay_window, flags,
#: add_time, net)``, the eleven positional: in C without __init__'s frame when it can
new_state = SecurityAssociation if _sacons is None else _sacons.state


def fast_state(req: XfrmRequest, db: StateDb) -> SecurityAssociation | None:
    """:func:`checked_newsa_info` and :func:`state_construct` of the usual NEWSA/UPDSA
    (ESP with an AEAD, maybe a direction and an offload device: charon's, ``ip``'s) in one C
    call (``_sacons.c``), with the offload binding's core checks and ``x.xso`` (the device
    found by its ifindex, with xfrmdev ops), then the driver's part of the binding; None for
    every other request, and for each the Python path would refuse before the driver (it
    then decides)."""
    kernel = db.kernel
    cfg = getattr(kernel, "kconfig", None)
    buf = req.buf
    ns = db.ns
    assert _sacons is not None          # (the caller tests it)
    # (req.payload_offset and xfrm_globals(kernel) inline: a frame each)
    x: SecurityAssociation | None = _sacons.construct(
        buf, req.hdr.offset + 16, req.attrs, db, kernel.clock.wall(),
        kernel.drivers[_XFRM_GLOBALS].unavailable_algos,  # type: ignore[attr-defined]
        None if cfg is None else cfg.values,
        db.aevent_rseqth, db.aevent_maxage, getattr(ns, "links", None))
    if x is not None:
        # (the selector is the shared object state_construct's is: _sacons.c took it from
        # addrcache)
        xso = x.xso
        if xso is not None:     # XFRMA_OFFLOAD_DEV: _sacons.c made the binding, the driver's
            dev = xso.dev       # turn now (_construct_rest: no replay state, no AE attribute)
            try:
                # (a device with ops: _sacons.c binds no other)
                offload.xfrm_dev_state_add_driver(req, x, dev, dev.xfrmdev_ops,  # type: ignore[arg-type]
                                                  xso.type == _PACKET)
            except KernelError:
                db.discard(x)
                raise
    return x


_PACKET = offload.XFRM_DEV_OFFLOAD_PACKET
_XFRM_GLOBALS = XFRM_GLOBALS_KEY


def _err(msg: str | None = None, errno: int = EINVAL) -> KernelError:
    return KernelError(errno, msg)


def _verify_replay(req: XfrmRequest, p: UsersaInfo, sa_dir: int) -> None:
    """``verify_replay``."""
    ra = req.attrs.get(A.REPLAY_ESN_VAL)
    esn = p.flags & X.XFRM_STATE_ESN
    if ra is None:
        if esn:
            raise _err("Missing required attribute for ESN")
        return
    bmp_len, oseq, seq, oseq_hi, seq_hi, window = _ESN_HEAD.unpack_from(req.buf, ra.start)
    if bmp_len > X.XFRMA_REPLAY_ESN_MAX // 4 // 8:
        raise _err("ESN bitmap length must be <= 128")
    alen = ra.end - ra.start
    if alen < 24 + 4 * bmp_len and alen != 24:
        raise _err("ESN attribute is too short to fit the full bitmap length")
    if p.proto not in (X.IPPROTO_ESP, X.IPPROTO_AH):
        raise _err("ESN only supported for ESP and AH")
    if p.replay_window:
        raise _err("ESN not compatible with legacy replay_window")
    if sa_dir == X.XFRM_SA_DIR_OUT:
        if window:
            raise _err("Replay window should be 0 for output SA")
        if seq or seq_hi:
            raise _err("Replay seq and seq_hi should be 0 for output SA")
        _verify_replay_seq(bool(esn), "oseq", oseq, oseq_hi, "output SA")
        if bmp_len:
            raise _err("Replay bmp_len should 0 for output SA")
    if sa_dir == X.XFRM_SA_DIR_IN:
        if oseq or oseq_hi:
            raise _err("Replay oseq and oseq_hi should be 0 for input SA")
        _verify_replay_seq(bool(esn), "seq", seq, seq_hi, "input SA")


def _verify_replay_seq(esn: bool, name: str, seq: int, seq_hi: int, what: str) -> None:
    """``verify_replay``: the sequence number the SA's direction counts (oseq out, seq in)
    must leave room to count in its mode."""
    if not esn:
        if seq_hi:
            raise _err(f"Replay {name}_hi should be 0 in non-ESN mode for {what}")
        if seq == UINT_MAX:
            raise _err(f"Replay {name} should be less than 0xFFFFFFFF in non-ESN mode for {what}")
    elif seq == UINT_MAX and seq_hi == UINT_MAX:
        raise _err(f"Replay {name} and {name}_hi should be less than 0xFFFFFFFF for {what}")


def _alg_len(req: XfrmRequest, t: int, head: int) -> bool:
    """The attribute holds its key: nla_len >= head + (alg_key_len + 7) / 8."""
    ra = req.attrs[t]
    key_len: int = struct.unpack_from("=I", req.buf, ra.start + 64)[0]
    return ra.end - ra.start >= head + (key_len + 7) // 8


def verify_newsa_info(req: XfrmRequest, p: UsersaInfo) -> None:
    """``verify_newsa_info``: EINVAL with the kernel's message, in its order."""
    at = req.attrs
    ra = at.get(A.SA_DIR)
    sa_dir = 0 if ra is None else req.buf[ra.start]
    # the fields read here, in one step (a named tuple's field is a slow attribute on 3.11)
    sel, proto = p[0], p[3]
    sa_family, mode, replay_window, flags = p[11:15]
    if sa_family not in _FAMILIES:
        raise _err("Invalid address family")
    family = sel[40] | sel[41] << 8      # state.sel_family
    if not family and not flags & X.XFRM_STATE_AF_UNSPEC:
        family = sa_family
    if family == X.AF_INET:
        if sel[42] > 32 or sel[43] > 32:   # prefixlen_d, prefixlen_s
            raise _err("Invalid prefix length in selector (must be <= 32 for IPv4)")
    elif family == X.AF_INET6:
        if sel[42] > 128 or sel[43] > 128:
            raise _err("Invalid prefix length in selector (must be <= 128 for IPv6)")
    elif family != 0:
        raise _err("Invalid address family in selector")

    # which algorithms came, each looked up once; ``rare``: any of the attributes only a few
    # requests carry, whose checks are skipped together otherwise (none can fail then)
    aead, crypt, comp = A.ALG_AEAD in at, A.ALG_CRYPT in at, A.ALG_COMP in at
    auth_only, auth_trunc = A.ALG_AUTH in at, A.ALG_AUTH_TRUNC in at
    auth = auth_only or auth_trunc
    rare = not _RARE.isdisjoint(at)
    if proto == X.IPPROTO_AH:
        if not auth:
            raise _err("Missing required attribute for AH: AUTH_TRUNC or AUTH")
        if aead or crypt or comp or A.TFCPAD in at:
            raise _err("Invalid attributes for AH: AEAD, CRYPT, COMP, TFCPAD")
    elif proto == X.IPPROTO_ESP:
        if comp:
            raise _err("Invalid attribute for ESP: COMP")
        if not auth and not crypt and not aead:
            raise _err("Missing required attribute for ESP: at least one of AUTH, AUTH_TRUNC, CRYPT, AEAD")
        if (auth or crypt) and aead:
            raise _err("Invalid attribute combination for ESP: AEAD can't be used with AUTH, AUTH_TRUNC, CRYPT")
        if rare:
            if A.TFCPAD in at and mode != X.XFRM_MODE_TUNNEL:
                raise _err("TFC padding can only be used in tunnel mode")
            if not _IPTFS.isdisjoint(at) and mode != X.XFRM_MODE_IPTFS:
                raise _err("IP-TFS options can only be used in IP-TFS mode")
    elif proto == X.IPPROTO_COMP:
        if not comp:
            raise _err("Missing required attribute for COMP: COMP")
        if aead or auth or crypt or A.TFCPAD in at:
            raise _err("Invalid attributes for COMP: AEAD, AUTH, AUTH_TRUNC, CRYPT, TFCPAD")
        if p.spi >= 0x10000:
            raise _err("SPI is too large for COMP (must be < 0x10000)")
    elif proto in (X.IPPROTO_DSTOPTS, X.IPPROTO_ROUTING):
        if (comp or auth or aead or crypt
                or A.ENCAP in at or A.SEC_CTX in at or A.TFCPAD in at):
            raise _err("Invalid attributes for DSTOPTS/ROUTING")
        if A.COADDR not in at:
            raise _err("Missing required COADDR attribute for DSTOPTS/ROUTING")
    else:
        raise _err("Unsupported protocol")

    if aead and not _alg_len(req, A.ALG_AEAD, 72):
        raise _err("Invalid AEAD attribute length")
    if auth_trunc and not _alg_len(req, A.ALG_AUTH_TRUNC, 72):
        raise _err("Invalid AUTH_TRUNC attribute length")
    if ((auth_only and not _alg_len(req, A.ALG_AUTH, 68))
            or (crypt and not _alg_len(req, A.ALG_CRYPT, 68))
            or (comp and not _alg_len(req, A.ALG_COMP, 68))):
        raise _err("Invalid AUTH/CRYPT/COMP attribute length")
    if rare and A.SEC_CTX in at:
        req.verify_sec_ctx_len()
    if rare or flags & X.XFRM_STATE_ESN:
        _verify_replay(req, p, sa_dir)      # it reads REPLAY_ESN_VAL and the ESN flag

    if mode == X.XFRM_MODE_IPTFS:
        if proto != X.IPPROTO_ESP:
            raise _err("IP-TFS mode only supported with ESP")
        if sa_dir == 0:
            raise _err("IP-TFS mode requires in or out direction attribute")
    elif mode not in _USER_MODES:
        raise _err("Unsupported mode")

    if rare and A.MTIMER_THRESH in at:
        if A.ENCAP not in at:
            raise _err("MTIMER_THRESH attribute can only be set on ENCAP states")
        if sa_dir == X.XFRM_SA_DIR_OUT:
            raise _err("MTIMER_THRESH attribute should not be set on output SA")
    if sa_dir == X.XFRM_SA_DIR_OUT:
        if flags & X.XFRM_STATE_DECAP_DSCP:
            raise _err("Flag DECAP_DSCP should not be set for output SA")
        if flags & X.XFRM_STATE_ICMP:
            raise _err("Flag ICMP should not be set for output SA")
        if flags & X.XFRM_STATE_WILDRECV:
            raise _err("Flag WILDRECV should not be set for output SA")
        if replay_window:
            raise _err("Replay window should be 0 for output SA")
        if A.IPTFS_DROP_TIME in at:
            raise _err("IP-TFS drop time should not be set for output SA")
        if A.IPTFS_REORDER_WINDOW in at:
            raise _err("IP-TFS reorder window should not be set for output SA")
        ra = at.get(A.REPLAY_VAL)
        if ra is not None:
            _, seq, bitmap = struct.unpack_from("=III", req.buf, ra.start)
            if seq or bitmap:
                raise _err("Replay seq and bitmap should be 0 for output SA")
    if sa_dir == X.XFRM_SA_DIR_IN:
        if flags & X.XFRM_STATE_NOPMTUDISC:
            raise _err("Flag NOPMTUDISC should not be set for input SA")
        xflags = req.attr_int(A.SA_EXTRA_FLAGS)
        if xflags is not None:
            if xflags & X.XFRM_SA_XFLAG_DONT_ENCAP_DSCP:
                raise _err("Flag DONT_ENCAP_DSCP should not be set for input SA")
            if xflags & X.XFRM_SA_XFLAG_OSEQ_MAY_WRAP:
                raise _err("Flag OSEQ_MAY_WRAP should not be set for input SA")
        for t, what in ((A.IPTFS_DONT_FRAG, "don't fragment"), (A.IPTFS_INIT_DELAY, "initial delay"),
                        (A.IPTFS_MAX_QSIZE, "max queue size"), (A.IPTFS_PKT_SIZE, "packet size")):
            if t in at:
                raise _err(f"IP-TFS {what} should not be set for input SA")
    if not sa_dir and rare and A.SA_PCPU in at:
        raise _err("SA_PCPU only supported with SA_DIR")
    return None


# -- xfrm_state_construct ------------------------------------------------------------------

_ALG_LENS = struct.Struct("=II")      # alg_key_len, then alg_icv_len / alg_trunc_len


def _alg(req: XfrmRequest, t: int, head: int) -> tuple[str, int, bytes, int]:
    """The algorithm attribute ``t``: (name, key bits, key, the ICV or truncation bits of the
    attributes that have them). The key follows the ``head`` bytes: 68 of xfrm_algo, 72 of
    xfrm_algo_aead / xfrm_algo_auth; a 68-byte attribute reads 0 as its second field."""
    ra = req.attrs[t]
    buf = req.buf
    if _safast is not None:
        got: tuple[str, int, bytes, int] | None = _safast.alg(buf, ra, head)
        if got is not None:     # the same, in one call (a bytes buffer)
            return got
    start, end = ra.start, ra.end
    if end - start >= 72:
        key_len, second = _ALG_LENS.unpack_from(buf, start + 64)
        raw = bytes(buf[start:start + 64])
    else:
        raw = bytes(buf[start:end]).ljust(72, b"\0")
        key_len, second = _ALG_LENS.unpack_from(raw, 64)
        raw = raw[:64]
    key = bytes(buf[start + head:min(start + head + (key_len + 7) // 8, end)])
    return algos.NAMES.get(raw) or algos.c_name_seen(raw), key_len, key, second


def _not_found(what: str) -> KernelError:
    """The algorithm table (or this kernel's crypto API) lacks it: ENOSYS."""
    return _err(f"Requested {what} algorithm not found", -E.ENOSYS)


# the attributes state construction copies (besides the algorithms), each group skipped
# with one set test when a request has none of them (most have none)
_COPIED_FIRST = frozenset((A.ENCAP, A.COADDR, A.SA_EXTRA_FLAGS))
_COPIED_LATER = frozenset((A.TFCPAD, A.MARK, A.SET_MARK, A.IF_ID, A.SA_DIR,
                           A.NAT_KEEPALIVE_INTERVAL, A.SA_PCPU))


def state_construct(req: XfrmRequest, p: UsersaInfo, db: StateDb) -> SecurityAssociation:
    """``xfrm_state_construct``: the state, not yet inserted."""
    at = req.attrs
    # copy_from_user_state. Most states carry the default limits: one shared tuple then
    # (ints above 2**30 are objects of their own, four of them per lifetime); addresses are
    # shared between states (addrcache)
    sel, daddr, spi_be, proto, id_pad, saddr, lft_raw = p[:7]
    seq, reqid, family, mode, replay_window, flags = p[9:15]
    if not (sel[40] or sel[41]) and not flags & X.XFRM_STATE_AF_UNSPEC:
        sel = sel_with_family(sel, family)
    # the selector shared too: a tunnel-mode SA's is all zeros but the family (charon's,
    # ip's without "sel"), a host pair's repeats per peer — one 89-byte object less per state
    sel = _seen(sel) or shared(sel)
    x = SecurityAssociation(
        (DEFAULT_LFT if lft_raw == _DEFAULT_LFT_RAW
         else _as(LifetimeCfg, LIFETIME_CFG.unpack(lft_raw))),
        _as(StateId, (_seen(daddr) or shared(daddr), int.from_bytes(spi_be, "big"), proto)),
        sel, family, _seen(saddr) or shared(saddr), mode, reqid, min(replay_window, 32), flags,
        db.kernel.clock.wall(), db)       # xfrm_state_alloc
    if id_pad != _NO_PAD:
        x.id_pad = id_pad
    if not _COPIED_FIRST.isdisjoint(at):
        _copy_first(req, x)
    _attach_algos(req, x, db.kernel)
    if not _COPIED_LATER.isdisjoint(at):
        _copy_later(req, x, db)
    types.init_state(x)
    x.km_seq = seq
    x.replay_maxdiff = db.aevent_rseqth
    x.replay_maxage = db.aevent_maxage
    if not _REST.isdisjoint(at) or mode == X.XFRM_MODE_IPTFS:
        try:
            _construct_rest(req, x, db)
        except KernelError:
            db.discard(x)      # nothing half-built stays behind (IPComp tunnel, offload)
            raise
    return x


def _copy_first(req: XfrmRequest, x: SecurityAssociation) -> None:
    """What ``xfrm_state_construct`` copies before attaching the algorithms."""
    at = req.attrs
    if A.ENCAP in at:
        x.encap = req.attr_struct(A.ENCAP, X.XfrmEncapTmpl)
    if A.COADDR in at:
        x.coaddr = bytes(req.buf[at[A.COADDR].start:at[A.COADDR].start + 16])
    if A.SA_EXTRA_FLAGS in at:
        x.extra_flags = req.attr_u32(A.SA_EXTRA_FLAGS)


def _attach_algos(req: XfrmRequest, x: SecurityAssociation, kernel: Kernel) -> None:
    """attach_aead, attach_auth_trunc (or attach_auth), attach_crypt, attach_one_algo."""
    at = req.attrs
    if A.ALG_AEAD in at:  # attach_aead
        name, key_len, key, icv = _alg(req, A.ALG_AEAD, 72)
        desc = algos.aead_get_byname(name, icv, kernel)
        if desc is None:
            raise _not_found("AEAD")
        x.aead = _as(Algo, (desc.name, key_len, key, 0, icv))
        x.geniv = desc.geniv
    if A.ALG_AUTH_TRUNC in at:  # attach_auth_trunc
        name, key_len, key, trunc = _alg(req, A.ALG_AUTH_TRUNC, 72)
        desc = algos.aalg_get_byname(name, kernel)
        if desc is None:
            raise _not_found("AUTH_TRUNC")
        if trunc > desc.icv_fullbits:
            raise _err("Invalid length requested for truncated ICV")
        x.auth = _as(Algo, (desc.name, key_len, key, trunc or desc.icv_truncbits, 0))
    elif A.ALG_AUTH in at:  # attach_auth (only when no AUTH_TRUNC was attached)
        name, key_len, key, _ = _alg(req, A.ALG_AUTH, 68)
        desc = algos.aalg_get_byname(name, kernel)
        if desc is None:
            raise _not_found("AUTH")
        x.auth = _as(Algo, (desc.name, key_len, key, desc.icv_truncbits, 0))
    if A.ALG_CRYPT in at:  # attach_crypt
        name, key_len, key, _ = _alg(req, A.ALG_CRYPT, 68)
        desc = algos.ealg_get_byname(name, kernel)
        if desc is None:
            raise _not_found("CRYPT")
        x.enc = _as(Algo, (desc.name, key_len, key, 0, 0))
        x.geniv = desc.geniv
    if A.ALG_COMP in at:  # attach_one_algo
        name, key_len, key, _ = _alg(req, A.ALG_COMP, 68)
        desc = algos.calg_get_byname(name, kernel)
        if desc is None:
            raise _not_found("COMP")
        x.comp = _as(Algo, (desc.name, key_len, key, 0, 0))


def _copy_later(req: XfrmRequest, x: SecurityAssociation, db: StateDb) -> None:
    """What ``xfrm_state_construct`` copies after the algorithms, before
    ``__xfrm_init_state``."""
    at = req.attrs
    if A.TFCPAD in at:
        x.tfcpad = req.attr_u32(A.TFCPAD)
    if A.MARK in at:
        x.mark = struct.unpack_from("=II", req.buf, at[A.MARK].start)
    if A.SET_MARK in at:
        smask = req.attr_int(A.SET_MARK_MASK)
        x.smark = (req.attr_u32(A.SET_MARK), 0xFFFFFFFF if smask is None else smask)
    if A.IF_ID in at:
        x.if_id = req.attr_u32(A.IF_ID)
    if A.SA_DIR in at:      # NLA_U8, its range checked by the policy
        x.dir = req.buf[at[A.SA_DIR].start]
    if A.NAT_KEEPALIVE_INTERVAL in at:
        x.nat_keepalive_interval = req.attr_u32(A.NAT_KEEPALIVE_INTERVAL)
    if A.SA_PCPU in at:
        x.pcpu_num = req.attr_u32(A.SA_PCPU)
        if x.pcpu_num >= db.num_possible_cpus:
            # probed on 6.18: ERANGE here (EINVAL in ALLOCSPI), same text
            raise _err("pCPU number too big", -E.ERANGE)


# what _construct_rest reads (an IP-TFS mode state always goes there)
_REST = frozenset((A.REPLAY_ESN_VAL, A.OFFLOAD_DEV)) | _AE


def _construct_rest(req: XfrmRequest, x: SecurityAssociation, db: StateDb) -> None:
    """``xfrm_state_construct`` after ``__xfrm_init_state`` and the km seq / AE defaults,
    for a request with any of :data:`_REST` or in IP-TFS mode."""
    at = req.attrs
    # SEC_CTX: no LSM is loaded, so security_xfrm_state_alloc accepts and stores nothing.
    if A.REPLAY_ESN_VAL in at:
        ra = at[A.REPLAY_ESN_VAL]
        x.replay_esn = ReplayEsn.decode(bytes(req.buf[ra.start:ra.end]))
        x.preplay_esn = x.replay_esn.copy()
    init_replay(x)
    update_ae_params(req, x, update_esn=False)
    if A.OFFLOAD_DEV in at:
        offload.xfrm_dev_state_add(req, x, offload.user_offload(req.buf, at[A.OFFLOAD_DEV]))
    if x.mode == X.XFRM_MODE_IPTFS and kconfig.enabled(db.kernel, "XFRM_IPTFS"):
        # x->mode_cbs->user_init; without xfrm_iptfs, xfrm_get_mode_cbs finds no callbacks
        # and the SA is kept without its IP-TFS configuration
        iptfs.user_init(req, x)


def init_replay(x: SecurityAssociation) -> None:
    """``xfrm_init_replay``."""
    rs = x.replay_esn
    if rs is None:
        return
    if rs.replay_window > rs.bmp_len * 32:
        raise _err("ESN replay window is longer than the bitmap")
    if (x.flags & X.XFRM_STATE_ESN and rs.replay_window == 0
            and x.dir in (0, X.XFRM_SA_DIR_IN)):
        raise _err("ESN replay window must be > 0")
    return None


def update_ae_params(req: XfrmRequest, x: SecurityAssociation, update_esn: bool) -> None:
    """``xfrm_update_ae_params``: replay state, current lifetime and thresholds."""
    at = req.attrs
    if _AE.isdisjoint(at):
        return
    ra = at.get(A.REPLAY_ESN_VAL) if update_esn else None
    if ra is not None and x.replay_esn is not None:
        new = ReplayEsn.decode(bytes(req.buf[ra.start:ra.end]))
        x.replay_esn, x.preplay_esn = new, new.copy()
    ra = at.get(A.REPLAY_VAL)
    if ra is not None:
        x.replay = list(struct.unpack_from("=III", req.buf, ra.start))
        x.preplay = tuple(x.replay)
    ra = at.get(A.LTIME_VAL)
    if ra is not None:
        x.curlft = LifetimeCur(*struct.unpack_from("=4Q", req.buf, ra.start))
    for t, field in _AE_THRESH:
        if t in at:
            setattr(x, field, req.attr_u32(t))


def replay_verify_len(x: SecurityAssociation, req: XfrmRequest) -> None:
    """``xfrm_replay_verify_len`` for NEWAE."""
    ra = req.attrs.get(A.REPLAY_ESN_VAL)
    if x.replay_esn is None or ra is None:
        return
    bmp_len, *_rest, window = _ESN_HEAD.unpack_from(bytes(req.buf[ra.start:ra.end]).ljust(24, b"\0"))
    ulen = 24 + 4 * bmp_len
    if ra.end - ra.start < ulen:
        raise _err("ESN attribute is too short")
    if 24 + 4 * x.replay_esn.bmp_len != ulen:
        raise _err("New ESN size doesn't match the existing SA's ESN size")
    if x.replay_esn.bmp_len != bmp_len:
        raise _err("New ESN bitmap size doesn't match the existing SA's ESN bitmap")
    if window > bmp_len * 32:
        raise _err("ESN replay window is longer than the bitmap")
    return None
