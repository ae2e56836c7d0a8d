"""The Security Association Database over netlink (xfrm_user.c): NEWSA, UPDSA, DELSA, GETSA,
the SA dump, FLUSHSA, ALLOCSPI, NEWAE, GETAE and user EXPIRE (ACQUIRE: acquire.py,
MIGRATE: migrate.py)."""
from __future__ import annotations

import errno as E
import gc
import struct
from random import Random
from typing import Iterator, cast

from netlink_codec import xfrm as X
from netlink_codec.netlink import NETLINK_XFRM, NLM_F_REPLACE

from ..errors import KernelError
from ..netlink.core import Reply
from ..netlink.nlattr import parse_attrs
from .policy import addr_match
from .policy_table import STRICT_START_TYPE, XFRMA_POLICY
from .request import XfrmRequest
from . import sa_verify
from .sa_verify import (checked_newsa_info, fast_state, replay_verify_len, state_construct,
                        update_ae_params, usersa_info)
from .sadb import StateDb, addr_key, proto_match
from .state import (XFRM_STATE_ACQ, XFRM_STATE_DEAD, XFRM_STATE_VALID, XFRM_STATE_VOID,
                    SecurityAssociation, dump_message)
from .uapi import A, G, M

USERSA_ID = struct.Struct("=16s4sHB")
_SPI_PROTOS = frozenset((X.IPPROTO_ESP, X.IPPROTO_AH, X.IPPROTO_COMP))   # x.use_spi
_NEWSA = int(M.NEWSA)
_SA_BIT = 1 << (G.SA - 1)      # XFRMNLGRP_SA's bit in NetNamespace.listeners


def xfrm_add_sa(req: XfrmRequest) -> Reply:
    db = req.sock.netns.xfrm.sad
    # the usual request in one C call (sa_verify.fast_state), any other in Python
    x = fast_state(req, db) if sa_verify._sacons is not None else None
    if x is None:
        p = checked_newsa_info(req)     # xfrm_usersa_info, verify_newsa_info
        x = state_construct(req, p, db)
    hdr = req.hdr
    event = hdr.type
    err = db.add(x) if event == _NEWSA else _state_update(db, x)
    if err < 0:
        db.discard(x)
        raise KernelError(err)
    if x.km_state == XFRM_STATE_VOID:
        x.km_state = XFRM_STATE_VALID
    # km_state_notify with the request's seq and nlmsg_pid; for an in-place update the
    # message describes the state built from the request (which the kernel then drops).
    # Its listener gate here (netlink_has_listeners, inlined), then the notification without
    # it: without a listener no call, and the header's fields are not read
    if db.ns.listeners.get(NETLINK_XFRM, 0) & _SA_BIT:
        db.xfrm_notify_sa(x, event, hdr.seq, hdr.pid)
    return req.ok()


def _state_update(db: StateDb, x: SecurityAssociation) -> int:
    """``xfrm_state_update``: replace a larval state, or modify a VALID one in place."""
    daddr, spi, proto = x.id
    if proto in _SPI_PROTOS:    # __xfrm_state_locate, the byspi chain tested first
        chain = db.byspi.get(spi)
        if chain is None:
            x1 = None
        elif type(chain) is SecurityAssociation:
            # a chain of one (charon's larval state): __xfrm_state_lookup's test inline
            mark = x.mark
            xdaddr, _, xproto = chain.id
            family = x.family
            x1m = chain.mark
            x1 = chain if (xproto == proto and chain.family == family
                           and (xdaddr == daddr if family != X.AF_INET
                                else xdaddr[:4] == daddr[:4])
                           and (mark[0] & mark[1] & x1m[1]) == x1m[0]) else None
        else:
            mark = x.mark
            x1 = db.lookup(mark[0] & mark[1], daddr, spi, proto, x.family)
    else:
        x1 = db.locate(x)
    if x1 is None:
        return -E.ESRCH
    if x1.tunnel_users:
        return -E.EEXIST
    if x1.km_state == XFRM_STATE_ACQ:
        if x.dir and x1.dir != x.dir:
            return -E.ESRCH
        db.replace_larval(x, x1)
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
    if not x1.use_spi and x1.sel != x.sel:
        x1.sel = x.sel
    x1.lft = x.lft
    x1.km_dying = 0
    db.rearm(x1)
    if x1.curlft.use_time:
        db.check_expire(x1)
    if x.smark[0] or x.smark[1]:
        x1.smark = x.smark
    if x.if_id:
        x1.if_id = x.if_id
    # the request's state is discarded; it becomes DEAD after the notification
    db.discard(x)
    return 0


