"""Kernel-originated ACQUIRE: what ``xfrm_tmpl_resolve_one`` → ``xfrm_state_find`` →
``km_query`` → ``xfrm_send_acquire`` do when an outbound flow hits a policy whose template has
no SA yet.

The policy is given as its wire form (``xfrm_userpolicy_info`` + XFRMA_TMPL and friends, i.e.
what any Policy's ``dump_message`` carries), so this works with whatever SPD object the caller
holds; ``xfrmd ctl acquire`` can also describe a one-template policy by hand.
"""
from __future__ import annotations

import errno as E
import struct
from dataclasses import dataclass

from netlink_codec import netlink as N
from netlink_codec import xfrm as X

from .sadb import addr_key, sad
from .state import A, M, UINT_MAX, XFRM_STATE_ACQ, XFRM_STATE_VALID, StateId

TMPL = struct.Struct("=16s4sB3xH2x16sIBBBxIII")
assert TMPL.size == 64


@dataclass
class Template:
    """``struct xfrm_tmpl`` (as XFRMA_TMPL carries it)."""
    daddr: bytes
    spi: int
    proto: int
    family: int
    saddr: bytes
    reqid: int
    mode: int
    share: int = 0
    optional: int = 0
    aalgos: int = 0xFFFFFFFF
    ealgos: int = 0xFFFFFFFF
    calgos: int = 0xFFFFFFFF

    @classmethod
    def decode(cls, raw: bytes) -> "Template":
        d, spi, proto, fam, s, reqid, mode, share, opt, aa, ea, ca = TMPL.unpack(raw)
        return cls(d, int.from_bytes(spi, "big"), proto, fam, s, reqid, mode, share, opt, aa, ea, ca)

    def encode(self) -> bytes:
        return TMPL.pack(self.daddr, self.spi.to_bytes(4, "big"), self.proto, self.family,
                         self.saddr, self.reqid, self.mode, self.share, self.optional,
                         self.aalgos, self.ealgos, self.calgos)


@dataclass
class PolicyWire:
    """A policy as the kernel would copy it to userspace."""
    info: bytes                     # xfrm_userpolicy_info (168)
    templates: list[Template]
    ptype: int = X.XFRM_POLICY_TYPE_MAIN
    mark: tuple[int, int] = (0, 0)
    if_id: int = 0
    offload: bytes = b""            # XFRMA_OFFLOAD_DEV attribute, header included

    @classmethod
    def from_message(cls, msg: bytes) -> "PolicyWire":
        """From a NEWPOLICY message (``dump_one_policy``)."""
        info = bytes(msg[16:16 + 168])
        tmpls, ptype, mark, if_id, off = [], 0, (0, 0), 0, b""
        for ra in N.iter_attrs(msg, 16 + 168, len(msg)):
            body = bytes(msg[ra.start:ra.end])
            if ra.type == A.TMPL:
                tmpls = [Template.decode(body[i:i + 64]) for i in range(0, len(body) - 63, 64)]
            elif ra.type == A.POLICY_TYPE:
                ptype = body[0]
            elif ra.type == A.MARK:
                mark = struct.unpack("=II", body[:8])
            elif ra.type == A.IF_ID:
                if_id = struct.unpack("=I", body[:4])[0]
            elif ra.type == A.OFFLOAD_DEV:
                off = N.nla(A.OFFLOAD_DEV, body)
        return cls(info, tmpls, ptype, mark, if_id, off)

    def out_info(self) -> bytes:
        """``copy_to_user_policy(xp, p, XFRM_POLICY_OUT)``: dir OUT, share ANY."""
        b = bytearray(self.info)
        b[160] = X.XFRM_POLICY_OUT
        b[163] = X.XFRM_SHARE_ANY
        b[164:168] = bytes(4)
        return bytes(b)


def host_selector(src: bytes, dst: bytes, family: int, proto: int = 0, sport: int = 0,
                  dport: int = 0, ifindex: int = 0) -> X.XfrmSelector:
    """``__xfrm_init_tempsel`` from a flow: host prefixes, ports with full masks if set."""
    width = 4 if family == X.AF_INET else 16
    sel = X.XfrmSelector()
    sel.daddr = X.XfrmAddress.of(dst[:width])
    sel.saddr = X.XfrmAddress.of(src[:width])
    sel.prefixlen_d = sel.prefixlen_s = width * 8
    sel.family, sel.proto, sel.ifindex = family, proto, ifindex
    sel.dport, sel.sport = dport, sport
    sel.dport_mask = 0xFFFF if dport else 0
    sel.sport_mask = 0xFFFF if sport else 0
    return sel


