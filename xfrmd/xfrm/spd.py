"""The Security Policy Database over netlink (xfrm_user.c): NEWPOLICY, UPDPOLICY,
DELPOLICY, GETPOLICY (by index or by selector), the policy dump, FLUSHPOLICY and user
POLEXPIRE. Validation follows ``verify_newpolicy_info``, ``verify_sec_ctx_len``,
``xfrm_policy_construct`` (policy type, ``validate_tmpl``) in the kernel's order; the
checks are shared with XFRM_MSG_ACQUIRE (:mod:`xfrmd.xfrm.acquire`)."""
from __future__ import annotations

import errno as E
import struct
from itertools import repeat
from typing import Callable, Iterator

from devices.xfrmdev import OffloadError
from netlink_codec import cext
from netlink_codec import xfrm as X
from netlink_codec.netlink import NETLINK_XFRM as _NETLINK_XFRM
from netlink_codec.netlink import RawAttr

from ..cext import source
from ..clock import SystemClock
from ..errors import KernelError
from ..netlink.core import OK, Reply
from . import offload
from .addrcache import SEEN, shared
from .policy import (_ANY, NO_LIMITS, SEL_LEN, TMPL, USERPOLICY_INFO, Policy, Template,
                     dump_message, make_template, policy_key)
from .request import XfrmRequest
from .state import LIFETIME_CFG
from .uapi import A, G, M

_ID = struct.Struct("=56sIB")                 # xfrm_userpolicy_id
_SEL_FAMILY = struct.Struct("=HBB")          # family, prefixlen_d, prefixlen_s
_INFO_END = struct.Struct("=IBBBB")           # index, dir, action, flags, share
_NO_MARK = (0, 0)
# xfrm_userpolicy_info as xfrm_add_policy reads it: selector family, prefix lengths, lft as
# bytes (unpacked only when it is not NO_LIMITS), priority, index, dir, action, flags, share;
# the selector itself is taken as bytes, curlft is ignored
_INFO_FIELDS = struct.Struct("=40xHBB12x64s32xIIBBBB4x")
_NO_LIMITS_RAW = LIFETIME_CFG.pack(*NO_LIMITS)


# -- the policy checks of xfrm_user.c --------------------------------------------------------

def verify_newpolicy_info(info: bytes | bytearray, off: int = 0) -> None:
    """``verify_newpolicy_info`` on the xfrm_userpolicy_info at ``off`` in ``info``."""
    fam, plen_d, plen_s = _SEL_FAMILY.unpack_from(info, off + 40)
    index, pdir, action, _flags, share = _INFO_END.unpack_from(info, off + 156)
    _verify_info(fam, plen_d, plen_s, index, pdir, action, share)


def _verify_info(fam: int, plen_d: int, plen_s: int, index: int, pdir: int, action: int,
                 share: int) -> None:
    """``verify_newpolicy_info`` on the fields it reads, in its order."""
    if share > X.XFRM_SHARE_UNIQUE:
        raise KernelError(E.EINVAL, "Invalid policy share")
    if action != X.XFRM_POLICY_ALLOW and action != X.XFRM_POLICY_BLOCK:
        raise KernelError(E.EINVAL, "Invalid policy action")
    if fam == X.AF_INET:
        if plen_d > 32 or plen_s > 32:
            raise KernelError(E.EINVAL, "Invalid prefix length in selector (must be <= 32 for IPv4)")
    elif fam == X.AF_INET6:
        if plen_d > 128 or plen_s > 128:
            raise KernelError(E.EINVAL, "Invalid prefix length in selector (must be <= 128 for IPv6)")
    else:
        raise KernelError(E.EINVAL, "Invalid selector family")
    if pdir > X.XFRM_POLICY_FWD:
        raise KernelError(E.EINVAL, "Invalid policy direction")
    if index and (index & 7) != pdir:   # xfrm_policy_id2dir
        raise KernelError(E.EINVAL, "Policy index doesn't match direction")


# xfrm_id_proto_valid: IPSEC_PROTO_ANY is not a template protocol (probed on 6.18)
_TMPL_PROTOS = frozenset((X.IPPROTO_ESP, X.IPPROTO_AH, X.IPPROTO_COMP, X.IPPROTO_ROUTING,
                          X.IPPROTO_DSTOPTS))