def user_state_lookup(req: XfrmRequest) -> SecurityAssociation:
    """``xfrm_user_state_lookup``: the state, EINVAL without the source address a protocol
    without SPI needs, ESRCH when there is none."""
    daddr, spi, family, proto = USERSA_ID.unpack_from(req.buf, req.payload_offset)
    m = req.mark()
    db = req.xfrm.sad
    if proto in (X.IPPROTO_ESP, X.IPPROTO_AH, X.IPPROTO_COMP):
        x = db.lookup(m[0] & m[1], daddr, int.from_bytes(spi, "big"), proto, family)
    else:
        saddr = req.attr_bytes(A.SRCADDR)
        if saddr is None:
            raise KernelError(E.EINVAL)
        x = db.lookup_byaddr(m[0] & m[1], daddr, saddr[:16], proto, family)
    if x is None:
        raise KernelError(E.ESRCH)
    return x


def xfrm_del_sa(req: XfrmRequest) -> Reply:
    x = user_state_lookup(req)
    if x.tunnel_users:
        raise KernelError(E.EPERM, "SA is in use by tunnels")
    db = req.xfrm.sad
    err = db.delete(x)
    if err < 0:
        raise KernelError(err)
    db.km_state_notify(x, M.DELSA, req.hdr.seq, req.hdr.pid)
    return req.ok()


def xfrm_get_sa(req: XfrmRequest) -> Reply:
    x = user_state_lookup(req)
    req.unicast(dump_message(x, req.hdr.seq, req.sock.portid, 0))
    return req.ok()


def _filter_match(x: SecurityAssociation, flt: X.XfrmAddressFilter | None) -> bool:
    """``__xfrm_state_filter_match``."""
    if flt is None or flt.family not in (X.AF_INET, X.AF_INET6):
        return True
    if x.family != flt.family:
        return False
    return (addr_match(x.saddr, bytes(flt.saddr), flt.splen)
            and addr_match(x.id.daddr, bytes(flt.daddr), flt.dplen))


# a dump's snapshot of more states than this is kept out of the collector (_snapshot)
SNAPSHOT_FREEZE = 65536


def _snapshot(db: StateDb) -> list[SecurityAssociation]:
    """The states a dump walks, taken once (it resumes over many reads while the table
    changes; the kernel's walker stays in the list). A young list of a million references
    is walked whole by the next young collection, 17-28 ms at 1M SAs: in a process that
    freezes what survives its collections (``tune_gc``: the server), a large snapshot is
    frozen as soon as it is made, after a young collection, so that what is young and
    garbage now is collected rather than frozen with it."""
    if len(db.all) < SNAPSHOT_FREEZE or not gc.isenabled() or not _freezes_survivors():
        return db.all.values()          # (a copy)
    gc.collect(0)
    states = db.all.values()
    gc.freeze()
    return states


def _freezes_survivors() -> bool:
    """``xfrmd.embedded.freeze_survivors`` is among the collector's callbacks (named, not
    imported: the server's module is not the model's to load; gc.get_freeze_count() walks
    the frozen objects, 100 ms at 1M SAs)."""
    return any(getattr(cb, "__name__", "") == "freeze_survivors"
               and getattr(cb, "__module__", "") == "xfrmd.embedded" for cb in gc.callbacks)


def xfrm_dump_sa(req: XfrmRequest) -> object:
    """``xfrm_dump_sa``: attributes right after the header; filter errors end the dump with
    NLMSG_DONE carrying the errno (they are found inside the dump callback)."""
    tb, err, _ = parse_attrs(req.buf, req.payload_offset, req.end, XFRMA_POLICY, X.XFRMA_MAX,
                             hdr_offset=req.hdr.offset, strict_start_type=STRICT_START_TYPE)
    flt = None
    proto = 0
    bad_filter = False
    if err is None and A.ADDRESS_FILTER in tb:
        ra = tb[A.ADDRESS_FILTER]
        flt = X.XfrmAddressFilter.decode_padded(req.buf, ra.start, ra.end)
        bad_filter = flt.splen > 128 or flt.dplen > 128
    if err is None and not bad_filter and A.PROTO in tb:
        proto = req.buf[tb[A.PROTO].start]
    states = _snapshot(req.xfrm.sad)
    seq, portid = req.hdr.seq, req.sock.portid

    def walk() -> Iterator[bytes | Reply]:
        if err is not None:
            yield err       # the parse error: NLMSG_DONE carries it
            return
        if bad_filter:
            raise KernelError(E.EINVAL)
        for x in reversed(states):   # state_all: newest first
            if x.km_state == XFRM_STATE_DEAD:
                continue
            if proto_match(x.id.proto, proto) and _filter_match(x, flt):
                yield dump_message(x, seq, portid)
    # a Reply among the messages ends the dump with its error (dump_batch)
    return req.start_dump(cast(Iterator[bytes], walk()))


