"""XFRM_MSG_ACQUIRE from userspace (xfrm_user.c ``xfrm_add_acquire``): the policy it carries
goes through the checks of NEWPOLICY (:mod:`xfrmd.xfrm.spd`), then ``km_query`` sends one
ACQUIRE per template; no state is kept.

Kernel-originated ACQUIREs (an outbound flow hitting a policy whose template has no SA) are
``xfrm_tmpl_resolve_one`` (:meth:`xfrmd.xfrm.spdb.PolicyDb.tmpl_resolve`) →
``xfrm_state_find`` (:meth:`xfrmd.xfrm.sadb.StateDb.state_find`) → ``km_query``
(:meth:`xfrmd.xfrm.sadb.StateDb.km_query`, the message ``build_acquire`` in
:meth:`xfrmd.xfrm.state.SecurityAssociation.acquire_message`). The names this module held
before are kept importable below.
"""
from __future__ import annotations

import errno as E
import struct
from typing import TYPE_CHECKING, Any

from netlink_codec import xfrm as X

from ..errors import KernelError
from ..netlink.core import Reply
from .policy import TMPL, PolicyWire, Template, host_selector
from .policy import selector_match as _sel_covers
from .netns import xfrm_net
from .sadb import StateDb
from .spd import user_templates, validate_tmpl, verify_newpolicy_info
from .request import XfrmRequest
from .state import UINT_MAX, StateId
from .uapi import A

if TYPE_CHECKING:
    from ..kernel import NetNamespace
    from .policy import Policy
    from .state import SecurityAssociation


def xfrm_add_acquire(req: XfrmRequest) -> Reply:
    """``xfrm_add_acquire``: validate the policy, then one ACQUIRE per template (km_query);
    no state is kept. Always ACK 0 once the checks pass."""
    buf, off = req.buf, req.payload_offset
    db = req.xfrm.sad
    mark = req.mark()
    pcpu = UINT_MAX
    if A.SA_PCPU in req.attrs:
        pcpu = req.attr_u32(A.SA_PCPU)
        if pcpu >= db.num_possible_cpus:
            raise KernelError(E.EINVAL, "pCPU number too big")
    info = bytes(buf[off + 96:off + 96 + 168])
    verify_newpolicy_info(info)
    req.verify_sec_ctx_len()
    # xfrm_policy_construct: type, templates, sec ctx, mark, if_id, offload
    ptype = req.policy_type()
    family, pdir = struct.unpack_from("=H", info, 40)[0], info[160]
    tmpls = list(user_templates(req, family, pdir)[0])
    if A.OFFLOAD_DEV in req.attrs:
        raise KernelError(E.EOPNOTSUPP, "xfrmd: XFRMA_OFFLOAD_DEV on XFRM_MSG_ACQUIRE is not modelled")
    pol = PolicyWire(info, tmpls, ptype, mark, req.if_id())
    aalgos, ealgos, calgos = struct.unpack_from("=III", buf, off + 264)
    x = db.alloc()
    x.saddr = bytes(buf[off + 24:off + 40])
    x.sel = bytes(buf[off + 40:off + 96])
    x.mark = mark
    x.pcpu_num = pcpu
    for i, t in enumerate(tmpls):
        x.id = StateId(t.daddr, t.spi, t.proto)
        x.mode, x.reqid, x.family = t.mode, t.reqid, t.family
        # in place: the ACQUIRE's XFRMA_TMPL carries pol's templates as far as this one got
        tmpls[i] = t = t._replace(aalgos=aalgos, ealgos=ealgos, calgos=calgos)
        x.km_seq = db.get_acqseq()
        db.km_query(x, t, pol)
    return req.ok()


# -- the names this module held before (the data path imports them) ----------------------------

state_find = StateDb.state_find


def xfrm_policy_lookup(ns: NetNamespace, dir: int, flow: bytes, family: int, mark: int = 0,
                       if_id: int = 0) -> Policy | None:
    """:meth:`xfrmd.xfrm.spdb.PolicyDb.lookup` of the namespace's SPD."""
    return xfrm_net(ns).spd.lookup(dir, flow, family, mark, if_id)


def policy_for_flow(ns: NetNamespace, src: bytes, dst: bytes, family: int, proto: int = 0,
                    sport: int = 0, dport: int = 0, mark: int = 0,
                    if_id: int = 0) -> Policy | None:
    """:meth:`xfrmd.xfrm.spdb.PolicyDb.lookup_flow` of the namespace's SPD."""
    return xfrm_net(ns).spd.lookup_flow(src, dst, family, proto, sport, dport, mark, if_id)


def acquire(ns: NetNamespace, pol: Policy | PolicyWire, flow_src: bytes, flow_dst: bytes,
            family: int, proto: int = 0, sport: int = 0, dport: int = 0) -> dict[str, Any]:
    """:meth:`xfrmd.xfrm.spdb.PolicyDb.tmpl_resolve` of the namespace's SPD."""
    return xfrm_net(ns).spd.tmpl_resolve(pol, flow_src, flow_dst, family, proto, sport, dport)


def build_acquire(x: SecurityAssociation, t: Template, pol: Policy | PolicyWire) -> bytes:
    """:meth:`xfrmd.xfrm.state.SecurityAssociation.acquire_message`."""
    return x.acquire_message(t, pol)


__all__ = ["TMPL", "PolicyWire", "Template", "acquire", "build_acquire", "host_selector",
           "policy_for_flow", "state_find", "validate_tmpl", "verify_newpolicy_info",
           "xfrm_add_acquire", "xfrm_policy_lookup", "_sel_covers"]