_TUNNEL, _BEET, _IPTFS = X.XFRM_MODE_TUNNEL, X.XFRM_MODE_BEET, X.XFRM_MODE_IPTFS
TMPL_SIZE = TMPL.size
_unpack_tmpl = TMPL.unpack_from
_INET, _INET6, _OUT = X.AF_INET, X.AF_INET6, X.XFRM_POLICY_OUT


def validate_tmpl(buf: bytes | bytearray, start: int, end: int, family: int,
                  pdir: int) -> tuple[list[Template], list[int]]:
    """``validate_tmpl`` over the XFRMA_TMPL payload ``buf[start:end]`` (its whole templates,
    as ``copy_templates`` takes them), decoding each as it checks it: (the templates, the
    positions of those whose family of 0 it filled with the policy's, as the kernel does in
    the request itself). An error carries the positions filled so far (``_Invalid``)."""
    end -= (end - start) % TMPL_SIZE
    if end - start > X.XFRM_MAX_DEPTH * TMPL_SIZE:
        raise KernelError(E.EINVAL, "Template count must be <= XFRM_MAX_DEPTH (6)")
    tmpls: list[Template] = []
    filled: list[int] = []
    prev = family
    for o in range(start, end, TMPL_SIZE):
        d, spi, proto, tfam, s, reqid, mode, share, opt, aa, ea, ca = _unpack_tmpl(buf, o)
        if not tfam:
            tfam = family
            filled.append(len(tmpls))
        tmpls.append(make_template(d, spi, proto, tfam, s, reqid, mode, share, opt, aa, ea, ca))
        if mode == _TUNNEL or mode == _BEET:
            if opt and pdir == _OUT:
                raise _Invalid("Mode in optional template not allowed in outbound policy", filled)
        elif mode != _IPTFS and tfam != prev:
            raise _Invalid("Mode in template doesn't support a family change", filled)
        if mode >= X.XFRM_MODE_MAX:
            raise _Invalid("Mode in template must be < XFRM_MODE_MAX (6)", filled)
        prev = tfam
        if tfam != _INET and tfam != _INET6:
            raise _Invalid("Invalid family in template", filled)
        if proto not in _TMPL_PROTOS:
            raise _Invalid("Invalid XFRM protocol in template", filled)
    return tmpls, filled


class _Invalid(KernelError):
    """A ``validate_tmpl`` error (EINVAL), with the templates whose family it had filled."""

    def __init__(self, msg: str, filled: list[int]):
        super().__init__(E.EINVAL, msg)
        self.filled = filled


def user_templates(req: XfrmRequest, family: int,
                   pdir: int) -> tuple[tuple[Template, ...], bytes | None]:
    """XFRMA_TMPL through ``validate_tmpl``: (templates, echo). ``echo`` is the request
    with the template families validate_tmpl wrote into it (None if it wrote none): every
    error of the request from there on echoes that, this one's included."""
    ra = req.attrs.get(A.TMPL)
    if ra is None:
        return (), None
    try:
        tmpls, filled = validate_tmpl(req.buf, ra.start, ra.end, family, pdir)
    except _Invalid as e:
        e.echo = _with_families(req.buf, ra, family, e.filled)
        raise
    return tuple(tmpls), _with_families(req.buf, ra, family, filled) if filled else None


def _with_families(buf: bytes | bytearray, ra: RawAttr, family: int,
                   filled: list[int]) -> bytes | None:
    """The request with the template families validate_tmpl wrote into it."""
    if not filled:
        return None
    out = bytearray(buf)
    for i in filled:
        struct.pack_into("=H", out, ra.start + TMPL_SIZE * i + 24, family)
    return bytes(out)


def verify_policy_dir(dir: int) -> None:
    if dir not in (X.XFRM_POLICY_IN, X.XFRM_POLICY_OUT, X.XFRM_POLICY_FWD):
        raise KernelError(E.EINVAL, "Invalid policy direction")


# -- handlers ---------------------------------------------------------------------------------