def xfrm_flush_sa(req: XfrmRequest) -> Reply:
    proto = req.buf[req.payload_offset]
    db = req.xfrm.sad
    if not db.flush(proto):
        return req.ok()   # -ESRCH (nothing to flush) is answered with 0 and no event
    db.km_flush_notify(proto, req.hdr.seq, req.hdr.pid)
    return req.ok()


# -- ALLOCSPI ---------------------------------------------------------------------------------

def _verify_spi_info(proto: int, lo: int, hi: int) -> None:
    if proto == X.IPPROTO_COMP:
        if hi >= 0x10000:
            raise KernelError(E.EINVAL, "IPCOMP SPI must be <= 65535")
    elif proto not in (X.IPPROTO_AH, X.IPPROTO_ESP):
        raise KernelError(E.EINVAL, "Invalid protocol, must be one of AH, ESP, IPCOMP")
    if lo > hi:
        raise KernelError(E.EINVAL, "Invalid SPI range: min > max")


def xfrm_alloc_userspi(req: XfrmRequest) -> Reply:
    buf, attrs = req.buf, req.attrs
    # the usersa_info's fields ALLOCSPI reads and the SPI range after it, in one unpack
    # (req.payload_offset inline)
    daddr, proto, saddr, seq, reqid, family, mode, lo, hi = _USERSPI_INFO.unpack_from(
        buf, req.hdr.offset + 16)
    if proto != _ESP or lo > hi:        # (an ESP range in order passes verify_spi_info)
        _verify_spi_info(proto, lo, hi)
    db = req.sock.netns.xfrm.sad
    if attrs.keys() <= _DIR_ONLY:       # no mark, if_id or pCPU (charon's): their defaults
        m, if_id, pcpu = _NO_MARK, 0, _NO_PCPU
    else:
        m = req.mark() if A.MARK in attrs else _NO_MARK
        if_id = req.if_id() if A.IF_ID in attrs else 0
        pcpu = _NO_PCPU
        if A.SA_PCPU in attrs:
            pcpu = req.attr_u32(A.SA_PCPU)
            if pcpu >= db.num_possible_cpus:
                raise KernelError(E.EINVAL, "pCPU number too big")
    x = None
    if seq:
        x = db.find_acq_byseq(m[0] & m[1], seq, pcpu)
        if x is not None and addr_key(x.id.daddr, family) != addr_key(daddr, family):
            x = None
    if x is None:
        # xfrm_find_acq then xfrm_alloc_spi. The larval state __find_acq_core finds has no
        # SPI and one it makes has none, and neither is in byspi, so the draw (the same
        # draws, the same answer) is made first and the state found or made takes its SPI
        # at once (find_acq: no second StateId, no set_spi); with none free it keeps 0
        spi = _draw_spi(db, req.kernel.random, proto, lo, hi)
        x = db.find_acq(m, family, mode, reqid, if_id, pcpu, proto, daddr, saddr, True, spi)
        if not spi:
            raise KernelError(E.ENOENT, "No SPI available in the requested range")
    else:
        _alloc_spi(db, req, x, lo, hi)
    if _SA_DIR in attrs:        # NLA_U8, its range checked by the policy
        x.dir = buf[attrs[_SA_DIR][3]]
    req.unicast(dump_message(x, req.hdr.seq, req.sock.portid, 0))
    return req.ok()


# xfrm_userspi_info: of the usersa_info daddr, proto, saddr, seq, reqid, family, mode; then
# the SPI range (min, max)
_USERSPI_INFO = struct.Struct("=56x16s4xB3x16s108xIIHB9xII")
assert _USERSPI_INFO.size == 224 + 8
_NO_MARK = (0, 0)
_NO_PCPU = 0xFFFFFFFF
_ESP = X.IPPROTO_ESP
_SA_DIR = A.SA_DIR
_DIR_ONLY = frozenset((A.SA_DIR,))


