"""The Security Policy Database: NEWPOLICY, UPDPOLICY, DELPOLICY, GETPOLICY, FLUSHPOLICY,
POLEXPIRE and the policy dump (xfrm_user.c / xfrm_policy.c)."""
from __future__ import annotations

from netlink_codec import xfrm as X

from .user import XfrmRequest, handler, not_modelled

M = X.XfrmMsg


@handler(M.GETPOLICY, dump=True)
def xfrm_dump_policy(req: XfrmRequest):
    policies = list(reversed(req.xfrm.policy_all.values()))  # newest first (policy_all walk)
    return req.start_dump(p.dump_message(req.hdr.seq, req.sock.portid) for p in policies)


for _t in (M.NEWPOLICY, M.UPDPOLICY, M.DELPOLICY, M.GETPOLICY, M.FLUSHPOLICY, M.POLEXPIRE):
    handler(_t)(not_modelled("XFRM_MSG_" + M(_t).name))
