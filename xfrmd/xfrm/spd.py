"""The Security Policy Database over netlink (xfrm_user.c): NEWPOLICY, UPDPOLICY,
DELPOLICY, GETPOLICY (by index or by selector), the policy dump, FLUSHPOLICY and user
POLEXPIRE. Validation follows ``verify_newpolicy_info``, ``verify_sec_ctx_len``,
``xfrm_policy_construct`` (policy type, ``validate_tmpl``) in the kernel's order; the
checks are shared with XFRM_MSG_ACQUIRE (:mod:`xfrmd.xfrm.acquire`)."""
from __future__ import annotations

import errno as E
import struct
from typing import Iterator

from netlink_codec import xfrm as X
from netlink_codec.netlink import RawAttr

from ..errors import KernelError
from ..netlink.core import Reply
from . import offload
from .policy import Policy, Template, decode_templates
from .request import XfrmRequest
from .uapi import A, M

_INFO = struct.Struct("=56s8Q4QIIBBBB4x")   # xfrm_userpolicy_info (168)
_ID = struct.Struct("=56sIB")                 # xfrm_userpolicy_id
_SEL_FAMILY = struct.Struct("=HBB")          # family, prefixlen_d, prefixlen_s
_INFO_END = struct.Struct("=IBBBB")           # index, dir, action, flags, share
_NO_LIMITS = (X.XFRM_INF,) * 4 + (0,) * 4     # xfrm_lifetime_cfg as `ip` sends it


# -- the policy checks of xfrm_user.c --------------------------------------------------------

def verify_newpolicy_info(info: bytes | bytearray, off: int = 0) -> None:
    """``verify_newpolicy_info`` on the xfrm_userpolicy_info at ``off`` in ``info``."""
    fam, plen_d, plen_s = _SEL_FAMILY.unpack_from(info, off + 40)
    index, pdir, action, _flags, share = _INFO_END.unpack_from(info, off + 156)
    if share > X.XFRM_SHARE_UNIQUE:
        raise KernelError(E.EINVAL, "Invalid policy share")
    if action not in (X.XFRM_POLICY_ALLOW, X.XFRM_POLICY_BLOCK):
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
_TMPL_PROTOS = {X.IPPROTO_ESP, X.IPPROTO_AH, X.IPPROTO_COMP, X.IPPROTO_ROUTING,
                X.IPPROTO_DSTOPTS}


def validate_tmpl(tmpls: list[Template], family: int, pdir: int) -> None:
    """``validate_tmpl``; fills a template family of 0 with the policy's, as the kernel
    does in the request itself."""
    if len(tmpls) > X.XFRM_MAX_DEPTH:
        raise KernelError(E.EINVAL, "Template count must be <= XFRM_MAX_DEPTH (6)")
    prev = family
    for t in tmpls:
        if not t.family:
            t.family = family
        if t.mode in (X.XFRM_MODE_TUNNEL, X.XFRM_MODE_BEET):
            if t.optional and pdir == X.XFRM_POLICY_OUT:
                raise KernelError(E.EINVAL, "Mode in optional template not allowed in outbound policy")
        elif t.mode != X.XFRM_MODE_IPTFS and t.family != prev:
            raise KernelError(E.EINVAL, "Mode in template doesn't support a family change")
        if t.mode >= X.XFRM_MODE_MAX:
            raise KernelError(E.EINVAL, "Mode in template must be < XFRM_MODE_MAX (6)")
        prev = t.family
        if t.family not in (X.AF_INET, X.AF_INET6):
            raise KernelError(E.EINVAL, "Invalid family in template")
        if t.proto not in _TMPL_PROTOS:
            raise KernelError(E.EINVAL, "Invalid XFRM protocol in template")


def user_templates(req: XfrmRequest, family: int,
                   pdir: int) -> tuple[list[Template], bytes | None]:
    """XFRMA_TMPL through ``validate_tmpl``: (templates, echo). ``echo`` is the request
    with the template families validate_tmpl wrote into it (None if it wrote none): every
    error of the request from there on echoes that, this one's included."""
    ra = req.attrs.get(A.TMPL)
    if ra is None:
        return [], None
    tmpls = decode_templates(bytes(req.buf[ra.start:ra.end]))
    filled = [i for i, t in enumerate(tmpls) if not t.family]
    try:
        validate_tmpl(tmpls, family, pdir)
    except KernelError as e:
        e.echo = _with_families(req.buf, ra, tmpls, filled)
        raise
    return tmpls, _with_families(req.buf, ra, tmpls, filled) if filled else None