def _draw_spi(db: StateDb, rng: Random, proto: int, lo: int, hi: int) -> int:
    """``xfrm_alloc_spi``'s draw (6.18): up to range tries of a SPI no state of ``proto``
    has (any daddr); 0 when there is none."""
    byspi = db.byspi
    if lo == hi:
        return lo if lo not in byspi or not db.spi_in_use(lo, proto) else 0
    width = hi - lo + 1
    if type(rng) is Random:
        # randrange(lo, hi + 1), without its two Python frames: Random._randbelow's
        # getrandbits loop (the same draws, so the same SPIs)
        getrandbits, k = rng.getrandbits, width.bit_length()
        r = getrandbits(k)              # the first try (a SPI no state has, nearly always)
        while r >= width:
            r = getrandbits(k)
        spi = lo + r
        if spi not in byspi or not db.spi_in_use(spi, proto):
            return spi
        for _ in range(width - 1):      # the other tries
            r = getrandbits(k)
            while r >= width:
                r = getrandbits(k)
            spi = lo + r
            if spi not in byspi or not db.spi_in_use(spi, proto):
                return spi
        return 0
    randrange = rng.randrange
    for _ in range(width):
        spi = randrange(lo, hi + 1)
        if spi not in byspi or not db.spi_in_use(spi, proto):
            return spi
    return 0


def _alloc_spi(db: StateDb, req: XfrmRequest, x: SecurityAssociation, lo: int,
               hi: int) -> None:
    """``xfrm_alloc_spi`` (6.18) for the larval state found by its sequence number."""
    if x.km_state == XFRM_STATE_DEAD:
        raise KernelError(E.ENOENT, "Target ACQUIRE is in DEAD state")
    if x.id.spi:
        return
    spi = _draw_spi(db, req.kernel.random, x.id.proto, lo, hi)
    if not spi:
        raise KernelError(E.ENOENT, "No SPI available in the requested range")
    db.set_spi(x, spi)


# -- async events: NEWAE / GETAE ----------------------------------------------------------------

AEVENT = struct.Struct("=16s4sHBx16sII")


def _ae_lookup(req: XfrmRequest) -> tuple[SecurityAssociation, int]:
    """The state an xfrm_aevent_id names (ESRCH when there is none), and its flags."""
    daddr, spi, family, proto, _saddr, flags, _reqid = AEVENT.unpack_from(req.buf, req.payload_offset)
    m = req.mark()
    x = req.xfrm.sad.lookup(m[0] & m[1], daddr, int.from_bytes(spi, "big"), proto, family)
    if x is None:
        raise KernelError(E.ESRCH)
    return x, flags


def xfrm_get_ae(req: XfrmRequest) -> Reply:
    x, flags = _ae_lookup(req)
    # build_aevent with c.seq / c.portid from the request header (nlmsg_pid)
    req.unicast(x.aevent_message(flags, req.hdr.seq, req.hdr.pid))
    return req.ok()


def xfrm_new_ae(req: XfrmRequest) -> Reply:
    if not any(t in req.attrs for t in (A.LTIME_VAL, A.REPLAY_VAL, A.REPLAY_ESN_VAL,
                                        A.ETIMER_THRESH, A.REPLAY_THRESH)):
        raise KernelError(E.EINVAL, "Missing required attribute for AE")
    if not req.hdr.flags & NLM_F_REPLACE:
        raise KernelError(E.EINVAL, "NLM_F_REPLACE flag is required")
    x, _ = _ae_lookup(req)
    if x.km_state != XFRM_STATE_VALID:
        raise KernelError(E.EINVAL, "SA must be in VALID state")
    replay_verify_len(x, req)
    update_ae_params(req, x, update_esn=True)
    req.xfrm.sad.km_aevent(x, X.XFRM_AE_CU, req.hdr.seq, req.hdr.pid)
    return req.ok()


def xfrm_add_sa_expire(req: XfrmRequest) -> Reply:
    """A key manager forcing an expiry: EXPIRE event (pid = requester), hard also deletes."""
    p = usersa_info(req.buf, req.payload_offset)
    hard = req.buf[req.payload_offset + 224]
    m = req.mark()
    db = req.xfrm.sad
    x = db.lookup(m[0] & m[1], p.daddr, p.spi, p.proto, p.family)
    if x is None:
        raise KernelError(E.ENOENT)
    if x.km_state != XFRM_STATE_VALID:
        raise KernelError(E.EINVAL, "SA must be in VALID state")
    db.km_state_expired(x, bool(hard), req.hdr.pid)
    if hard:
        db.delete(x)
    return req.ok()
