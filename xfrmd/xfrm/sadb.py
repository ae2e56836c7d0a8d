"""The per-namespace SA database: net/xfrm/xfrm_state.c.

Hash chains become dicts so that no operation walks the table:
``byspi`` spi → states (of any protocol: the lookups test it, as the kernel's walk of its
byspi bucket does), ``bysrc`` (daddr, saddr, proto) → states,
``byseq`` km.seq → larval states, ``bydst`` (daddr, saddr, reqid, family) → states. Each chain
holds the newest state last (the kernel adds at the head; we walk it reversed): the state
itself while it is alone, as most are (:func:`newest_first` reads any chain).
``state_all`` (``XfrmNet.state_all``, ``StateDb.all``) keeps insertion order for dumps (newest
first). A deleted state leaves it, and frees its memory, at the end of a grace period, as the
kernel's ``xfrm_state_gc_task`` frees deleted states after ``synchronize_rcu`` (:meth:`StateDb.
gc_task`: one timer for every delete in it); ``all`` runs what is pending first, so that no
reader sees a dead state or counts one.

What a lookup or a delete at a million SAs touches beyond the state is memory, not steps
(docs/performance.md, "Scale"): ``byspi`` is keyed by the SPI's int, the one in the state's
``id`` (a (spi, proto) key was a tuple more per state to read and free), and ``state_all`` by
the state itself (hashed by address: no id int to read, make or free).

Timers follow ``xfrm_timer_handler``: armed 1 s after insert, rescheduled to the nearest
soft/hard add/use deadline; soft → EXPIRE hard=0 (km.dying), hard → delete + EXPIRE hard=1.
Larval (ACQ) states from ALLOCSPI expire after ``acq_expires`` seconds.

For the datapath: ``sad(ns.xfrm).lookup(mark, daddr, spi, proto, family)`` is the input
lookup (``xfrm_state_lookup``); after counting a packet in ``x.curlft`` call
:meth:`StateDb.check_expire` (byte/packet limits), after moving ``x.replay``/``x.replay_esn``
call :func:`xfrmd.xfrm.aevent.replay_advanced`; set ``x.lastused`` on output. Output
resolution of one template (VALID state or ACQUIRE) is :meth:`StateDb.state_find`; of a
policy, :meth:`xfrmd.xfrm.spdb.PolicyDb.tmpl_resolve`.
"""
from __future__ import annotations

import errno as E
import heapq
import struct
from typing import TYPE_CHECKING, Any, Hashable, Iterable, Sequence

from netlink_codec import cext
from netlink_codec import xfrm as X
from netlink_codec.netlink import NETLINK_XFRM, encode_msg

from ..cext import source
from . import offload
from .addrcache import SEEN, shared
from .globals import xfrm_globals
from .offload import XFRM_DEV_OFFLOAD_PACKET, xfrm_dev_state_acquire, xfrm_dev_state_acquire_abort
from .policy import Policy, PolicyWire, Template, selector_match
from .state import (HZ, UINT_MAX, XFRM_STATE_ACQ, XFRM_STATE_DEAD, XFRM_STATE_EXPIRED,
                    XFRM_STATE_VALID, DEFAULT_LFT, LifetimeCfg, SecurityAssociation,
                    StateId, flush_message, host_sel, sel_family)
from .state import _pack_host_sel4     # host_sel's IPv4 selector
from .sa_verify import _sacons, new_state
from .state_list import StateList
from .uapi import G, M

if TYPE_CHECKING:
    from devices.netdev import NetDevice

    from ..kernel import Timer

    from .netns import XfrmNet


# sysctls (net.core.*)
XFRM_ACQ_EXPIRES = 30
XFRM_AEVENT_ETIME = 10   # units of 100 ms
XFRM_AEVENT_RSEQTH = 2

_SA_BIT = 1 << (G.SA - 1)      # the group's bit in NetNamespace.listeners
# the deleted states' grace period (xfrm_state_gc_task after synchronize_rcu): their
# state_all entries and memory go when the server is idle, at most this long after the
# delete; past STATE_GC_QHIMARK waiting, the next delete ends it at once (as spdb's
# RCU_GRACE / RCU_QHIMARK: a process whose clock never moves holds at most that many)
STATE_GC_GRACE = 0.01
STATE_GC_QHIMARK = 10_000


def addr_key(addr: bytes, family: int) -> bytes:
    """``xfrm_addr_equal`` compares 4 bytes for AF_INET, 16 for AF_INET6."""
    return addr[:4] if family == X.AF_INET else addr


def proto_match(proto: int, userproto: int) -> bool:
    """``xfrm_id_proto_match``: 0 matches everything, 255 the three IPsec protocols."""
    if not userproto or proto == userproto:
        return True
    if userproto == X.IPSEC_PROTO_ANY:
        return proto in (X.IPPROTO_ESP, X.IPPROTO_AH, X.IPPROTO_COMP)
    return proto == userproto


