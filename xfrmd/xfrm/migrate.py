"""XFRM_MSG_MIGRATE (xfrm_user.c ``xfrm_do_migrate``, xfrm_policy.c ``xfrm_migrate``).

Stage 0 checks, stage 1 finds the target policy (the SPD's), stage 2 clones every matching
SA onto the new addresses (``xfrm_state_migrate``), stage 3 moves the policy's tunnel/BEET
template endpoints (``xfrm_policy_migrate``; -ENODATA when no template matches, undoing
stage 2), stage 4 deletes the old SAs, stage 5 sends XFRM_MSG_MIGRATE (``km_migrate``) — to
the initial namespace's listeners, as the kernel does. No SA/policy events are sent.
XFRMA_OFFLOAD_DEV on a migration is not modelled (EOPNOTSUPP ``xfrmd:``).
"""
from __future__ import annotations

import errno as E
import struct

from netlink_codec import xfrm as X
from netlink_codec.netlink import NETLINK_XFRM, encode_msg, nla

from ..errors import KernelError
from ..netlink.core import Reply
from .policy import Policy
from .request import XfrmRequest
from .sadb import StateDb, addr_key
from .state import XFRM_STATE_VALID, SecurityAssociation, StateId
from .types import init_state
from .uapi import A, M

MIGRATE = struct.Struct("=16s16s16s16sBBHIHH")
# xfrm_user_migrate: old daddr, old saddr, new daddr, new saddr, proto, mode, reserved,
# reqid, old family, new family
Entry = tuple[bytes, bytes, bytes, bytes, int, int, int, int, int, int]


def _addr_any(addr: bytes, family: int) -> bool:
    return not any(addr[:4] if family == X.AF_INET else addr)


def _migrate_check(entries: list[Entry]) -> None:
    """``xfrm_migrate_check``."""
    for i, m in enumerate(entries):
        _od, _os, nd, ns, _p, _mo, _r, _rq, _of, nf = m
        if _addr_any(nd, nf) or _addr_any(ns, nf):
            raise KernelError(E.EINVAL, "Addresses in the MIGRATE attribute's list cannot be null")
        for n in entries[i + 1:]:
            if (m[0] == n[0] and m[1] == n[1] and m[4] == n[4] and m[5] == n[5]
                    and m[7] == n[7] and m[8] == n[8]):
                raise KernelError(E.EINVAL, "Entries in the MIGRATE attribute's list must be unique")


def xfrm_do_migrate(req: XfrmRequest) -> Reply:
    at = req.attrs
    ra = at.get(A.MIGRATE)
    if ra is None:
        raise KernelError(E.EINVAL, "Missing required MIGRATE attribute")
    ptype = req.policy_type()
    raw = bytes(req.buf[ra.start:ra.end])
    n = len(raw) // MIGRATE.size
    if n <= 0 or n > X.XFRM_MAX_DEPTH:
        raise KernelError(E.EINVAL, "Invalid number of SAs to migrate, must be 0 < num <= XFRM_MAX_DEPTH (6)")
    entries: list[Entry] = [MIGRATE.unpack_from(raw, i * MIGRATE.size) for i in range(n)]
    if_id = req.if_id()
    _migrate_check(entries)
    off = req.payload_offset
    sel, pdir = bytes(req.buf[off:off + 56]), req.buf[off + 60]
    if pdir >= X.XFRM_POLICY_MAX:
        raise KernelError(E.EINVAL, "Invalid policy direction")
    pol = req.xfrm.spd.migrate_find(sel, pdir, ptype, if_id)
    if pol is None:
        raise KernelError(E.ENOENT, "Target policy not found")
    if A.OFFLOAD_DEV in at:
        raise KernelError(E.EOPNOTSUPP, "xfrmd: XFRMA_OFFLOAD_DEV on XFRM_MSG_MIGRATE is not modelled")
    encap = req.attr_struct(A.ENCAP, X.XfrmEncapTmpl)
    db = req.xfrm.sad
    # stage 2: the SAs
    old_states: list[SecurityAssociation] = []
    new_states: list[SecurityAssociation] = []
    for m in entries:
        x = _state_find(db, m, if_id)
        if x is None:
            continue
        old_states.append(x)
        xc = _state_migrate(db, x, m, encap)
        if xc is None:
            for y in new_states:
                db.delete(y)
            raise KernelError(E.ENODATA)
        new_states.append(xc)
    # stage 3: the policy's templates
    if not _policy_migrate(pol, entries):
        for y in new_states:
            db.delete(y)
        raise KernelError(E.ENODATA)
    # stage 4, 5
    for x in old_states:
        db.delete(x)
    _km_migrate(req, sel, pdir, ptype, raw, n, encap)
    return req.ok()