def _next_acqseq(kernel) -> int:
    """``xfrm_get_acqseq``: one counter for the whole kernel, never 0."""
    seq = (getattr(kernel, "_xfrm_acqseq", 0) + 1) & 0xFFFFFFFF or 1
    kernel._xfrm_acqseq = seq
    return seq


def build_acquire(x, t: Template, pol: PolicyWire) -> bytes:
    """``build_acquire``: xfrm_user_acquire + TMPL + POLICY_TYPE + MARK + IF_ID + OFFLOAD + PCPU."""
    ua = (struct.pack("=16s4sB3x", x.id.daddr, x.id.spi.to_bytes(4, "big"), x.id.proto)
          + x.props.saddr + bytes(x.sel) + pol.out_info()
          + struct.pack("=IIII", t.aalgos, t.ealgos, t.calgos, x.km_seq))
    attrs = []
    if pol.templates:
        attrs.append(N.nla(A.TMPL, b"".join(tt.encode() for tt in pol.templates)))
    # CONFIG_XFRM_SUB_POLICY=y on the reference kernel: the type is always sent
    attrs.append(N.nla(A.POLICY_TYPE, struct.pack("=BxHBx", pol.ptype, 0, 0)))
    if pol.mark[0] | pol.mark[1]:
        attrs.append(N.nla(A.MARK, struct.pack("=II", *pol.mark)))
    if pol.if_id:
        attrs.append(N.nla_u32(A.IF_ID, pol.if_id))
    if pol.offload:
        attrs.append(pol.offload)
    if x.pcpu_num != UINT_MAX:
        attrs.append(N.nla_u32(A.SA_PCPU, x.pcpu_num))
    return N.encode_msg(M.ACQUIRE, 0, 0, 0, ua + b"".join(attrs))


def state_find(db, sel, t: Template, pol: PolicyWire, flow_src: bytes, flow_dst: bytes,
               family: int):
    """``xfrm_state_find`` for one template: (state, 0, False) when a VALID SA serves it,
    (None, -EAGAIN, sent) when an acquire is in progress (``sent``: this call sent it),
    (None, -ESRCH, False) when no key manager listens."""
    daddr = t.daddr if any(t.daddr[:4 if t.family == X.AF_INET else 16]) else flow_dst
    saddr = t.saddr if any(t.saddr[:4 if t.family == X.AF_INET else 16]) else flow_src
    fam = t.family or family
    key = (addr_key(daddr, fam), addr_key(saddr, fam), t.reqid, fam)
    mark = pol.mark[0] & pol.mark[1]
    in_progress = False
    for x in reversed(db.bydst.get(key, ())):
        if (x.props.family == fam and x.props.reqid == t.reqid and x.mark_match(mark)
                and x.if_id == pol.if_id and not x.props.flags & X.XFRM_STATE_WILDRECV
                and x.props.mode == t.mode and x.id.proto == t.proto
                and (not t.spi or t.spi == x.id.spi)):
            if x.km_state == XFRM_STATE_VALID and not x.km_dying:
                return x, 0, False
            if x.km_state == XFRM_STATE_ACQ:
                in_progress = True
    if in_progress:
        return None, -E.EAGAIN, False
    if not db.listening(X.XfrmNlGrp.ACQUIRE):
        return None, -E.ESRCH, False     # km_query: no key manager took it
    x = db.alloc()
    x.id = StateId(daddr, t.spi, t.proto)
    x.sel = sel.copy()
    x.props.saddr, x.props.mode, x.props.reqid, x.props.family = saddr, t.mode, t.reqid, fam
    x.mark = pol.mark
    x.if_id = pol.if_id
    x.km_seq = _next_acqseq(db.kernel)
    db.multicast(X.XfrmNlGrp.ACQUIRE, build_acquire(x, t, pol))
    x.km_state = XFRM_STATE_ACQ
    x.dir = X.XFRM_SA_DIR_OUT
    x.lft.hard_add_expires_seconds = db.acq_expires
    db._link(x)
    db._arm(x, db.acq_expires)
    return None, -E.EAGAIN, True


def acquire(ns, pol: PolicyWire, flow_src: bytes, flow_dst: bytes, family: int, proto: int = 0,
            sport: int = 0, dport: int = 0) -> dict:
    """``xfrm_tmpl_resolve_one`` for an outbound flow: walk the templates, acquiring for the
    first that has no SA (optional templates are acquired for and skipped)."""
    db = sad(ns.xfrm)
    sel = host_selector(flow_src, flow_dst, family, proto, sport, dport)
    result = {"errno": 0, "acquired": [], "resolved": []}
    for t in pol.templates:
        x, err, sent = state_find(db, sel, t, pol, flow_src, flow_dst, family)
        if x is not None:
            result["resolved"].append(x.id.spi)
            continue
        if sent:
            result["acquired"].append(t.reqid)
        if not t.optional:
            result["errno"] = -err
            break
    return result