# hash chains, oldest first: the state alone, a tuple while short, a list once long
# (_chain_add; one SA per SPI and per address pair and reqid is the common case, and a
# tuple of one took 48 bytes and a tracked object more per chain)
Chain = SecurityAssociation | tuple[SecurityAssociation, ...] | list[SecurityAssociation]
Chains = dict[Any, Chain]
_SHORT_CHAIN = 8
# xfrm_id_proto_match(proto, IPSEC_PROTO_ANY): the protocols that use SPIs
_SPI_PROTOS = frozenset((X.IPPROTO_ESP, X.IPPROTO_AH, X.IPPROTO_COMP))
_seen = SEEN.get     # addrcache.shared's lookup, without the call when the address is known
_AF_INET = X.AF_INET
_PAD12 = bytes(12)
_larval = _sacons.larval if _sacons is not None else None    # find_acq's new state in C
# byspi with its entries inline (_spitab.c: one slot's line per lookup at a million SAs, where
# a dict reads an index slot, an entry and the key's int); a dict is the reference
_spitab = cext.load("xfrmd.xfrm._spitab", source("xfrmd.xfrm._spitab"))
_spi_table: Any = _spitab.SpiTable if _spitab is not None else dict


def _dst_key_py(daddr: bytes, saddr: bytes, reqid: int,
                family: int) -> tuple[bytes, bytes, int, int]:
    """The bydst key: addr_key's addresses, the objects addrcache holds (as _dst_key)."""
    d, s = (daddr[:4], saddr[:4]) if family == _AF_INET else (daddr, saddr)
    return (_seen(d) or shared(d), _seen(s) or shared(s), reqid, family)


def _no_key(daddr: bytes, saddr: bytes, reqid: int, family: int) -> None:
    return None


# the same key in C (_sacons.dst_key; None: not bytes, then _dst_key_py)
bydst_key = _sacons.dst_key if _sacons is not None else _no_key
_as = tuple.__new__  # a named tuple from its fields, without the generated __new__'s frame


def _stop_timers(x: SecurityAssociation) -> None:
    """The lifetime and the replay timer of a state going away. (``rtimer`` is a class
    default until a state arms one: storing None on every state would give each a
    ``__dict__`` of its own.)"""
    t = x.timer
    if t is not None:
        t.cancel()
        x.timer = None
    t = x.rtimer
    if t is not None:
        t.cancel()
        x.rtimer = None


def oldest_first(chain: Chain | None) -> Sequence[SecurityAssociation]:
    """The states of a hash chain (None: no chain), oldest first."""
    if chain is None:
        return ()
    if isinstance(chain, SecurityAssociation):
        return (chain,)
    return chain


def newest_first(chain: Chain | None) -> Iterable[SecurityAssociation]:
    """The states of a hash chain (None: no chain), newest first."""
    if chain is None:
        return ()
    if isinstance(chain, SecurityAssociation):
        return (chain,)
    return reversed(chain)


def _chain_add(table: Chains, key: Hashable, x: SecurityAssociation) -> None:
    """Append ``x`` to its hash chain. A chain of one is the state, a short chain a tuple
    (48 bytes for two, where a list takes 88), a long one a list (appending to a tuple
    copies it)."""
    chain = table.get(key)
    if chain is None:
        table[key] = x
    elif isinstance(chain, SecurityAssociation):
        table[key] = (chain, x)
    elif isinstance(chain, list):
        chain.append(x)
    elif len(chain) < _SHORT_CHAIN:
        table[key] = chain + (x,)
    else:
        table[key] = [*chain, x]


def _acq_in(chain: Chain | None, mark: tuple[int, int], mode: int, if_id: int, pcpu_num: int,
            proto: int) -> SecurityAssociation | None:
    """The newest larval state of a bydst chain matching ``__find_acq_core``'s test."""
    for x in newest_first(chain):
        if (x.mode == mode and x.km_state == XFRM_STATE_ACQ and x.id.spi == 0
                and x.id.proto == proto and (mark[0] & mark[1]) == x.mark[0]
                and x.mark[1] == mark[1] and x.if_id == if_id and x.pcpu_num == pcpu_num):
            return x
    return None


def _chain_del(table: Chains, key: Hashable, x: SecurityAssociation) -> None:
    chain = table.get(key)
    if chain is None or isinstance(chain, SecurityAssociation):
        if chain is x:
            del table[key]
        return
    if len(chain) == 2 and isinstance(chain, tuple):
        # the larval state an UPDSA replaces and its successor: the other stays, alone
        if chain[0] is x or chain[1] is x:
            table[key] = chain[1] if chain[0] is x else chain[0]
        return
    if x not in chain:
        return
    if isinstance(chain, list):
        chain.remove(x)
        if chain:
            return
    elif len(chain) > 1:
        i = chain.index(x)
        rest = chain[:i] + chain[i + 1:]
        table[key] = rest[0] if len(rest) == 1 else rest
        return
    del table[key]


