"""The Security Association Database over netlink (xfrm_user.c): NEWSA, UPDSA, DELSA, GETSA,
the SA dump, FLUSHSA, ALLOCSPI, NEWAE, GETAE and user EXPIRE (ACQUIRE: acquire.py,
MIGRATE: migrate.py)."""
from __future__ import annotations

import errno as E
import struct

from netlink_codec import xfrm as X
from netlink_codec.netlink import NLM_F_REPLACE

from ..netlink.core import Reply
from ..netlink.nlattr import parse_attrs
from .policy_table import STRICT_START_TYPE, XFRMA_POLICY
from .sa_verify import (UsersaInfo, replay_verify_len, state_construct, update_ae_params,
                        verify_newsa_info)
from .sadb import addr_key, proto_match, sad
from .state import A, M, XFRM_STATE_ACQ, XFRM_STATE_DEAD, XFRM_STATE_VALID, XFRM_STATE_VOID
from .user import XfrmRequest, handler

USERSA_ID = struct.Struct("=16s4sHB")


def _mark(req: XfrmRequest) -> tuple[int, int]:
    """``xfrm_mark_get``: the request's XFRMA_MARK, or (0, 0)."""
    ra = req.attrs.get(A.MARK)
    return (0, 0) if ra is None else struct.unpack_from("=II", req.buf, ra.start)


@handler(M.NEWSA)
@handler(M.UPDSA)
def xfrm_add_sa(req: XfrmRequest) -> Reply:
    p = UsersaInfo(req.buf, req.payload_offset)
    bad = verify_newsa_info(req, p)
    if bad is not None:
        return bad
    db = sad(req.xfrm)
    x, bad = state_construct(req, p, db)
    if bad is not None:
        return bad
    event = req.hdr.type
    err = db.add(x) if event == M.NEWSA else _state_update(db, x)
    if err < 0:
        db.discard(x)
        return Reply(err)
    if x.km_state == XFRM_STATE_VOID:
        x.km_state = XFRM_STATE_VALID
    # km_state_notify with the request's seq and nlmsg_pid; for an in-place update the
    # message describes the state built from the request (which the kernel then drops)
    db.km_state_notify(x, event, req.hdr.seq, req.hdr.pid)
    return req.ok()


def _state_update(db, x) -> int:
    """``xfrm_state_update``: replace a larval state, or modify a VALID one in place."""
    x1 = db.locate(x)
    if x1 is None:
        return -E.ESRCH
    if x1.tunnel_users:
        return -E.EEXIST
    if x1.km_state == XFRM_STATE_ACQ:
        if x.dir and x1.dir != x.dir:
            return -E.ESRCH
        db.insert(x)
        db.delete(x1)
        return 0
    if x1.dir != x.dir:
        return -E.ESRCH
    if x1.km_state != XFRM_STATE_VALID:
        return -E.EINVAL
    if x.encap is not None and x1.encap is not None and x.encap.encap_type == x1.encap.encap_type:
        x1.encap = x.encap
    elif x.encap is not None or x1.encap is not None:
        return -E.EINVAL
    if x.coaddr is not None and x1.coaddr is not None:
        x1.coaddr = x.coaddr
    if not x1.use_spi and bytes(x1.sel) != bytes(x.sel):
        x1.sel = x.sel
    x1.lft = x.lft
    x1.km_dying = 0
    db.rearm(x1)
    if x1.curlft.use_time:
        db.check_expire(x1)
    if x.props.smark[0] or x.props.smark[1]:
        x1.props.smark = x.props.smark
    if x.if_id:
        x1.if_id = x.if_id
    # the request's state is discarded; it becomes DEAD after the notification
    db.discard(x)
    return 0


def user_state_lookup(req: XfrmRequest):
    """``xfrm_user_state_lookup``: (state, 0) or (None, -errno)."""
    daddr, spi, family, proto = USERSA_ID.unpack_from(req.buf, req.payload_offset)
    m = _mark(req)
    db = sad(req.xfrm)
    if proto in (X.IPPROTO_ESP, X.IPPROTO_AH, X.IPPROTO_COMP):
        x = db.lookup(m[0] & m[1], daddr, int.from_bytes(spi, "big"), proto, family)
    else:
        saddr = req.attr_bytes(A.SRCADDR)
        if saddr is None:
            return None, -E.EINVAL
        x = db.lookup_byaddr(m[0] & m[1], daddr, saddr[:16], proto, family)
    return (x, 0) if x is not None else (None, -E.ESRCH)


