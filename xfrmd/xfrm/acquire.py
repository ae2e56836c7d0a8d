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

from .offload import XFRM_DEV_OFFLOAD_PACKET, xfrm_dev_state_acquire, xfrm_dev_state_acquire_abort
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
    xdo: object = None              # the SPD policy's device binding (packet offload)

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


def _prefix_ok(a: bytes, b: bytes, plen: int) -> bool:
    whole, rest = divmod(plen, 8)
    if a[:whole] != b[:whole]:
        return False
    mask = (0xFF << (8 - rest)) & 0xFF
    return not rest or (a[whole] & mask) == (b[whole] & mask)


def _sel_covers(sel: bytes, flow: bytes) -> bool:
    """``xfrm_selector_match`` of a selector against a flow given as a host selector."""
    dp, dpm, sp, spm = struct.unpack_from(">HHHH", sel, 32)
    fdp, _, fsp, _ = struct.unpack_from(">HHHH", flow, 32)
    return (_prefix_ok(flow[0:16], sel[0:16], sel[42]) and _prefix_ok(flow[16:32], sel[16:32], sel[43])
            and not ((fdp ^ dp) & dpm) and not ((fsp ^ sp) & spm)
            and (sel[44] == 0 or sel[44] == flow[44])
            and sel[48:52] in (bytes(4), flow[48:52]))          # ifindex: 0 = any


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
    best = None
    flow = bytes(sel)
    xdo = pol.xdo
    pol_dev = xdo.dev if xdo is not None and xdo.type == XFRM_DEV_OFFLOAD_PACKET else None
    for x in reversed(db.bydst.get(key, ())):
        # packet offload: a hardware policy only takes hardware states of its own device,
        # and a software lookup skips hardware states (xfrm_state_find under
        # CONFIG_XFRM_OFFLOAD; the kernel keeps HW states first in the chain and breaks at
        # the first software one, which selects the same states)
        xso = x.xso
        x_dev = xso.dev if xso is not None and xso.type == XFRM_DEV_OFFLOAD_PACKET else None
        if x_dev is not pol_dev:
            continue
        if (x.props.family == fam and x.props.reqid == t.reqid and x.mark_match(mark)
                and x.if_id == pol.if_id and not x.props.flags & X.XFRM_STATE_WILDRECV
                and x.props.mode == t.mode and x.id.proto == t.proto
                and (not t.spi or t.spi == x.id.spi)):
            if x.km_state == XFRM_STATE_VALID:
                # xfrm_state_look_at: the SA's selector must cover the flow; prefer one
                # that is not dying, then the most recently added
                if x.sel.family and (x.sel.family != family or not _sel_covers(bytes(x.sel), flow)):
                    continue
                if (best is None or best.km_dying > x.km_dying or
                        (best.km_dying == x.km_dying and best.curlft.add_time < x.curlft.add_time)):
                    best = x
            elif x.km_state == XFRM_STATE_ACQ:
                in_progress = True
    if best is not None:
        return best, 0, False
    if in_progress:
        return None, -E.EAGAIN, False
    x = db.alloc()
    x.id = StateId(daddr, t.spi, t.proto)
    x.sel = sel.copy()
    x.props.saddr, x.props.mode, x.props.reqid, x.props.family = saddr, t.mode, t.reqid, fam
    x.mark = pol.mark
    x.if_id = pol.if_id
    x.km_seq = _next_acqseq(db.kernel)    # build_acquire takes a number even if unheard
    if pol_dev is not None:
        # the larval state is handed to the policy's device before km_query; a refusal
        # kills it and no ACQUIRE goes out (xfrm_state_find, the driver's errno)
        err = xfrm_dev_state_acquire(x, pol)
        if err:
            return None, err, False
    if not db.listening(X.XfrmNlGrp.ACQUIRE):
        xfrm_dev_state_acquire_abort(x)
        return None, -E.ESRCH, False     # km_query: no key manager took it
    db.multicast(X.XfrmNlGrp.ACQUIRE, build_acquire(x, t, pol))
    x.km_state = XFRM_STATE_ACQ
    x.dir = X.XFRM_SA_DIR_OUT
    x.lft = x.lft._replace(hard_add_expires_seconds=db.acq_expires)
    db._link(x)
    db._arm(x, db.acq_expires)
    return None, -E.EAGAIN, True


