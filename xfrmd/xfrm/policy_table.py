"""``xfrma_policy`` and ``xfrma_spd_policy`` of xfrm_user.c as data."""
from __future__ import annotations

from typing import Protocol

from netlink_codec import xfrm as X

from ..netlink.nlattr import (NLA_FLAG, NLA_U8, NLA_U16, NLA_U32, NLA_U64, NlaPolicy)


class _Sized(Protocol):
    @classmethod
    def size(cls) -> int: ...


def _len(cls: type[_Sized]) -> NlaPolicy:
    return NlaPolicy(len=cls.size())


A = X.Xfrma
XFRMA_POLICY: dict[int, NlaPolicy] = {
    A.UNSPEC: NlaPolicy(),
    A.SA: _len(X.XfrmUsersaInfo),
    A.POLICY: _len(X.XfrmUserpolicyInfo),
    A.LASTUSED: NlaPolicy(NLA_U64),
    A.ALG_AUTH_TRUNC: _len(X.XfrmAlgoAuth),
    A.ALG_AEAD: _len(X.XfrmAlgoAead),
    A.ALG_AUTH: _len(X.XfrmAlgo),
    A.ALG_CRYPT: _len(X.XfrmAlgo),
    A.ALG_COMP: _len(X.XfrmAlgo),
    A.ENCAP: _len(X.XfrmEncapTmpl),
    A.TMPL: _len(X.XfrmUserTmpl),
    A.SEC_CTX: _len(X.XfrmUserSecCtx),
    A.LTIME_VAL: _len(X.XfrmLifetimeCur),
    A.REPLAY_VAL: _len(X.XfrmReplayState),
    A.REPLAY_THRESH: NlaPolicy(NLA_U32),
    A.ETIMER_THRESH: NlaPolicy(NLA_U32),
    A.SRCADDR: NlaPolicy(len=16),
    A.COADDR: NlaPolicy(len=16),
    A.POLICY_TYPE: _len(X.XfrmUserpolicyType),
    A.MIGRATE: _len(X.XfrmUserMigrate),
    A.KMADDRESS: _len(X.XfrmUserKmaddress),
    A.MARK: _len(X.XfrmMark),
    A.TFCPAD: NlaPolicy(NLA_U32),
    A.REPLAY_ESN_VAL: _len(X.XfrmReplayStateEsn),
    A.SA_EXTRA_FLAGS: NlaPolicy(NLA_U32),
    A.PROTO: NlaPolicy(NLA_U8),
    A.ADDRESS_FILTER: _len(X.XfrmAddressFilter),
    A.OFFLOAD_DEV: _len(X.XfrmUserOffload),
    A.SET_MARK: NlaPolicy(NLA_U32),
    A.SET_MARK_MASK: NlaPolicy(NLA_U32),
    A.IF_ID: NlaPolicy(NLA_U32),
    A.MTIMER_THRESH: NlaPolicy(NLA_U32),
    A.SA_DIR: NlaPolicy(NLA_U8, min=X.XFRM_SA_DIR_IN, max=X.XFRM_SA_DIR_OUT),
    A.NAT_KEEPALIVE_INTERVAL: NlaPolicy(NLA_U32),
    A.SA_PCPU: NlaPolicy(NLA_U32),
    A.IPTFS_DROP_TIME: NlaPolicy(NLA_U32),
    A.IPTFS_REORDER_WINDOW: NlaPolicy(NLA_U16),
    A.IPTFS_DONT_FRAG: NlaPolicy(NLA_FLAG),
    A.IPTFS_INIT_DELAY: NlaPolicy(NLA_U32),
    A.IPTFS_MAX_QSIZE: NlaPolicy(NLA_U32),
    A.IPTFS_PKT_SIZE: NlaPolicy(NLA_U32),
}
STRICT_START_TYPE = A.SA_DIR

XFRMA_SPD_POLICY: dict[int, NlaPolicy] = {
    X.XfrmaSpd.IPV4_HTHRESH: _len(X.XfrmuSpdhthresh),
    X.XfrmaSpd.IPV6_HTHRESH: _len(X.XfrmuSpdhthresh),
}