def _state_find(db: StateDb, m: Entry, if_id: int) -> SecurityAssociation | None:
    """``xfrm_migrate_state_find``: by (old daddr, old saddr, reqid) or, without reqid, by
    the addresses alone; mode and protocol must match."""
    od, os_, _nd, _ns, proto, mode, _r, reqid, ofam, _nf = m
    for x in reversed(list(db.all.values())):
        if (x.mode != mode or x.id.proto != proto or (reqid and x.reqid != reqid)
                or (if_id and x.if_id != if_id) or x.family != ofam):
            continue
        if addr_key(x.id.daddr, ofam) == addr_key(od, ofam) and \
                addr_key(x.saddr, ofam) == addr_key(os_, ofam):
            return x
    return None


def _state_migrate(db: StateDb, x: SecurityAssociation, m: Entry,
                   encap: X.XfrmEncapTmpl | None) -> SecurityAssociation | None:
    """``xfrm_state_migrate``: clone onto the new addresses, init, insert (or add when the
    destination changed, which can collide)."""
    _od, _os, nd, ns, _p, _mo, _r, _rq, _of, nfam = m
    xc = db.alloc(x.lft)
    xc.id = StateId(nd, x.id.spi, x.id.proto)
    xc.sel = x.sel
    xc.family, xc.saddr, xc.mode, xc.reqid = nfam, ns, x.mode, x.reqid
    xc.replay_window, xc.flags = x.replay_window, x.flags
    if x.extra_flags:       # (class defaults until set: a store would give xc a __dict__)
        xc.extra_flags = x.extra_flags
    if x.smark != (0, 0):
        xc.smark = x.smark
    for f in ("aead", "auth", "enc", "comp", "coaddr", "tfcpad", "mark", "if_id", "dir",
              "pcpu_num", "nat_keepalive_interval", "replay_maxdiff", "replay_maxage",
              "mapping_maxage", "lastused", "km_seq", "geniv", "iptfs", "id_pad"):
        setattr(xc, f, getattr(x, f))
    xc.encap = encap if encap is not None else x.encap
    xc.replay, xc.preplay = list(x.replay), x.preplay
    if x.replay_esn is not None and x.preplay_esn is not None:
        xc.replay_esn, xc.preplay_esn = x.replay_esn.copy(), x.preplay_esn.copy()
    try:
        init_state(xc)
    except KernelError:
        db.discard(xc)
        return None
    xc.km_state = XFRM_STATE_VALID
    if addr_key(x.id.daddr, nfam) == addr_key(nd, nfam):
        db.insert(xc)
    elif db.add(xc) < 0:
        db.discard(xc)
        return None
    return xc


def _policy_migrate(pol: Policy, entries: list[Entry]) -> bool:
    """``xfrm_policy_migrate``: tunnel/BEET templates take the new endpoints."""
    n = 0
    tmpls = list(pol.templates)
    for i, t in enumerate(tmpls):
        for m in entries:
            od, os_, nd, ns, proto, mode, _r, reqid, ofam, nfam = m
            if t.mode != mode or t.proto != proto or (reqid and t.reqid != reqid):
                continue
            if t.mode in (X.XFRM_MODE_TUNNEL, X.XFRM_MODE_BEET):
                if addr_key(t.daddr, ofam) != addr_key(od, ofam) or \
                        addr_key(t.saddr, ofam) != addr_key(os_, ofam):
                    continue
            elif t.mode != X.XFRM_MODE_TRANSPORT:
                continue
            n += 1
            if t.mode in (X.XFRM_MODE_TUNNEL, X.XFRM_MODE_BEET):
                tmpls[i] = t = t._replace(daddr=nd, saddr=ns, family=nfam)
    if n:
        pol.templates = tuple(tmpls)
        pol.invalidate()        # the policy's cached wire form carries the templates
    return n > 0


def _km_migrate(req: XfrmRequest, sel: bytes, pdir: int, ptype: int, raw: bytes, n: int,
                encap: X.XfrmEncapTmpl | None) -> None:
    """``xfrm_send_migrate`` / ``build_migrate``: one XFRMA_MIGRATE attribute per entry, to
    XFRMNLGRP_MIGRATE of the initial namespace."""
    kernel = req.kernel
    init = kernel.namespaces.get("default")
    if init is None:
        return
    body = sel + struct.pack("=IB3x", 0, pdir)
    at = req.attrs
    if A.KMADDRESS in at:
        k = X.XfrmUserKmaddress.decode_padded(req.buf, at[A.KMADDRESS].start, at[A.KMADDRESS].end)
        body += nla(A.KMADDRESS, struct.pack("=16s16sIH2x", bytes(k.local), bytes(k.remote),
                                             k.reserved, k.family))
    if encap is not None:
        body += nla(A.ENCAP, bytes(encap))
    body += nla(A.POLICY_TYPE, struct.pack("=BxHBx", ptype, 0, 0))
    for i in range(n):
        od, os_, nd, ns, proto, mode, _res, reqid, ofam, nfam = MIGRATE.unpack_from(raw, i * MIGRATE.size)
        body += nla(A.MIGRATE, MIGRATE.pack(od, os_, nd, ns, proto, mode, 0, reqid, ofam, nfam))
    kernel.multicast(init, NETLINK_XFRM, X.XfrmNlGrp.MIGRATE, encode_msg(M.MIGRATE, 0, 0, 0, body))