def xfrm_add_policy(req: XfrmRequest) -> Reply:
    """``xfrm_add_policy`` (NEWPOLICY, UPDPOLICY). The C half (``_polfast.c``) makes the
    policy in one call when the checks surely accept the request (templates and an offload
    device, as `ip` and charon send), binds its offload, and links it in the common case of
    ``xfrm_policy_insert``; every other request, and every error, takes :func:`add_policy`
    (the reference), every other insert :meth:`PolicyDb.insert`."""
    hdr = req.hdr
    ns = req.sock.netns
    pol = _newpolicy(req.buf, hdr.offset + 16, req.attrs, ns)    # req.payload_offset
    if pol is None:
        return add_policy(req)
    xdo = pol.xdo
    if xdo is not None:
        # xfrm_dev_policy_add: its checks passed and the binding made in C, the driver's op
        dev = xdo.dev
        ops = dev.xfrmdev_ops
        try:
            ops.xdo_dev_policy_add(dev, pol)
        except (OffloadError, KernelError) as e:
            offload.xfrm_dev_policy_refused(pol, ops, e)
    db = ns.xfrm.spd
    err = _insert(db, pol)
    if err is None:
        err = db.insert(pol, hdr.type == _NEWPOLICY)
        if err:
            offload.xfrm_dev_policy_release(pol)
            raise KernelError(err)
    # km_policy_notify: its gate here (netlink_has_listeners, inlined), then the notification
    # without it: no call without a listener
    if ns.listeners.get(_NETLINK_XFRM, 0) & _POLICY_BIT:
        db.xfrm_notify_policy(pol, hdr.type, hdr.seq, hdr.pid)
    return req.warning or OK          # req.ok(), inline


def add_policy(req: XfrmRequest) -> Reply:
    """``xfrm_add_policy`` in Python: ``verify_newpolicy_info``, ``xfrm_policy_construct``,
    the offload, ``xfrm_policy_insert``, the notification."""
    buf, off = req.buf, req.payload_offset
    fam, plen_d, plen_s, lft_raw, priority, index, dir, action, flags, share = \
        _INFO_FIELDS.unpack_from(buf, off)
    _verify_info(fam, plen_d, plen_s, index, dir, action, share)
    attrs = req.attrs
    ra = attrs.get(A.TMPL)
    if len(attrs) == (ra is not None):
        # templates or nothing: no security context, the main type, no mark, if_id, offload
        ptype, mark, if_id, xuo = X.XFRM_POLICY_TYPE_MAIN, _NO_MARK, 0, None
    else:
        # each read only when its attribute is there (charon's offloaded policies carry
        # XFRMA_OFFLOAD_DEV alone beside the template)
        if A.SEC_CTX in attrs:
            req.verify_sec_ctx_len()
        # xfrm_policy_construct from here
        ptype = req.policy_type() if A.POLICY_TYPE in attrs else X.XFRM_POLICY_TYPE_MAIN
        mark = req.mark() if A.MARK in attrs else _NO_MARK
        if_id = req.if_id() if A.IF_ID in attrs else 0
        ra_off = attrs.get(A.OFFLOAD_DEV)
        xuo = None if ra_off is None else offload.user_offload(buf, ra_off)
    # no limits (as `ip` sends it): the shared tuple, not 8 ints of its own
    lft = NO_LIMITS if lft_raw == _NO_LIMITS_RAW else LIFETIME_CFG.unpack(lft_raw)
    echo = None
    try:
        if ra is None:
            tmpls: tuple[Template, ...] = ()
        else:
            tmpls, echo = user_templates(req, fam, dir)
        key = policy_key(buf[off:off + SEL_LEN], dir, ptype, if_id, mark[0], mark[1])
        pol = Policy(key, lft, priority, index, action, flags, ptype, tmpls, mark, if_id, dir,
                     fam)
        if xuo is not None:
            offload.xfrm_dev_policy_add(req, pol, xuo, dir)
        db = req.xfrm.spd
        hdr = req.hdr
        err = db.insert(pol, excl=hdr.type == M.NEWPOLICY)
        if err:
            offload.xfrm_dev_policy_release(pol)
            raise KernelError(err)
    except KernelError as e:
        if echo is not None and e.echo is None:
            e.echo = echo
        raise
    db.km_policy_notify(pol, hdr.type, hdr.seq, hdr.pid)
    return req.ok()


# the C half of xfrm_add_policy (None: the Python path, XFRMD_PURE_PYTHON or not built)
_polfast = cext.load("xfrmd.xfrm._polfast", source("xfrmd.xfrm._polfast"))
# (table, sel, dir) -> the key, (table, key) -> None: _polfast.ahead, ahead_entry
_ahead: Callable[[dict[bytes, Policy], bytes, int], bytes | None] | None = None
_ahead_entry: Callable[[dict[bytes, Policy], bytes], None] | None = None
if _polfast is None:
    xfrm_add_policy = add_policy    # noqa: F811 (the dispatch table takes the Python one)
