"""The Security Association Database: NEWSA, UPDSA, DELSA, GETSA and the SA dump.

The SAD itself arrives with the XFRM-database work; until then only the dump (of an empty
SAD) is answered and every SA-changing request is refused with an ``xfrmd:`` message."""
from __future__ import annotations

from netlink_codec import xfrm as X

from .user import XfrmRequest, handler, not_modelled

M = X.XfrmMsg


@handler(M.GETSA, dump=True)
def xfrm_dump_sa(req: XfrmRequest):
    states = list(reversed(req.xfrm.state_all.values()))  # newest first (state_all walk)
    return req.start_dump(s.dump_message(req.hdr.seq, req.sock.portid) for s in states)


for _t in (M.NEWSA, M.UPDSA, M.DELSA, M.GETSA, M.ALLOCSPI, M.FLUSHSA, M.NEWAE, M.GETAE,
           M.EXPIRE, M.ACQUIRE, M.MIGRATE):
    handler(_t)(not_modelled("XFRM_MSG_" + M(_t).name))
