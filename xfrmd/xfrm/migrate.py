"""XFRM_MSG_MIGRATE (xfrm_user.c ``xfrm_do_migrate``, xfrm_policy.c ``xfrm_migrate``): every
check the kernel makes before it moves anything is reproduced, so malformed requests and
requests without a target policy get the kernel's answer; an actual migration (policy found)
is not modelled and answers EOPNOTSUPP with an ``xfrmd:`` message."""
from __future__ import annotations

import errno as E
import struct

from netlink_codec import xfrm as X

from ..netlink.core import Reply
from .state import A, M

MIGRATE = struct.Struct("=16s16s16s16sBBHIHH")
IPSEC_ULPROTO_ANY = 255


def _addr_any(addr: bytes, family: int) -> bool:
    return not any(addr[:4] if family == X.AF_INET else addr)


def _migrate_check(entries: list[tuple]) -> str | None:
    """``xfrm_migrate_check``."""
    for i, m in enumerate(entries):
        _od, _os, nd, ns, _p, _mo, _r, _rq, _of, nf = m
        if _addr_any(nd, nf) or _addr_any(ns, nf):
            return "Addresses in the MIGRATE attribute's list cannot be null"
        for n in entries[i + 1:]:
            if (m[0] == n[0] and m[1] == n[1] and m[4] == n[4] and m[5] == n[5]
                    and m[7] == n[7] and m[8] == n[8]):
                return "Entries in the MIGRATE attribute's list must be unique"
    return None


def _selector_match(cmp: bytes, tgt: bytes) -> bool:
    """``xfrm_migrate_selector_match``."""
    if cmp[44] == IPSEC_ULPROTO_ANY:
        fam = int.from_bytes(cmp[40:42], "little")
        w = 4 if fam == X.AF_INET else 16
        return (tgt[40:42] == cmp[40:42] and tgt[0:w] == cmp[0:w] and tgt[16:16 + w] == cmp[16:16 + w]
                and tgt[42:44] == cmp[42:44])
    return tgt == cmp


def _policy_find(ns, sel: bytes, pdir: int, ptype: int, if_id: int):
    """``xfrm_migrate_policy_find``: any live policy of that direction and type whose
    selector matches (the kernel then prefers the lowest priority; only found/not found
    matters here)."""
    for pol in getattr(ns.xfrm, "policy_all", {}).values():
        if (getattr(pol, "dir", None) == pdir and pol.type == ptype
                and (if_id == 0 or pol.if_id == if_id) and not getattr(pol, "dead", False)
                and _selector_match(sel, bytes(pol.sel))):
            return pol
    return None


def xfrm_do_migrate(req) -> Reply:
    at = req.attrs
    ra = at.get(A.MIGRATE)
    if ra is None:
        return Reply(-E.EINVAL, "Missing required MIGRATE attribute")
    ptype = X.XFRM_POLICY_TYPE_MAIN
    if A.POLICY_TYPE in at:
        ptype = req.buf[at[A.POLICY_TYPE].start]
        if ptype not in (X.XFRM_POLICY_TYPE_MAIN, X.XFRM_POLICY_TYPE_SUB):
            return Reply(-E.EINVAL, "Invalid policy type")
    raw = bytes(req.buf[ra.start:ra.end])
    n = len(raw) // MIGRATE.size
    if n <= 0 or n > X.XFRM_MAX_DEPTH:
        return Reply(-E.EINVAL, "Invalid number of SAs to migrate, must be 0 < num <= XFRM_MAX_DEPTH (6)")
    entries = [MIGRATE.unpack_from(raw, i * MIGRATE.size) for i in range(n)]
    if_id = req.attr_int(A.IF_ID) or 0
    bad = _migrate_check(entries)
    if bad is not None:
        return Reply(-E.EINVAL, bad)
    off = req.payload_offset
    sel, pdir = bytes(req.buf[off:off + 56]), req.buf[off + 60]
    if pdir >= X.XFRM_POLICY_MAX:
        return Reply(-E.EINVAL, "Invalid policy direction")
    if _policy_find(req.netns, sel, pdir, ptype, if_id) is None:
        return Reply(-E.ENOENT, "Target policy not found")
    return Reply(-E.EOPNOTSUPP, "xfrmd: XFRM_MSG_MIGRATE of an existing policy and its SAs "
                                "is not modelled")


def _register() -> None:
    from .user import handler
    handler(M.MIGRATE)(xfrm_do_migrate)


_register()