@handler(M.DELSA)
def xfrm_del_sa(req: XfrmRequest) -> Reply:
    x, err = user_state_lookup(req)
    if x is None:
        return Reply(err)
    if x.tunnel_users:
        return Reply(-E.EPERM, "SA is in use by tunnels")
    db = sad(req.xfrm)
    err = db.delete(x)
    if err < 0:
        return Reply(err)
    db.km_state_notify(x, M.DELSA, req.hdr.seq, req.hdr.pid)
    return req.ok()


@handler(M.GETSA)
def xfrm_get_sa(req: XfrmRequest) -> Reply:
    x, err = user_state_lookup(req)
    if x is None:
        return Reply(err)
    req.unicast(x.dump_message(req.hdr.seq, req.sock.portid, flags=0))
    return req.ok()


def _prefix_match(a: bytes, b: bytes, plen: int) -> bool:
    """``addr_match``: the first ``plen`` bits are equal."""
    whole, rest = divmod(plen, 8)
    if a[:whole] != b[:whole]:
        return False
    if rest:
        mask = (0xFF << (8 - rest)) & 0xFF
        return (a[whole] & mask) == (b[whole] & mask)
    return True


def _filter_match(x, flt) -> bool:
    """``__xfrm_state_filter_match``."""
    if flt is None or flt.family not in (X.AF_INET, X.AF_INET6):
        return True
    if x.props.family != flt.family:
        return False
    return (_prefix_match(x.props.saddr, bytes(flt.saddr), flt.splen)
            and _prefix_match(x.id.daddr, bytes(flt.daddr), flt.dplen))


@handler(M.GETSA, dump=True)
def xfrm_dump_sa(req: XfrmRequest):
    """``xfrm_dump_sa``: attributes right after the header; filter errors end the dump with
    NLMSG_DONE carrying the errno (they are found inside the dump callback)."""
    tb, err, _ = parse_attrs(req.buf, req.payload_offset, req.end, XFRMA_POLICY, X.XFRMA_MAX,
                             hdr_offset=req.hdr.offset, strict_start_type=STRICT_START_TYPE)
    flt = None
    proto = 0
    if err is None and A.ADDRESS_FILTER in tb:
        ra = tb[A.ADDRESS_FILTER]
        flt = X.XfrmAddressFilter.decode_padded(req.buf, ra.start, ra.end)
        if flt.splen > 128 or flt.dplen > 128:
            err = Reply(-E.EINVAL)
    if err is None and A.PROTO in tb:
        proto = req.buf[tb[A.PROTO].start]
    states = list(sad(req.xfrm).all.values())
    seq, portid = req.hdr.seq, req.sock.portid

    def walk():
        if err is not None:
            yield err
            return
        for x in reversed(states):   # state_all: newest first
            if x.km_state == XFRM_STATE_DEAD:
                continue
            if proto_match(x.id.proto, proto) and _filter_match(x, flt):
                yield x.dump_message(seq, portid)
    return req.start_dump(walk())


@handler(M.FLUSHSA)
def xfrm_flush_sa(req: XfrmRequest) -> Reply:
    proto = req.buf[req.payload_offset]
    db = sad(req.xfrm)
    if not db.flush(proto):
        return req.ok()   # -ESRCH (nothing to flush) is answered with 0 and no event
    db.km_flush_notify(proto, req.hdr.seq, req.hdr.pid)
    return req.ok()


# -- ALLOCSPI ---------------------------------------------------------------------------------

def _verify_spi_info(proto: int, lo: int, hi: int) -> Reply | None:
    if proto == X.IPPROTO_COMP:
        if hi >= 0x10000:
            return Reply(-E.EINVAL, "IPCOMP SPI must be <= 65535")
    elif proto not in (X.IPPROTO_AH, X.IPPROTO_ESP):
        return Reply(-E.EINVAL, "Invalid protocol, must be one of AH, ESP, IPCOMP")
    if lo > hi:
        return Reply(-E.EINVAL, "Invalid SPI range: min > max")
    return None