class StateDb:
    """``net->xfrm`` state side."""

    def __init__(self, xnet: XfrmNet):
        self.xnet = xnet
        self.ns = xnet.ns
        self.kernel = xnet.ns.kernel
        # state_all, insertion order (state_list.py), with the states deleted in the current
        # grace period still in it (``all`` is the view without them)
        self._all = StateList()
        self._gc: list[SecurityAssociation] = []     # xfrm_state_gc_list
        self._gc_timer: Timer | None = None
        self.byspi: Chains = _spi_table()     # SPI → chain (a dict, or _spitab's table)
        self.bysrc: Chains = {}
        self.bydst: Chains = {}
        self.byseq: Chains = {}
        self.acq_expires = XFRM_ACQ_EXPIRES
        self._acq_lft_shared = DEFAULT_LFT._replace(hard_add_expires_seconds=self.acq_expires)
        self.aevent_etime = XFRM_AEVENT_ETIME
        # what a new state's replay_maxage starts with: (etime * HZ) / XFRM_AE_ETH_M jiffies,
        # one int object for every state
        self.aevent_maxage = self.aevent_etime * HZ // 10
        self.aevent_rseqth = XFRM_AEVENT_RSEQTH
        self._rtimer_jiffy, self._rtimer_at = -1, 0.0   # the last insert's rtimer expiry
        self.num_possible_cpus = 2
        self.tunnel6: dict[bytes, list[int]] = {}   # xfrm6_tunnel: saddr → [spi, refcount]
        self.tunnel6_spi = 0

    # -- keys -----------------------------------------------------------------------------

    @staticmethod
    def _spi_key(x: SecurityAssociation) -> tuple[int, int]:
        return (x.id.spi, x.id.proto)

    @staticmethod
    def _src_key(x: SecurityAssociation) -> tuple[bytes, bytes, int]:
        f = x.family
        return (shared(addr_key(x.id.daddr, f)), shared(addr_key(x.saddr, f)), x.id.proto)

    @staticmethod
    def _dst_key(x: SecurityAssociation) -> tuple[bytes, bytes, int, int]:
        f = x.family
        d, s = (x.id.daddr[:4], x.saddr[:4]) if f == X.AF_INET else (x.id.daddr, x.saddr)
        return (_seen(d) or shared(d), _seen(s) or shared(s), x.reqid, f)

    # -- lookups --------------------------------------------------------------------------

    def lookup(self, mark: int, daddr: bytes, spi: int, proto: int,
               family: int) -> SecurityAssociation | None:
        """``__xfrm_state_lookup`` (byspi chain, newest first)."""
        chain = self.byspi.get(spi)
        if chain is None:
            return None
        d = addr_key(daddr, family)
        for x in newest_first(chain):
            xdaddr, _, xproto = x.id
            if (xproto == proto and x.family == family and addr_key(xdaddr, family) == d
                    and x.mark_match(mark)):
                return x
        return None

    def lookup_byaddr(self, mark: int, daddr: bytes, saddr: bytes, proto: int,
                      family: int) -> SecurityAssociation | None:
        """``__xfrm_state_lookup_byaddr`` (bysrc chain)."""
        chain = self.bysrc.get((addr_key(daddr, family), addr_key(saddr, family), proto))
        for x in newest_first(chain):
            if x.family == family and x.mark_match(mark):
                return x
        return None

    def locate(self, x: SecurityAssociation) -> SecurityAssociation | None:
        """``__xfrm_state_locate``: the state that would collide with ``x``."""
        mark = x.mark[0] & x.mark[1]
        if x.id.proto in _SPI_PROTOS:    # x.use_spi
            return self.lookup(mark, x.id.daddr, x.id.spi, x.id.proto, x.family)
        return self.lookup_byaddr(mark, x.id.daddr, x.saddr, x.id.proto, x.family)

    def spi_in_use(self, spi: int, proto: int) -> bool:
        """``xfrm_state_lookup_spi_proto``: any state, any daddr."""
        chain = self.byspi.get(spi)
        if chain is None:
            return False
        if isinstance(chain, SecurityAssociation):
            return chain.id[2] == proto
        return any(x.id[2] == proto for x in chain)

    def find_acq_byseq(self, mark: int, seq: int,
                       pcpu_num: int | None = None) -> SecurityAssociation | None:
        """``__xfrm_find_acq_byseq``."""
        for x in newest_first(self.byseq.get(seq)):
            if (x.km_state == XFRM_STATE_ACQ and x.mark_match(mark)
                    and (pcpu_num is None or x.pcpu_num == pcpu_num)):
                return x
        return None

    def find_acq(self, mark: tuple[int, int], family: int, mode: int, reqid: int, if_id: int,
                 pcpu_num: int, proto: int, daddr: bytes, saddr: bytes, create: bool,
                 spi: int = 0) -> SecurityAssociation | None:
        """``__find_acq_core``: a matching larval state, or a new one when ``create``.
        ``spi``: xfrm_alloc_spi's choice, drawn beforehand (ALLOCSPI): the state found or
        made gets it (and its byspi link) at once."""
        # the bydst key (addr_key's addresses), made of the shared objects _dst_key uses:
        # the lookup's and, when one is made, the larval state's
        key = bydst_key(daddr, saddr, reqid, family) or _dst_key_py(daddr, saddr, reqid, family)
        bydst = self.bydst
        chain = bydst.get(key)
        if chain is not None:
            x = _acq_in(chain, mark, mode, if_id, pcpu_num, proto)
            if x is not None:
                if spi:
                    self.set_spi(x, spi)
                return x
        if not create:
            return None
        # xfrm_state_alloc with the larval fields filled in one go (what alloc() and the
        # stores after it gave); the addresses are the shared ones (addrcache). In C when
        # it can (sa_verify._sacons.larval), this Python the reference
        lft, wall = self._acq_lft(), self.kernel.clock.wall()
        x = _larval(lft, key, proto, mode, spi, wall, self) if _larval is not None else None
        if x is None:
            if family == _AF_INET:
                d, s = key[0] + _PAD12, key[1] + _PAD12
                sel = _pack_host_sel4(key[0], key[1], 32, 32)     # host_sel, inline
            else:
                d, s = daddr[:16].ljust(16, b"\0"), saddr[:16].ljust(16, b"\0")
                sel = host_sel(daddr, saddr, family)
            x = new_state(lft, _as(StateId, (_seen(d) or shared(d), spi, proto)), sel, family,
                          _seen(s) or shared(s), mode, reqid, 0, 0, wall, self)
        if pcpu_num != UINT_MAX:
            x.pcpu_num = pcpu_num
        x.km_state = XFRM_STATE_ACQ
        if if_id:                   # (0 is the state's own)
            x.if_id = if_id
        if mark[0] or mark[1]:      # ((0, 0) is the state's own)
            x.mark = mark
        # _link(x, key), inline: a new larval state has no km_seq; its chain is known
        all_ = self._all
        all_.append(x)
        if spi:
            byspi = self.byspi
            if byspi.setdefault(spi, x) is not x:     # not the first in its chain
                _chain_add(byspi, spi, x)
        if proto not in _SPI_PROTOS:     # not x.use_spi
            _chain_add(self.bysrc, self._src_key(x), x)
        if chain is None:
            bydst[key] = x
        else:
            _chain_add(bydst, key, x)
        if len(all_) > self.xnet.state_hmask + 1:
            self._grow_check()
        self._arm(x, self.acq_expires)
        return x

    def _acq_lft(self) -> LifetimeCfg:
        """A larval state's limits: the default ones with a hard add expiry of acq_expires
        (one tuple shared by the larval states while acq_expires stays)."""
        lft = self._acq_lft_shared
        if lft.hard_add_expires_seconds != self.acq_expires:
            lft = self._acq_lft_shared = DEFAULT_LFT._replace(
                hard_add_expires_seconds=self.acq_expires)
        return lft

    def get_acqseq(self) -> int:
        """``xfrm_get_acqseq``: one counter for the whole kernel, never 0."""
        g = xfrm_globals(self.kernel)
        g.acqseq = (g.acqseq + 1) & 0xFFFFFFFF or 1
        return g.acqseq

    def state_find(self, sel: X.XfrmSelector, t: Template, pol: Policy | PolicyWire,
                   flow_src: bytes, flow_dst: bytes,
                   family: int) -> tuple[SecurityAssociation | None, int, bool]:
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
        for x in newest_first(self.bydst.get(key)):
            # packet offload: a hardware policy only takes hardware states of its own device,
            # and a software lookup skips hardware states (xfrm_state_find under
            # CONFIG_XFRM_OFFLOAD; the kernel keeps HW states first in the chain and breaks at
            # the first software one, which selects the same states)
            xso = x.xso
            x_dev = xso.dev if xso is not None and xso.type == XFRM_DEV_OFFLOAD_PACKET else None
            if x_dev is not pol_dev:
                continue
            if (x.family == fam and x.reqid == t.reqid and x.mark_match(mark)
                    and x.if_id == pol.if_id and not x.flags & X.XFRM_STATE_WILDRECV
                    and x.mode == t.mode and x.id.proto == t.proto
                    and (not t.spi or t.spi == x.id.spi)):
                if x.km_state == XFRM_STATE_VALID:
                    # xfrm_state_look_at: the SA's selector must cover the flow; prefer one
                    # that is not dying, then the most recently added
                    sf = sel_family(x.sel)
                    if sf and (sf != family or not selector_match(x.sel, flow)):
                        continue
                    if (best is None or best.km_dying > x.km_dying or
                            (best.km_dying == x.km_dying
                             and best.curlft.add_time < x.curlft.add_time)):
                        best = x
                elif x.km_state == XFRM_STATE_ACQ:
                    in_progress = True
        if best is not None:
            return best, 0, False
        if in_progress:
            return None, -E.EAGAIN, False
        x = self.alloc()
        x.id = StateId(daddr, t.spi, t.proto)
        x.sel = flow
        x.saddr, x.mode, x.reqid, x.family = saddr, t.mode, t.reqid, fam
        x.mark = pol.mark
        x.if_id = pol.if_id
        x.km_seq = self.get_acqseq()    # build_acquire takes a number even if unheard
        if pol_dev is not None:
            # the larval state is handed to the policy's device before km_query; a refusal
            # kills it and no ACQUIRE goes out (xfrm_state_find, the driver's errno)
            err = xfrm_dev_state_acquire(x, pol)
            if err:
                return None, err, False
        if not self.km_query(x, t, pol):
            xfrm_dev_state_acquire_abort(x)
            return None, -E.ESRCH, False     # km_query: no key manager took it
        x.km_state = XFRM_STATE_ACQ
        x.dir = X.XFRM_SA_DIR_OUT
        x.lft = self._acq_lft()
        self._link(x)
        self._arm(x, self.acq_expires)
        return None, -E.EAGAIN, True

    # -- life cycle -----------------------------------------------------------------------

    def alloc(self, lft: LifetimeCfg | None = None) -> SecurityAssociation:
        """``xfrm_state_alloc``: add_time now, limits infinite (unless ``lft`` is given)."""
        return SecurityAssociation(lft, add_time=self.kernel.clock.wall(), net=self)

    def _link(self, x: SecurityAssociation,
              dst_key: tuple[bytes, bytes, int, int] | None = None) -> None:
        # Only the chains a lookup can use are kept: bysrc serves the address lookups of
        # protocols without SPI; bydst serves __find_acq_core and xfrm_state_find.
        # (``dst_key``: _dst_key(x) when the caller has it already.)
        self._all.append(x)
        _, spi, proto = x.id       # (a named tuple's fields are slow attributes on 3.11)
        if spi:
            if self.byspi.setdefault(spi, x) is not x:    # not the first in its chain
                _chain_add(self.byspi, spi, x)
        if proto not in _SPI_PROTOS:     # not x.use_spi
            _chain_add(self.bysrc, self._src_key(x), x)
        if dst_key is None:
            dst_key = self._dst_key(x)
        if self.bydst.setdefault(dst_key, x) is not x:
            _chain_add(self.bydst, dst_key, x)
        if x.km_seq:
            _chain_add(self.byseq, x.km_seq, x)
        if len(self._all) > self.xnet.state_hmask + 1:
            self._grow_check()

    def _unlink(self, x: SecurityAssociation) -> None:
        """Out of the hash chains; out of state_all at the end of the grace period
        (:meth:`gc_task`)."""
        _, spi, proto = x.id
        if spi:         # the chains _link put it in
            _chain_del(self.byspi, spi, x)
        if proto not in _SPI_PROTOS:
            _chain_del(self.bysrc, self._src_key(x), x)
        _chain_del(self.bydst, self._dst_key(x), x)
        if x.km_seq:
            _chain_del(self.byseq, x.km_seq, x)

    def set_spi(self, x: SecurityAssociation, spi: int) -> None:
        """``xfrm_alloc_spi`` inserting the chosen SPI into byspi."""
        daddr, _, proto = x.id
        x.id = _as(StateId, (daddr, spi, proto))
        if self.byspi.setdefault(spi, x) is not x:    # not the first in its chain
            _chain_add(self.byspi, spi, x)

    def _grow_check(self) -> None:
        # xfrm_hash_grow_check doubles the hash when an insert collides while the table
        # holds more states than hmask; a collision is certain once states > buckets, which
        # is when the probed kernel grows (9th, 17th, 33rd larval state).
        xn = self.xnet
        live = len(self._all) - len(self._gc)       # net->xfrm.state_num
        if live > xn.state_hmask + 1 and xn.state_hmask + 1 < xn.HASHMAX:
            xn.state_hmask = xn.state_hmask * 2 + 1

    def insert(self, x: SecurityAssociation,
               dst_key: tuple[bytes, bytes, int, int] | None = None) -> None:
        """``__xfrm_state_insert``: sanitize the mark, link, start the 1 s lifetime timer.
        Without add/use lifetimes that first run would find nothing to do and not rearm, so
        no timer is queued then (the datapath arms one when a byte/packet limit hits)."""
        if x.mark[0] & ~x.mark[1]:
            x.mark = (x.mark[0] & x.mark[1], x.mark[1])
        self._link(x, dst_key)
        self._start_timers(x)

    def _start_timers(self, x: SecurityAssociation) -> None:
        """The end of ``__xfrm_state_insert`` (insert, and add/replace_larval's inline
        links): the 1 s lifetime timer when there are add/use lifetimes, and the replay
        timer."""
        lft = x.lft
        if lft is not DEFAULT_LFT and lft.has_timeouts():
            self._arm(x, 1)
        maxage = x.replay_maxage
        if maxage:
            # mod_timer(&x->rtimer, jiffies + replay_maxage): recorded only (see aevent.py),
            # in the jiffy it expires in; the states inserted in one jiffy share that float
            # (one object less per state to make and, at a delete, to free)
            when = int(self.kernel.clock.now() * HZ) + maxage
            if when != self._rtimer_jiffy:
                self._rtimer_jiffy, self._rtimer_at = when, when / HZ
            x.rtimer_when = self._rtimer_at

    def add(self, x: SecurityAssociation) -> int:
        """``xfrm_state_add``: 0 or -EEXIST; a matching larval state is removed."""
        daddr, spi, proto = x.id
        family = x.family
        mark = x.mark
        if proto not in _SPI_PROTOS:
            if self.lookup_byaddr(mark[0] & mark[1], daddr, x.saddr, proto, family) is not None:
                return -E.EEXIST
            self.insert(x)
            return 0
        # __xfrm_state_locate (lookup's chain tested here first: a new SPI has none)
        byspi = self.byspi
        if spi in byspi and self.lookup(mark[0] & mark[1], daddr, spi, proto, family) is not None:
            return -E.EEXIST
        # _dst_key(x), in C when it can
        saddr, reqid = x.saddr, x.reqid
        key = bydst_key(daddr, saddr, reqid, family) or _dst_key_py(daddr, saddr, reqid, family)
        x1 = None
        km_seq = x.km_seq
        if km_seq and km_seq in self.byseq:     # (a chain to look in)
            x1 = self.find_acq_byseq(mark[0] & mark[1], km_seq, x.pcpu_num)
            if x1 is not None and (x1.id.proto != proto or
                                   addr_key(x1.id.daddr, family) != addr_key(daddr, family)):
                x1 = None
        bydst = self.bydst
        chain = bydst.get(key)
        if x1 is None and chain is not None:
            # __find_acq_core(create=False): its key is the state's own bydst key
            x1 = _acq_in(chain, mark, x.mode, x.if_id, x.pcpu_num, proto)
        if x1 is not None or chain is not None or km_seq:
            self.insert(x, key)
            if x1 is not None:
                self.delete(x1)
            return 0
        # insert(x, dst_key) of a state alone in its bydst chain, _link inline: the mark
        # sanitized, linked (byspi, bydst; no bysrc for ESP, AH, IPComp), its timers
        if mark[0] & ~mark[1]:
            x.mark = (mark[0] & mark[1], mark[1])
        all_ = self._all
        all_.append(x)
        if spi and byspi.setdefault(spi, x) is not x:     # not the first in its chain
            _chain_add(byspi, spi, x)
        bydst[key] = x
        if len(all_) > self.xnet.state_hmask + 1:
            self._grow_check()
        self._start_timers(x)
        return 0

    def replace_larval(self, x: SecurityAssociation, x1: SecurityAssociation) -> None:
        """``xfrm_state_update`` of a larval state: ``__xfrm_state_insert(x)`` then
        ``__xfrm_state_delete(x1)`` (``x1`` found by ``x``'s SPI), the tables left as those
        two leave them. Where ``x1`` is alone in the slot ``x`` goes to (byspi always for
        charon's UPDSA of its ALLOCSPI; bydst when the larval state had the reqid), ``x``
        takes its place: no two-state chain made and undone."""
        _, spi, proto = x.id
        if (not spi or proto not in _SPI_PROTOS or x1.km_state == XFRM_STATE_DEAD
                or x1.xso is not None or x1.tunnel is not None):
            self.insert(x)
            self.delete(x1)
            return
        # insert(x): __xfrm_state_insert, with _link and _dst_key inline
        mark = x.mark
        if mark[0] & ~mark[1]:
            x.mark = (mark[0] & mark[1], mark[1])
        all_ = self._all
        all_.append(x)
        byspi, bydst = self.byspi, self.bydst
        if byspi.get(spi) is x1:
            byspi[spi] = x
            x1_spi = False                  # x1 is out of byspi already
        else:
            if byspi.setdefault(spi, x) is not x:
                _chain_add(byspi, spi, x)
            x1_spi = True
        f = x.family
        saddr = x.saddr
        daddr = x.id[0]
        dst_key = bydst_key(daddr, saddr, x.reqid, f) or _dst_key_py(daddr, saddr, x.reqid, f)
        d, s = dst_key[0], dst_key[1]
        if bydst.get(dst_key) is x1:
            bydst[dst_key] = x
            x1_dst = False
        else:
            if bydst.setdefault(dst_key, x) is not x:
                _chain_add(bydst, dst_key, x)
            x1_dst = True
        if x.km_seq:
            _chain_add(self.byseq, x.km_seq, x)
        if len(all_) > self.xnet.state_hmask + 1:
            self._grow_check()              # (x1 still counted, as in insert-then-delete)
        self._start_timers(x)
        # delete(x1): __xfrm_state_delete of a larval state (no offload, no tunnel): DEAD,
        # unlinked from the chains x did not take over, its acquire timer off
        x1.km_state = XFRM_STATE_DEAD
        self._free(x1)              # out of state_all with the grace period (gc_task)
        if x1_spi:
            _chain_del(byspi, x1.id[1], x1)
        if x1_dst:
            # x1's bydst key: x's but for the reqid when the saddr is the same (the daddr
            # and family are, as the SPI lookup matched them): _dst_key not made again
            k1 = (d, s, x1.reqid, f) if x1.saddr == saddr else self._dst_key(x1)
            if bydst.get(k1) is x1:         # alone in its chain (charon's: reqid 0)
                del bydst[k1]
            else:
                _chain_del(bydst, k1, x1)
        if x1.km_seq:
            _chain_del(self.byseq, x1.km_seq, x1)
        # _stop_timers(x1), inline
        t = x1.timer
        if t is not None:
            t.cancel()
            x1.timer = None
        if x1.rtimer is not None:
            _stop_timers(x1)

    def delete(self, x: SecurityAssociation) -> int:
        """``__xfrm_state_delete``: DEAD, unlinked, offload removed. -ESRCH if already dead."""
        if x.km_state == XFRM_STATE_DEAD:
            return -E.ESRCH
        x.km_state = XFRM_STATE_DEAD
        self._unlink(x)
        self._free(x)
        _stop_timers(x)
        if x.xso is not None:       # (most states: neither offloaded nor an IPComp tunnel's)
            offload.xfrm_dev_state_release(x)
        if x.tunnel is not None:
            self.delete_tunnel(x)
        if x.id.proto == 41 and x.tunnel_users:   # IPPROTO_IPV6: the xfrm6_tunnel state
            self.tunnel6_free_spi(x.saddr)
        return 0

    def _free(self, x: SecurityAssociation) -> None:
        """``xfrm_state_put`` of a deleted state: onto ``xfrm_state_gc_list``, whose end of
        grace period (:meth:`gc_task`) takes it out of state_all, dropping the last
        reference. At a million SAs that is a cold slot of state_all and the frees of the
        state's objects into cold pools (docs/performance.md, "The SAD's 1M curve (session
        12)"), paid between requests rather than by the DELSA."""
        gc_ = self._gc
        gc_.append(x)
        if len(gc_) == 1:
            self._gc_timer = self.kernel.add_timer(STATE_GC_GRACE, self.gc_task)
        elif len(gc_) >= STATE_GC_QHIMARK:
            self.gc_task()

    def gc_task(self) -> None:
        """``xfrm_state_gc_task``: the deleted states leave state_all, and with their last
        reference their memory goes (the timer the first delete of the grace period armed,
        or any reader of :attr:`all`)."""
        if self._gc_timer is not None:
            self._gc_timer.cancel()
            self._gc_timer = None
        gc_ = self._gc
        self._all.remove_all(gc_)
        gc_.clear()

    @property
    def all(self) -> StateList:
        """state_all: every state not deleted, in insertion order (``XfrmNet.state_all``).
        Ends the grace period first (:meth:`gc_task`), so that no reader sees a dead state
        or counts one."""
        if self._gc:
            self.gc_task()
        return self._all

    def dev_flush(self, dev: NetDevice) -> list[SecurityAssociation]:
        """``xfrm_dev_state_flush`` (NETDEV_DOWN / UNREGISTER, feature off): delete every
        state offloaded to ``dev``, without netlink events. Returns the deleted states."""
        victims = [x for x in self.all.values()
                   if x.xso is not None and getattr(x.xso, "dev", None) is dev
                   and not x.tunnel_users]
        for x in victims:
            self.delete(x)
        return victims

    def discard(self, x: SecurityAssociation) -> None:
        """Undo what construction did for a state that is never inserted (or is dropped
        after an in-place update): offload and the IPComp tunnel reference."""
        x.km_state = XFRM_STATE_DEAD
        offload.xfrm_dev_state_release(x)
        self.delete_tunnel(x)

    def delete_tunnel(self, x: SecurityAssociation) -> None:
        """``xfrm_state_delete_tunnel``: the last user takes the hidden tunnel state along."""
        t = x.tunnel
        if t is None:
            return
        if t.tunnel_users == 2:
            self.delete(t)
        t.tunnel_users -= 1
        x.tunnel = None

    def destroy(self) -> None:
        """``xfrm_state_fini`` when the namespace goes: every state and timer is dropped."""
        for x in list(self.all.values()):
            _stop_timers(x)
            x.km_state = XFRM_STATE_DEAD
            offload.xfrm_dev_state_release(x)
        for table in (self._all, self.byspi, self.bysrc, self.bydst, self.byseq, self.tunnel6):
            table.clear()

    # -- xfrm6_tunnel SPIs (net/ipv6/xfrm6_tunnel.c) -----------------------------------------

    def tunnel6_spi_lookup(self, saddr: bytes) -> int:
        ent = self.tunnel6.get(saddr)
        return ent[0] if ent else 0

    def tunnel6_alloc_spi(self, saddr: bytes) -> int:
        """``xfrm6_tunnel_alloc_spi``: one SPI per source address, counted from 1."""
        ent = self.tunnel6.get(saddr)
        if ent:
            ent[1] += 1
            return ent[0]
        used = {e[0] for e in self.tunnel6.values()}
        spi = self.tunnel6_spi + 1 if 1 <= self.tunnel6_spi < 0xFFFFFFFF else 1
        while spi in used:
            spi += 1
        self.tunnel6_spi = spi
        self.tunnel6[saddr] = [spi, 1]
        return spi

    def tunnel6_free_spi(self, saddr: bytes) -> None:
        ent = self.tunnel6.get(saddr)
        if ent:
            ent[1] -= 1
            if ent[1] <= 0:
                del self.tunnel6[saddr]

    def flush(self, proto: int) -> list[SecurityAssociation]:
        """``xfrm_state_flush``: every state matching ``proto`` (0 = all) that is not held by
        a tunnel. Returns the deleted states (empty = the kernel's -ESRCH)."""
        victims = [x for x in self.all.values()
                   if proto_match(x.id.proto, proto) and not x.tunnel_users]
        for x in victims:
            self.delete(x)
        return victims

    def check_expire(self, x: SecurityAssociation) -> int:
        """``xfrm_state_check_expire``, for the datapath after it counted a packet in
        ``x.curlft``: first use sets use_time; a hard byte/packet limit marks the state
        EXPIRED and lets the timer delete it now (-EINVAL); a soft one sends EXPIRE hard=0."""
        cur, lft = x.curlft, x.lft
        if not cur.use_time:
            cur.use_time = self.kernel.clock.wall()
        if cur.bytes >= lft.hard_byte_limit or cur.packets >= lft.hard_packet_limit:
            x.km_state = XFRM_STATE_EXPIRED
            self._arm(x, 0)
            return -E.EINVAL
        if not x.km_dying and (cur.bytes >= lft.soft_byte_limit
                               or cur.packets >= lft.soft_packet_limit):
            x.km_dying = 1
            self.km_state_expired(x, False, 0)
        return 0

    # -- timers (xfrm_timer_handler) -------------------------------------------------------

    def _arm(self, x: SecurityAssociation, seconds: float) -> None:
        """``hrtimer_start(&x->mtimer, seconds)``: the larval state's ``sysctl_acq_expires``
        (``__find_acq_core``, ``xfrm_state_find``), 1 s after an insert or update, a
        deadline of ``xfrm_timer_handler``. The timer is Kernel.add_timer's, armed without
        its two calls and closure (:class:`_StateTimer`): same deadline, same heap order."""
        old = x.timer
        if old is not None:
            old.cancel()
        k = self.kernel
        t: _StateTimer = _new_timer(_StateTimer)
        t.when = when = k.clock.now() + seconds
        t.db = self
        t.x = x
        t.cancelled = False
        # duck-typed: the heap runs it as a Timer (typing.cast would be a call)
        x.timer = t                                             # type: ignore[assignment]
        _heappush(k._timers, (when, next(k._timer_seq), t))     # type: ignore[misc]

    def rearm(self, x: SecurityAssociation) -> None:
        """``xfrm_state_update`` restarts the timer 1 s from now."""
        if x.lft.has_timeouts():
            self._arm(x, 1)
        elif x.timer is not None:
            x.timer.cancel()
            x.timer = None

    def _timer(self, x: SecurityAssociation) -> None:
        x.timer = None
        if x.km_state == XFRM_STATE_DEAD:
            return
        now = self.kernel.clock.wall()
        lft, cur = x.lft, x.curlft
        nxt: float | None = None
        expired = x.km_state == XFRM_STATE_EXPIRED

        def soonest(tmo: float) -> None:
            nonlocal nxt
            nxt = tmo if nxt is None or tmo < nxt else nxt

        if not expired and lft.hard_add_expires_seconds:
            tmo = lft.hard_add_expires_seconds + cur.add_time - now
            if tmo <= 0:
                expired = True
            else:
                soonest(tmo)
        if not expired and lft.hard_use_expires_seconds:
            tmo = lft.hard_use_expires_seconds + (cur.use_time or now) - now
            if tmo <= 0:
                expired = True
            else:
                soonest(tmo)
        if expired:
            if x.km_state == XFRM_STATE_ACQ and x.id.spi == 0:
                x.km_state = XFRM_STATE_EXPIRED
            if self.delete(x) == 0:
                self.km_state_expired(x, True, 0)
            return
        if not x.km_dying:
            warn = False
            if lft.soft_add_expires_seconds:
                tmo = lft.soft_add_expires_seconds + cur.add_time - now
                if tmo <= 0:
                    warn = True
                else:
                    soonest(tmo)
            if lft.soft_use_expires_seconds:
                tmo = lft.soft_use_expires_seconds + (cur.use_time or now) - now
                if tmo <= 0:
                    warn = True
                else:
                    soonest(tmo)
            x.km_dying = int(warn)
            if warn:
                self.km_state_expired(x, False, 0)
        if nxt is not None:
            self._arm(x, nxt)

    # -- key manager notifications (km_state_notify / km_state_expired) -------------------

    def multicast(self, group: int, data: bytes) -> None:
        self.kernel.multicast(self.ns, NETLINK_XFRM, group, data)

    def listening(self, group: int) -> bool:
        return self.kernel.has_listeners(self.ns, NETLINK_XFRM, group)

    def km_query(self, x: SecurityAssociation, t: Template, pol: Policy | PolicyWire) -> bool:
        """``km_query`` → ``xfrm_send_acquire``: an ACQUIRE for the larval state ``x`` to
        XFRMNLGRP_ACQUIRE; False when no key manager listens (-ESRCH in the kernel)."""
        if not self.listening(G.ACQUIRE):
            return False
        self.multicast(G.ACQUIRE, x.acquire_message(t, pol))
        return True

    def km_state_notify(self, x: SecurityAssociation, event: int, seq: int, pid: int) -> None:
        # the message is only worth building for a listener
        # xfrm_nlmsg_multicast's gate, netlink_has_listeners inlined (Kernel.has_listeners)
        if self.ns.listeners.get(NETLINK_XFRM, 0) & _SA_BIT:
            self.xfrm_notify_sa(x, event, seq, pid)

    def xfrm_notify_sa(self, x: SecurityAssociation, event: int, seq: int, pid: int) -> None:
        """:meth:`km_state_notify` past its listener gate, for a caller that has tested it
        (``xfrm_add_sa``: its gate spares it the header's fields, a call less per NEWSA)."""
        self.multicast(G.SA, x.notify_message(event, seq, pid))

    def km_flush_notify(self, proto: int, seq: int, pid: int) -> None:
        self.multicast(G.SA, flush_message(proto, seq, pid))

    def km_state_expired(self, x: SecurityAssociation, hard: bool, pid: int) -> None:
        self.multicast(G.EXPIRE, x.expire_message(hard, pid))

    def km_new_mapping(self, x: SecurityAssociation, new_saddr: bytes, new_sport: int) -> int:
        """``km_new_mapping``: the datapath saw an ESP-in-UDP packet of ``x`` from another
        address or port (NAT rebinding). Rate limited by XFRMA_MTIMER_THRESH (mapping_maxage)
        unless the port changed; the XFRM_MSG_MAPPING goes to XFRMNLGRP_MAPPING."""
        if x.mapping_maxage:
            now = int(self.kernel.clock.now())       # jiffies / HZ
            if now - x.new_mapping <= x.mapping_maxage and x.new_mapping_sport == new_sport:
                return 0
            x.new_mapping_sport, x.new_mapping = new_sport, now
        # xfrm_send_mapping / build_mapping
        if x.id.proto != X.IPPROTO_ESP or x.encap is None:
            return -E.EINVAL
        body = (x.usersa_id() + struct.pack("=I", x.reqid) + x.saddr
                + new_saddr.ljust(16, b"\0")[:16]
                + struct.pack(">HH", x.encap.encap_sport, new_sport))
        self.multicast(G.MAPPING, encode_msg(M.MAPPING, 0, 0, 0, body))
        return 0

    def km_aevent(self, x: SecurityAssociation, flags: int, seq: int, pid: int) -> None:
        self.multicast(G.AEVENTS, x.aevent_message(flags, seq, pid))


class _StateTimer:
    """A state's timer in the kernel's heap (Kernel.add_timer's Timer, duck-typed: ``when``,
    ``cancelled``, ``cancel()``, ``fn()``). ``fn`` is a method that runs the state's
    ``xfrm_timer_handler``: arming one makes no closure (a lambda and its cells per ALLOCSPI
    were a third of what the larval state's timer cost)."""
    __slots__ = ("when", "db", "x", "cancelled")

    when: float
    db: StateDb
    x: SecurityAssociation
    cancelled: bool

    def cancel(self) -> None:
        self.cancelled = True

    def fn(self) -> None:
        self.db._timer(self.x)


_new_timer = object.__new__
_heappush = heapq.heappush


def sad(xnet: XfrmNet) -> StateDb:
    """The namespace's :class:`StateDb`."""
    return xnet.sad


__all__ = ["StateDb", "sad", "proto_match", "addr_key", "XFRM_STATE_VALID"]