else:
    # the by-selector lookup's slot and entry fetched while the checks run (_polfast.c)
    _ahead, _ahead_entry = _polfast.ahead, _polfast.ahead_entry
    # True: policies are made without the Python frame of Policy.__init__ (_polfast.c)
    _NO_INIT_FRAME = _polfast.setup(Policy, Template, NO_LIMITS, _NO_MARK, _ANY, SEEN, shared)
    _newpolicy = _polfast.newpolicy
    _insert = _polfast.insert
    # True: offloaded policies are bound in C (_polfast.c)
    _DEV_IN_C = _polfast.setup_offload(offload.XfrmDevOffload)
    # True: the server's clock is read without the Python frame of its wall() (_polfast.c)
    _WALL_IN_C = _polfast.setup_clock(SystemClock)
_NEWPOLICY = int(M.NEWPOLICY)
_POLICY_BIT = 1 << (G.POLICY - 1)      # the group's bit in NetNamespace.listeners


def _lookup(req: XfrmRequest, sel: bytes, index: int, dir: int,
            key: bytes | None = None) -> Policy:
    """The GET/DEL/POLEXPIRE lookup, after the policy type and direction checks: by index
    when one is given, else by selector. ENOENT when there is none. ``key``: the
    by-selector key of a request without attributes, made by ``_polfast.ahead`` (which
    fetched its slots in the table), or None."""
    ptype = req.policy_type()
    verify_policy_dir(dir)
    db = req.xfrm.spd
    if key is not None and _ahead_entry is not None:
        _ahead_entry(db.by_selector, key)      # the entries the slots name, while checks run
    if index:
        pol = db.byid(req.mark(), req.if_id(), ptype, dir, index)
    else:
        req.verify_sec_ctx_len()
        if key is not None and not req.attrs:
            # main type, no mark, no if_id: the key made ahead is policy_key's
            pol = db.by_selector.get(key)
        else:
            pol = db.bysel(req.mark(), req.if_id(), ptype, dir, sel)
    if pol is None:
        raise KernelError(E.ENOENT)
    return pol


def xfrm_get_policy(req: XfrmRequest) -> Reply:
    sel, index, dir = _ID.unpack_from(req.buf, req.payload_offset)
    db = req.xfrm.spd
    # by selector: the table's slot fetched now, its entry in _lookup, each while Python runs
    # the request's checks (at a million policies, two cold lines not waited for one after
    # the other; docs/performance.md, "The SPD's 1M curve (session 12)")
    key = None if index or _ahead is None else _ahead(db.by_selector, sel, dir)
    pol = _lookup(req, sel, index, dir, key)
    if req.hdr.type == M.GETPOLICY:
        # xfrm_policy_netlink: a NEWPOLICY to the requester, flags 0
        req.unicast(dump_message(pol, req.hdr.seq, req.sock.portid, 0))
        return req.ok()
    db.delete(pol)
    db.km_policy_notify(pol, M.DELPOLICY, req.hdr.seq, req.hdr.pid, byid=bool(index))
    return req.ok()


def xfrm_dump_policy(req: XfrmRequest) -> object:
    db = req.xfrm.spd
    seq, portid = req.hdr.seq, req.sock.portid
    # map: no Python frame per policy between the dump step and the C builder
    messages: Iterator[bytes] = map(dump_message, db.walk_newest_first(), repeat(seq), repeat(portid))
    return req.start_dump(messages)


def xfrm_flush_policy(req: XfrmRequest) -> Reply:
    ptype = req.policy_type()
    db = req.xfrm.spd
    if not db.flush(ptype):
        return req.ok()          # -ESRCH from an empty table is not an error
    db.km_flush_notify(ptype, req.hdr.seq, req.hdr.pid)
    return req.ok()


def xfrm_add_pol_expire(req: XfrmRequest) -> Reply:
    f = USERPOLICY_INFO.unpack_from(req.buf, req.payload_offset)
    sel, index, dir = f[0], f[14], f[15]
    hard = req.buf[req.payload_offset + USERPOLICY_INFO.size]
    pol = _lookup(req, sel, index, dir)
    if pol.dead:
        return req.ok()
    db = req.xfrm.spd
    if hard:
        db.delete(pol)
    db.km_policy_expired(pol, bool(hard), req.hdr.pid)
    return req.ok()