@handler(M.ALLOCSPI)
def xfrm_alloc_userspi(req: XfrmRequest) -> Reply:
    p = UsersaInfo(req.buf, req.payload_offset)
    lo, hi = struct.unpack_from("=II", req.buf, req.payload_offset + 224)
    bad = _verify_spi_info(p.proto, lo, hi)
    if bad is not None:
        return bad
    db = sad(req.xfrm)
    m = _mark(req)
    if_id = req.attr_int(A.IF_ID) or 0
    pcpu = 0xFFFFFFFF
    if A.SA_PCPU in req.attrs:
        pcpu = req.attr_int(A.SA_PCPU)
        if pcpu >= db.num_possible_cpus:
            return Reply(-E.EINVAL, "pCPU number too big")
    x = None
    if p.seq:
        x = db.find_acq_byseq(m[0] & m[1], p.seq, pcpu)
        if x is not None and addr_key(x.id.daddr, p.family) != addr_key(p.daddr, p.family):
            x = None
    if x is None:
        x = db.find_acq(m, p.family, p.mode, p.reqid, if_id, pcpu, p.proto, p.daddr,
                        p.saddr, True)
    err = _alloc_spi(db, req, x, lo, hi)
    if err is not None:
        return err
    if A.SA_DIR in req.attrs:
        x.dir = req.attr_int(A.SA_DIR, 1)
    req.unicast(x.dump_message(req.hdr.seq, req.sock.portid, flags=0))
    return req.ok()


def _alloc_spi(db, req, x, lo: int, hi: int) -> Reply | None:
    """``xfrm_alloc_spi`` (6.18): up to range tries, SPIs unique per protocol."""
    if x.km_state == XFRM_STATE_DEAD:
        return Reply(-E.ENOENT, "Target ACQUIRE is in DEAD state")
    if x.id.spi:
        return None
    rnd = req.kernel.random
    for _ in range(hi - lo + 1):
        spi = lo if lo == hi else rnd.randint(lo, hi)
        if not db.spi_in_use(spi, x.id.proto):
            db.set_spi(x, spi)
            return None
        if lo == hi:
            break
    return Reply(-E.ENOENT, "No SPI available in the requested range")


# -- async events: NEWAE / GETAE ----------------------------------------------------------------

AEVENT = struct.Struct("=16s4sHBx16sII")


def _ae_lookup(req: XfrmRequest):
    daddr, spi, family, proto, _saddr, flags, _reqid = AEVENT.unpack_from(req.buf, req.payload_offset)
    m = _mark(req)
    x = sad(req.xfrm).lookup(m[0] & m[1], daddr, int.from_bytes(spi, "big"), proto, family)
    return x, flags


@handler(M.GETAE)
def xfrm_get_ae(req: XfrmRequest) -> Reply:
    x, flags = _ae_lookup(req)
    if x is None:
        return Reply(-E.ESRCH)
    # build_aevent with c.seq / c.portid from the request header (nlmsg_pid)
    req.unicast(x.aevent_message(flags, req.hdr.seq, req.hdr.pid))
    return req.ok()


@handler(M.NEWAE)
def xfrm_new_ae(req: XfrmRequest) -> Reply:
    if not any(t in req.attrs for t in (A.LTIME_VAL, A.REPLAY_VAL, A.REPLAY_ESN_VAL,
                                        A.ETIMER_THRESH, A.REPLAY_THRESH)):
        return Reply(-E.EINVAL, "Missing required attribute for AE")
    if not req.hdr.flags & NLM_F_REPLACE:
        return Reply(-E.EINVAL, "NLM_F_REPLACE flag is required")
    x, _ = _ae_lookup(req)
    if x is None:
        return Reply(-E.ESRCH)
    if x.km_state != XFRM_STATE_VALID:
        return Reply(-E.EINVAL, "SA must be in VALID state")
    bad = replay_verify_len(x, req)
    if bad is not None:
        return bad
    update_ae_params(req, x, update_esn=True)
    sad(req.xfrm).km_aevent(x, X.XFRM_AE_CU, req.hdr.seq, req.hdr.pid)
    return req.ok()


@handler(M.EXPIRE)
def xfrm_add_sa_expire(req: XfrmRequest) -> Reply:
    """A key manager forcing an expiry: EXPIRE event (pid = requester), hard also deletes."""
    p = UsersaInfo(req.buf, req.payload_offset)
    hard = req.buf[req.payload_offset + 224]
    m = _mark(req)
    db = sad(req.xfrm)
    x = db.lookup(m[0] & m[1], p.daddr, p.spi, p.proto, p.family)
    if x is None:
        return Reply(-E.ENOENT)
    if x.km_state != XFRM_STATE_VALID:
        return Reply(-E.EINVAL, "SA must be in VALID state")
    db.km_state_expired(x, bool(hard), req.hdr.pid)
    if hard:
        db.delete(x)
    return req.ok()


from . import acquire, migrate  # noqa: E402,F401  (register XFRM_MSG_ACQUIRE, _MIGRATE)
