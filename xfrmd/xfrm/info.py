"""SAD/SPD information and default policies: GETSADINFO, GETSPDINFO, NEWSPDINFO,
SETDEFAULT, GETDEFAULT (xfrm_user.c ``xfrm_get_sadinfo`` … ``xfrm_get_default``)."""
from __future__ import annotations

import errno as E
import struct

from netlink_codec import xfrm as X
from netlink_codec.netlink import nla, nla_u32

from ..errors import KernelError
from ..netlink.core import Reply
from .request import XfrmRequest

M = X.XfrmMsg


def _request_flags(req: XfrmRequest) -> int:
    return int(struct.unpack_from("=I", req.buf, req.payload_offset)[0])


def xfrm_get_sadinfo(req: XfrmRequest) -> Reply:
    x = req.xfrm
    hinfo = X.XfrmuSadhinfo(sadhcnt=x.state_hmask + 1, sadhmcnt=x.HASHMAX)
    payload = (struct.pack("=I", _request_flags(req)) + nla_u32(X.XfrmaSad.CNT, len(x.state_all))
               + nla(X.XfrmaSad.HINFO, bytes(hinfo)))
    req.reply(M.NEWSADINFO, payload)
    return req.ok()


def xfrm_get_spdinfo(req: XfrmRequest) -> Reply:
    x = req.xfrm
    c = x.spd_counts
    info = X.XfrmuSpdinfo(incnt=c[0], outcnt=c[1], fwdcnt=c[2], inscnt=c[3], outscnt=c[4], fwdscnt=c[5])
    hinfo = X.XfrmuSpdhinfo(spdhcnt=x.policy_idx_hmask, spdhmcnt=x.HASHMAX)
    payload = (struct.pack("=I", _request_flags(req)) + nla(X.XfrmaSpd.INFO, bytes(info))
               + nla(X.XfrmaSpd.HINFO, bytes(hinfo))
               + nla(X.XfrmaSpd.IPV4_HTHRESH, bytes(X.XfrmuSpdhthresh(*x.hthresh4)))
               + nla(X.XfrmaSpd.IPV6_HTHRESH, bytes(X.XfrmuSpdhthresh(*x.hthresh6))))
    req.reply(M.NEWSPDINFO, payload)
    return req.ok()


def xfrm_set_spdinfo(req: XfrmRequest) -> Reply:
    x = req.xfrm
    new4, new6 = x.hthresh4, x.hthresh6
    for t, fam, limit in ((X.XfrmaSpd.IPV4_HTHRESH, "IPV4", 32), (X.XfrmaSpd.IPV6_HTHRESH, "IPV6", 128)):
        ra = req.attrs.get(t)
        if ra is None:
            continue
        if ra.end - ra.start < 2:
            raise KernelError(E.EINVAL, f"Invalid SPD_{fam}_HTHRESH attribute length")
        lbits, rbits = req.buf[ra.start], req.buf[ra.start + 1]
        if lbits > limit or rbits > limit:
            raise KernelError(E.EINVAL, f"Invalid hash threshold (must be <= {limit} for {fam[:2].upper()}v{fam[3]})")
        if t == X.XfrmaSpd.IPV4_HTHRESH:
            new4 = (lbits, rbits)
        else:
            new6 = (lbits, rbits)
    x.hthresh4, x.hthresh6 = new4, new6
    return req.ok()


def xfrm_set_default(req: XfrmRequest) -> Reply:
    up = req.fixed(X.XfrmUserpolicyDefault)
    x = req.xfrm
    for i, v in enumerate((up.in_, up.fwd, up.out)):
        if v in (X.XFRM_USERPOLICY_BLOCK, X.XFRM_USERPOLICY_ACCEPT):
            x.policy_default[i] = v
    # xfrm_notify_userpolicy: a GETDEFAULT message on the POLICY group
    cur = X.XfrmUserpolicyDefault(in_=x.policy_default[0], fwd=x.policy_default[1],
                                  out=x.policy_default[2])
    # the kernel's message is 20 bytes: the 3-byte struct plus one byte of padding counted
    # in nlmsg_len (observed on 6.18, for the reply and for this event)
    req.notify(X.XfrmNlGrp.POLICY, M.GETDEFAULT, bytes(cur) + b"\0", seq=0, pid=0)
    return req.ok()


def xfrm_get_default(req: XfrmRequest) -> Reply:
    x = req.xfrm
    cur = X.XfrmUserpolicyDefault(in_=x.policy_default[0], fwd=x.policy_default[1],
                                  out=x.policy_default[2])
    req.reply(M.GETDEFAULT, bytes(cur) + b"\0")   # 20 bytes, as xfrm_get_default sends
    return req.ok()
