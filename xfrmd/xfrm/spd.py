"""The Security Policy Database over netlink (xfrm_user.c): NEWPOLICY, UPDPOLICY,
DELPOLICY, GETPOLICY (by index or by selector), the policy dump, FLUSHPOLICY and user
POLEXPIRE. Validation follows ``verify_newpolicy_info``, ``verify_sec_ctx_len``,
``xfrm_policy_construct`` (policy type, ``validate_tmpl``) in the kernel's order."""
from __future__ import annotations

import errno as E
import struct

from netlink_codec import xfrm as X

from ..netlink.core import Reply
from . import offload
from .acquire import _with_families, validate_tmpl, verify_newpolicy_info
from .policy import SEL_LEN, Policy, decode_templates
from .spdb import spd
from .user import XfrmRequest, handler

A = X.Xfrma
M = X.XfrmMsg
EINVAL = -E.EINVAL
_INFO = struct.Struct("=56s8Q4QIIBBBB4x")   # xfrm_userpolicy_info (168)
_ID = struct.Struct("=56sIB")                 # xfrm_userpolicy_id


def _mark(req: XfrmRequest) -> tuple[int, int]:
    """``xfrm_mark_get``."""
    ra = req.attrs.get(A.MARK)
    return (0, 0) if ra is None else struct.unpack_from("=II", req.buf, ra.start)


def verify_policy_dir(dir: int) -> Reply | None:
    if dir not in (X.XFRM_POLICY_IN, X.XFRM_POLICY_OUT, X.XFRM_POLICY_FWD):
        return Reply(EINVAL, "Invalid policy direction")
    return None


def verify_sec_ctx_len(req: XfrmRequest) -> Reply | None:
    """``verify_sec_ctx_len``: the context's declared length must fit and add up."""
    ra = req.attrs.get(A.SEC_CTX)
    if ra is None:
        return None
    length, _, _, _, ctx_len = struct.unpack_from("=HHBBH", req.buf, ra.start)
    if length > ra.end - ra.start or length != 8 + ctx_len:
        return Reply(EINVAL, "Invalid security context length")
    return None


def policy_type(req: XfrmRequest) -> tuple[int, Reply | None]:
    """``copy_from_user_policy_type`` + ``verify_policy_type`` (this kernel has
    CONFIG_XFRM_SUB_POLICY: MAIN and SUB)."""
    ra = req.attrs.get(A.POLICY_TYPE)
    t = X.XFRM_POLICY_TYPE_MAIN if ra is None else req.buf[ra.start]
    if t not in (X.XFRM_POLICY_TYPE_MAIN, X.XFRM_POLICY_TYPE_SUB):
        return t, Reply(EINVAL, "Invalid policy type")
    return t, None


def _if_id(req: XfrmRequest) -> int:
    return req.attr_int(A.IF_ID) or 0


def _echoing(reply: Reply, echo) -> Reply:
    if echo is not None and reply.echo is None:
        reply.echo = echo
    return reply


@handler(M.NEWPOLICY)
@handler(M.UPDPOLICY)
def xfrm_add_policy(req: XfrmRequest) -> Reply:
    off = req.payload_offset
    f = _INFO.unpack_from(req.buf, off)
    sel, lft, priority, index, dir, action, flags = f[0], f[1:9], f[13], f[14], f[15], \
        f[16], f[17]
    bad = verify_newpolicy_info(bytes(req.buf[off:off + _INFO.size]))
    if bad is not None:
        return Reply(*bad)
    bad = verify_sec_ctx_len(req)
    if bad is not None:
        return bad
    # xfrm_policy_construct
    ptype, bad = policy_type(req)
    if bad is not None:
        return bad
    ra = req.attrs.get(A.TMPL)
    tmpls = [] if ra is None else decode_templates(bytes(req.buf[ra.start:ra.end]))
    filled = [i for i, t in enumerate(tmpls) if not t.family]
    bad = validate_tmpl(tmpls, int.from_bytes(sel[40:42], "little"), dir)
    # validate_tmpl wrote the families into the request: every later error echoes that too
    echo = _with_families(req.buf, ra.start, tmpls, filled) if filled else None
    if bad is not None:
        return _echoing(Reply(*bad), echo)
    pol = Policy(sel, lft, priority, index, action, flags, ptype, tmpls, _mark(req),
                 _if_id(req), dir)
    xuo = req.attr_struct(A.OFFLOAD_DEV, X.XfrmUserOffload)
    if xuo is not None:
        bad = offload.xfrm_dev_policy_add(req, pol, xuo, dir)
        if bad is not None:
            return _echoing(bad, echo)
    db = spd(req.xfrm)
    err = db.insert(pol, excl=req.hdr.type == M.NEWPOLICY)
    if err:
        if pol.xdo is not None:
            offload.xfrm_dev_policy_delete(pol)
            offload.xfrm_dev_policy_free(pol)
        return _echoing(Reply(err), echo)
    db.km_policy_notify(pol, req.hdr.type, req.hdr.seq, req.hdr.pid)
    return req.ok()