def xfrm_policy_lookup(ns, dir: int, flow: bytes, family: int, mark: int = 0, if_id: int = 0):
    """``xfrm_policy_lookup_bytype`` over sub then main policies of ``dir``: the selector
    must cover the flow (a host selector), the lowest priority value wins, the oldest on a
    tie (the kernel walks the chains in insertion order and keeps the first best)."""
    for ptype in (X.XFRM_POLICY_TYPE_SUB, X.XFRM_POLICY_TYPE_MAIN):
        best = None
        for pol in getattr(ns.xfrm, "policy_all", {}).values():
            if (pol.dir != dir or pol.type != ptype or pol.family != family
                    or (mark & pol.mark[1]) != pol.mark[0] or pol.if_id != if_id
                    or getattr(pol, "dead", False)):
                continue
            if not _sel_covers(bytes(pol.sel), flow):
                continue
            if best is None or pol.priority < best.priority:
                best = pol
        if best is not None:
            return best
    return None


def policy_for_flow(ns, src: bytes, dst: bytes, family: int, proto: int = 0, sport: int = 0,
                    dport: int = 0, mark: int = 0, if_id: int = 0):
    """``xfrm_policy_lookup`` for an outbound flow (``xfrmd ctl acquire``)."""
    return xfrm_policy_lookup(ns, X.XFRM_POLICY_OUT,
                              bytes(host_selector(src, dst, family, proto, sport, dport)),
                              family, mark, if_id)


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


# -- XFRM_MSG_ACQUIRE from userspace (xfrm_add_acquire) -------------------------------------------
#
# The policy checks below are the ones xfrm_add_acquire runs on the policy it is given
# (verify_newpolicy_info, copy_from_user_policy_type, validate_tmpl); the SPD has its own
# policies, this only builds the throw-away policy km_query needs.

def verify_newpolicy_info(info: bytes) -> tuple[int, str] | None:
    """``verify_newpolicy_info`` on an xfrm_userpolicy_info."""
    fam, plen_d, plen_s = struct.unpack_from("=HBB", info, 40)
    index, pdir, action, _flags, share = struct.unpack_from("=IBBBB", info, 156)
    if share > X.XFRM_SHARE_UNIQUE:
        return -E.EINVAL, "Invalid policy share"
    if action not in (X.XFRM_POLICY_ALLOW, X.XFRM_POLICY_BLOCK):
        return -E.EINVAL, "Invalid policy action"
    if fam == X.AF_INET:
        if plen_d > 32 or plen_s > 32:
            return -E.EINVAL, "Invalid prefix length in selector (must be <= 32 for IPv4)"
    elif fam == X.AF_INET6:
        if plen_d > 128 or plen_s > 128:
            return -E.EINVAL, "Invalid prefix length in selector (must be <= 128 for IPv6)"
    else:
        return -E.EINVAL, "Invalid selector family"
    if pdir > X.XFRM_POLICY_FWD:
        return -E.EINVAL, "Invalid policy direction"
    if index and (index & 7) != pdir:   # xfrm_policy_id2dir
        return -E.EINVAL, "Policy index doesn't match direction"
    return None


# xfrm_id_proto_valid: IPSEC_PROTO_ANY is not a template protocol (probed on 6.18)
_TMPL_PROTOS = {X.IPPROTO_ESP, X.IPPROTO_AH, X.IPPROTO_COMP, X.IPPROTO_ROUTING,
                X.IPPROTO_DSTOPTS}


def validate_tmpl(tmpls: list[Template], family: int, pdir: int) -> tuple[int, str] | None:
    """``validate_tmpl``; fills a template family of 0 with the policy's, as the kernel
    does in the request itself."""
    if len(tmpls) > X.XFRM_MAX_DEPTH:
        return -E.EINVAL, "Template count must be <= XFRM_MAX_DEPTH (6)"
    prev = family
    for t in tmpls:
        if not t.family:
            t.family = family
        if t.mode in (X.XFRM_MODE_TUNNEL, X.XFRM_MODE_BEET):
            if t.optional and pdir == X.XFRM_POLICY_OUT:
                return -E.EINVAL, "Mode in optional template not allowed in outbound policy"
        elif t.mode != X.XFRM_MODE_IPTFS and t.family != prev:
            return -E.EINVAL, "Mode in template doesn't support a family change"
        if t.mode >= X.XFRM_MODE_MAX:
            return -E.EINVAL, "Mode in template must be < XFRM_MODE_MAX (6)"
        prev = t.family
        if t.family not in (X.AF_INET, X.AF_INET6):
            return -E.EINVAL, "Invalid family in template"
        if t.proto not in _TMPL_PROTOS:
            return -E.EINVAL, "Invalid XFRM protocol in template"
    return None