def _with_families(buf: bytes | bytearray, ra: RawAttr, tmpls: list[Template],
                   filled: list[int]) -> bytes | None:
    """The request with the template families validate_tmpl wrote into it."""
    if not filled:
        return None
    out = bytearray(buf)
    for i in filled:
        struct.pack_into("=H", out, ra.start + 64 * i + 24, tmpls[i].family)
    return bytes(out)


def verify_policy_dir(dir: int) -> None:
    if dir not in (X.XFRM_POLICY_IN, X.XFRM_POLICY_OUT, X.XFRM_POLICY_FWD):
        raise KernelError(E.EINVAL, "Invalid policy direction")


# -- handlers ---------------------------------------------------------------------------------

def xfrm_add_policy(req: XfrmRequest) -> Reply:
    off = req.payload_offset
    f = _INFO.unpack_from(req.buf, off)
    sel, lft, priority, index, dir, action, flags = f[0], f[1:9], f[13], f[14], f[15], \
        f[16], f[17]
    if lft == _NO_LIMITS:
        lft = _NO_LIMITS          # shared: XFRM_INF is an int object of its own each time
    verify_newpolicy_info(req.buf, off)
    req.verify_sec_ctx_len()
    # xfrm_policy_construct
    ptype = req.policy_type()
    echo = None
    try:
        tmpls, echo = user_templates(req, int.from_bytes(sel[40:42], "little"), dir)
        pol = Policy(sel, lft, priority, index, action, flags, ptype, tmpls, req.mark(),
                     req.if_id(), dir)
        xuo = req.attr_struct(A.OFFLOAD_DEV, X.XfrmUserOffload)
        if xuo is not None:
            offload.xfrm_dev_policy_add(req, pol, xuo, dir)
        db = req.xfrm.spd
        err = db.insert(pol, excl=req.hdr.type == M.NEWPOLICY)
        if err:
            offload.xfrm_dev_policy_release(pol)
            raise KernelError(err)
    except KernelError as e:
        if echo is not None and e.echo is None:
            e.echo = echo
        raise
    db.km_policy_notify(pol, req.hdr.type, req.hdr.seq, req.hdr.pid)
    return req.ok()


def _lookup(req: XfrmRequest, sel: bytes, index: int, dir: int) -> Policy:
    """The GET/DEL/POLEXPIRE lookup, after the policy type and direction checks: by index
    when one is given, else by selector. ENOENT when there is none."""
    ptype = req.policy_type()
    verify_policy_dir(dir)
    db = req.xfrm.spd
    if index:
        pol = db.byid(req.mark(), req.if_id(), ptype, dir, index)
    else:
        req.verify_sec_ctx_len()
        pol = db.bysel(req.mark(), req.if_id(), ptype, dir, sel)
    if pol is None:
        raise KernelError(E.ENOENT)
    return pol


def xfrm_get_policy(req: XfrmRequest) -> Reply:
    sel, index, dir = _ID.unpack_from(req.buf, req.payload_offset)
    pol = _lookup(req, sel, index, dir)
    db = req.xfrm.spd
    if req.hdr.type == M.GETPOLICY:
        # xfrm_policy_netlink: a NEWPOLICY to the requester, flags 0
        req.unicast(pol.dump_message(req.hdr.seq, req.sock.portid, 0))
        return req.ok()
    db.delete(pol)
    db.km_policy_notify(pol, M.DELPOLICY, req.hdr.seq, req.hdr.pid, byid=bool(index))
    return req.ok()


def xfrm_dump_policy(req: XfrmRequest) -> object:
    db = req.xfrm.spd
    seq, portid = req.hdr.seq, req.sock.portid
    messages: Iterator[bytes] = (p.dump_message(seq, portid) for p in db.walk_newest_first())
    return req.start_dump(messages)


def xfrm_flush_policy(req: XfrmRequest) -> Reply:
    ptype = req.policy_type()
    db = req.xfrm.spd
    if not db.flush(ptype):
        return req.ok()          # -ESRCH from an empty table is not an error
    db.km_flush_notify(ptype, req.hdr.seq, req.hdr.pid)
    return req.ok()


def xfrm_add_pol_expire(req: XfrmRequest) -> Reply:
    f = _INFO.unpack_from(req.buf, req.payload_offset)
    sel, index, dir = f[0], f[14], f[15]
    hard = req.buf[req.payload_offset + _INFO.size]
    pol = _lookup(req, sel, index, dir)
    if pol.dead:
        return req.ok()
    db = req.xfrm.spd
    if hard:
        db.delete(pol)
    db.km_policy_expired(pol, bool(hard), req.hdr.pid)
    return req.ok()