def _lookup(req: XfrmRequest, sel: bytes, index: int, dir: int, ptype: int):
    """The GET/DEL/POLEXPIRE lookup: by index when one is given, else by selector."""
    db = spd(req.xfrm)
    if index:
        return db.byid(_mark(req), _if_id(req), ptype, dir, index), None
    bad = verify_sec_ctx_len(req)
    if bad is not None:
        return None, bad
    return db.bysel(_mark(req), _if_id(req), ptype, dir, sel), None


@handler(M.GETPOLICY)
@handler(M.DELPOLICY)
def xfrm_get_policy(req: XfrmRequest) -> Reply:
    sel, index, dir = _ID.unpack_from(req.buf, req.payload_offset)
    ptype, bad = policy_type(req)
    if bad is not None:
        return bad
    bad = verify_policy_dir(dir)
    if bad is not None:
        return bad
    pol, bad = _lookup(req, sel, index, dir, ptype)
    if bad is not None:
        return bad
    if pol is None:
        return Reply(-E.ENOENT)
    db = spd(req.xfrm)
    if req.hdr.type == M.GETPOLICY:
        # xfrm_policy_netlink: a NEWPOLICY to the requester, flags 0
        req.unicast(pol.dump_message(req.hdr.seq, req.sock.portid, 0))
        return req.ok()
    db.delete(pol)
    db.km_policy_notify(pol, M.DELPOLICY, req.hdr.seq, req.hdr.pid, byid=bool(index))
    return req.ok()


@handler(M.GETPOLICY, dump=True)
def xfrm_dump_policy(req: XfrmRequest):
    db = spd(req.xfrm)
    seq, portid = req.hdr.seq, req.sock.portid
    return req.start_dump(p.dump_message(seq, portid) for p in db.walk_newest_first())


@handler(M.FLUSHPOLICY)
def xfrm_flush_policy(req: XfrmRequest) -> Reply:
    ptype, bad = policy_type(req)
    if bad is not None:
        return bad
    db = spd(req.xfrm)
    if not db.flush(ptype):
        return req.ok()          # -ESRCH from an empty table is not an error
    db.km_flush_notify(ptype, req.hdr.seq, req.hdr.pid)
    return req.ok()


@handler(M.POLEXPIRE)
def xfrm_add_pol_expire(req: XfrmRequest) -> Reply:
    f = _INFO.unpack_from(req.buf, req.payload_offset)
    sel, index, dir = f[0], f[14], f[15]
    hard = req.buf[req.payload_offset + _INFO.size]
    ptype, bad = policy_type(req)
    if bad is not None:
        return bad
    bad = verify_policy_dir(dir)
    if bad is not None:
        return bad
    pol, bad = _lookup(req, sel, index, dir, ptype)
    if bad is not None:
        return bad
    if pol is None:
        return Reply(-E.ENOENT)
    if pol.dead:
        return req.ok()
    db = spd(req.xfrm)
    if hard:
        db.delete(pol)
    db.km_policy_expired(pol, bool(hard), req.hdr.pid)
    return req.ok()