def _add_acquire(req):
    """``xfrm_add_acquire``: validate the policy, then one ACQUIRE per template (km_query);
    no state is kept. Always ACK 0 once the checks pass."""
    from ..netlink.core import Reply
    buf, off = req.buf, req.payload_offset
    db = sad(req.xfrm)
    ra = req.attrs.get(A.MARK)
    mark = (0, 0) if ra is None else struct.unpack_from("=II", buf, ra.start)
    pcpu = UINT_MAX
    if A.SA_PCPU in req.attrs:
        pcpu = req.attr_int(A.SA_PCPU)
        if pcpu >= db.num_possible_cpus:
            return Reply(-E.EINVAL, "pCPU number too big")
    info = bytes(buf[off + 96:off + 96 + 168])
    bad = verify_newpolicy_info(info)
    if bad is None and A.SEC_CTX in req.attrs:
        ra = req.attrs[A.SEC_CTX]
        ulen, _, _, _, ctx_len = struct.unpack_from("=HHBBH", buf, ra.start)
        if ulen > ra.end - ra.start or ulen != 8 + ctx_len:
            bad = (-E.EINVAL, "Invalid security context length")
    if bad is not None:
        return Reply(*bad)
    # xfrm_policy_construct: type, templates, sec ctx, mark, if_id, offload
    ptype = X.XFRM_POLICY_TYPE_MAIN
    if A.POLICY_TYPE in req.attrs:
        ptype = buf[req.attrs[A.POLICY_TYPE].start]
        if ptype not in (X.XFRM_POLICY_TYPE_MAIN, X.XFRM_POLICY_TYPE_SUB):
            return Reply(-E.EINVAL, "Invalid policy type")
    tmpls: list[Template] = []
    ra = req.attrs.get(A.TMPL)
    if ra is not None:
        raw = bytes(buf[ra.start:ra.end])
        tmpls = [Template.decode(raw[i:i + 64]) for i in range(0, len(raw) - 63, 64)]
        family, pdir = struct.unpack_from("=H", info, 40)[0], info[160]
        filled = [i for i, t in enumerate(tmpls) if not t.family]
        bad = validate_tmpl(tmpls, family, pdir)
        if bad is not None:
            reply = Reply(*bad)
            reply.echo = _with_families(buf, ra.start, tmpls, filled)
            return reply
    if A.OFFLOAD_DEV in req.attrs:
        return Reply(-E.EOPNOTSUPP, "xfrmd: XFRMA_OFFLOAD_DEV on XFRM_MSG_ACQUIRE is not modelled")
    if_id = req.attr_int(A.IF_ID) or 0
    pol = PolicyWire(info, tmpls, ptype, mark, if_id)
    aalgos, ealgos, calgos = struct.unpack_from("=III", buf, off + 264)
    x = db.alloc()
    x.props.saddr = bytes(buf[off + 24:off + 40])
    x.sel = X.XfrmSelector.from_buffer_copy(bytes(buf[off + 40:off + 96]))
    x.mark = mark
    x.pcpu_num = pcpu
    for t in tmpls:
        x.id = StateId(t.daddr, t.spi, t.proto)
        x.props.mode, x.props.reqid, x.props.family = t.mode, t.reqid, t.family
        t.aalgos, t.ealgos, t.calgos = aalgos, ealgos, calgos
        x.km_seq = _next_acqseq(db.kernel)
        if db.listening(X.XfrmNlGrp.ACQUIRE):
            db.multicast(X.XfrmNlGrp.ACQUIRE, build_acquire(x, t, pol))
    return req.ok()


def _with_families(buf, start: int, tmpls: list[Template], filled: list[int]) -> bytes | None:
    """The request with the template families validate_tmpl wrote into it."""
    if not filled:
        return None
    out = bytearray(buf)
    for i in filled:
        struct.pack_into("=H", out, start + 64 * i + 24, tmpls[i].family)
    return bytes(out)


def _register() -> None:
    from .user import handler
    handler(M.ACQUIRE)(_add_acquire)


_register()
