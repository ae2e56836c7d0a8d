"""The Security Policy Database of one namespace (xfrm_policy.c): the by-selector index, which
is also the policy_all list (insertion-ordered; dumps walk it newest first), the by-index
index, index generation, the per-direction counts and hash sizes GETSPDINFO reports, the
policy lifetime timers, and the deferred destruction of deleted policies.

Two dicts per policy and one key object. A delete by selector touches only what its lookup
read (the by-selector slot and entry, the key, the policy): the by-index entry and the
frees wait for the end of a grace period, as ``xfrm_policy_destroy`` hands the free to
``call_rcu`` (docs/performance.md, "Scale", "The SPD's delete at a million policies")."""
from __future__ import annotations

import errno as E
from typing import TYPE_CHECKING, Any, Iterator

from netlink_codec import xfrm as X
from netlink_codec.netlink import NETLINK_XFRM

from . import offload
from .policy import (NO_LIMITS, Policy, PolicyWire, flush_message, host_selector, policy_id2dir,
                     policy_key, selector_match)
from .uapi import G

if TYPE_CHECKING:
    from devices.netdev import NetDevice

    from ..kernel import Timer

    from .netns import XfrmNet

XFRM_KM_TIMEOUT = 30
# call_rcu's grace period: a deleted policy's by-index entry and its memory go when the
# server is idle, at most this long after the delete (one timer for every delete in it)
RCU_GRACE = 0.01
# deletes waiting after which the next one ends the grace period at once (rcutree's qhimark:
# past it the kernel forces a quiescent state), so that a process that never lets time pass
# (in-process users of a ManualClock) holds at most this many dead policies
RCU_QHIMARK = 10_000
POLICY_MAX = 3
IPSEC_ULPROTO_ANY = 255

_POLICY_BIT = 1 << (G.POLICY - 1)      # the group's bit in NetNamespace.listeners


def idx_key(index: int) -> int:
    """The by-index table's key of ``index``: the index rotated right by 3 bits (the
    direction, its low bits, on top). xfrm_gen_index steps by 8 and an int's hash is its
    value: keyed by the index itself, every policy of a direction started its probe in the
    same eighth of the dict's slots, and a new index's probe read the entries of older ones
    (≈ 3 cold entries per NEWPOLICY at a million policies, docs/performance.md "The SPD's
    1M curve (session 12)"). Rotated, consecutive indices take consecutive slots."""
    return ((index >> 3) | (index << 29)) & 0xFFFFFFFF


class PolicyDb:
    """``net->xfrm`` policy side."""

    def __init__(self, xnet: XfrmNet):
        self.xnet = xnet
        self.ns = xnet.ns
        self.kernel = xnet.ns.kernel
        # Policy.key → policy, insertion order = oldest first: xfrm_policy_bysel_ctx's table
        # and the policy_all list in one (an UPDPOLICY's policy replaces the old one's entry
        # at the end, the head of the dump, as __xfrm_policy_link puts it at the head of
        # policy_all). Only live policies.
        self.all: dict[bytes, Policy] = xnet.policy_all
        self.by_selector = self.all
        # idx_key(index) → policy (xfrm_policy_byid's table). A deleted policy stays here, dead,
        # until its grace period ends (rcu_barrier): readers skip dead entries (byid,
        # gen_index), and the delete does not pay this table's cold slot, entry and int
        self.byidx: dict[int, Policy] = {}
        self._rcu: list[Policy] = []       # deleted, waiting for xfrm_policy_destroy_rcu
        self._rcu_timer: Timer | None = None
        self.idx_generator = 0
        self.bydst_hmask = [7] * (2 * POLICY_MAX)

    # -- lookups ------------------------------------------------------------------------
    def byid(self, mark: tuple[int, int], if_id: int, ptype: int, dir: int,
             index: int) -> Policy | None:
        """``xfrm_policy_byid`` (without the delete): None unless type, if_id and the mark
        (value and mask) match and the index belongs to ``dir``."""
        if policy_id2dir(index) != dir:
            return None
        p = self.byidx.get(idx_key(index))
        if p is None or p.dead or p.type != ptype or p.if_id != if_id or p.mark != tuple(mark):
            return None
        return p

    def bysel(self, mark: tuple[int, int], if_id: int, ptype: int, dir: int,
              sel: bytes) -> Policy | None:
        """``xfrm_policy_bysel_ctx``."""
        return self.by_selector.get(policy_key(sel, dir, ptype, if_id, mark[0], mark[1]))

    def walk_newest_first(self) -> Iterator[Policy]:
        return reversed(list(self.all.values()))

    def lookup(self, dir: int, flow: bytes, family: int, mark: int = 0,
               if_id: int = 0) -> Policy | None:
        """``xfrm_policy_lookup_bytype`` over sub then main policies of ``dir``: the selector
        must cover the flow (a host selector), the lowest priority value wins, the oldest on a
        tie (the kernel walks the chains in insertion order and keeps the first best).

        Packet offload first: ``xfrm_policy_insert_list`` puts a policy offloaded in packet
        mode at the head of its chain, so the walk meets hardware policies before any
        software one, newest first, without comparing priorities (the packet offload series:
        "HW policies are placed at the head of the SPD")."""
        for ptype in (X.XFRM_POLICY_TYPE_SUB, X.XFRM_POLICY_TYPE_MAIN):
            best = hw = None
            for pol in self.all.values():
                if (pol.dir != dir or pol.type != ptype or pol.family != family
                        or (mark & pol.mark[1]) != pol.mark[0] or pol.if_id != if_id
                        or pol.dead):
                    continue
                if not selector_match(pol.key, flow):    # the key starts with the selector
                    continue
                if pol.xdo is not None and pol.xdo.type == offload.XFRM_DEV_OFFLOAD_PACKET:
                    hw = pol                   # insertion order: the last one is the newest
                elif best is None or pol.priority < best.priority:
                    best = pol
            if hw is not None:
                return hw
            if best is not None:
                return best
        return None

    def lookup_flow(self, src: bytes, dst: bytes, family: int, proto: int = 0, sport: int = 0,
                    dport: int = 0, mark: int = 0, if_id: int = 0) -> Policy | None:
        """``xfrm_policy_lookup`` for an outbound flow (``xfrmd ctl acquire``)."""
        return self.lookup(X.XFRM_POLICY_OUT,
                           bytes(host_selector(src, dst, family, proto, sport, dport)),
                           family, mark, if_id)

    def migrate_find(self, sel: bytes, dir: int, ptype: int, if_id: int) -> Policy | None:
        """``xfrm_migrate_policy_find``: any live policy of that direction and type whose
        selector matches (the kernel then prefers the lowest priority; only found/not found
        matters here)."""
        for pol in self.all.values():
            if (pol.dir == dir and pol.type == ptype and (if_id == 0 or pol.if_id == if_id)
                    and not pol.dead and migrate_selector_match(sel, pol.sel)):
                return pol
        return None

    def tmpl_resolve(self, pol: Policy | PolicyWire, flow_src: bytes, flow_dst: bytes,
                     family: int, proto: int = 0, sport: int = 0,
                     dport: int = 0) -> dict[str, Any]:
        """``xfrm_tmpl_resolve_one`` for an outbound flow: walk the templates, acquiring for
        the first that has no SA (optional templates are acquired for and skipped)."""
        db = self.xnet.sad
        sel = host_selector(flow_src, flow_dst, family, proto, sport, dport)
        result: dict[str, Any] = {"errno": 0, "acquired": [], "resolved": []}
        for t in pol.templates:
            x, err, sent = db.state_find(sel, t, pol, flow_src, flow_dst, family)
            if x is not None:
                result["resolved"].append(x.id.spi)
                continue
            if sent:
                result["acquired"].append(t.reqid)
            if not t.optional:
                result["errno"] = -err
                break
        return result

    # -- insert / unlink ------------------------------------------------------------------
    def gen_index(self, dir: int, index: int) -> int:
        """``xfrm_gen_index``: the user's index if free, else (generator | dir), the
        generator stepping by 8 and never reset; 0 becomes 8."""
        while True:
            if not index:
                idx = self.idx_generator | dir
                self.idx_generator = (self.idx_generator + 8) & 0xFFFFFFFF
            else:
                idx, index = index, 0
            if idx == 0:
                idx = 8
            p = self.byidx.get(idx_key(idx))
            if p is None or p.dead:        # a dead one's entry is taken over (rcu_barrier)
                return idx

    def insert(self, pol: Policy, excl: bool) -> int:
        """``xfrm_policy_insert``: EEXIST for a NEWPOLICY that exists; an UPDPOLICY takes
        the old policy's index and place (it moves to the head of the dump). The mark value
        is stored masked first, as xfrm_policy_insert sanitizes it (lookups compare the
        user's mark unmasked, so a GETPOLICY with value 5 mask 0 misses what it added)."""
        mark = pol.mark
        if mark[0] & ~mark[1]:
            pol.mark = mark = (mark[0] & mark[1], mark[1])
            pol.key = policy_key(pol.sel, pol.dir, pol.type, pol.if_id, mark[0], mark[1])
        key = pol.key
        by_selector = self.by_selector
        old = by_selector.get(key)
        if old is not None:
            if excl:
                return -E.EEXIST
            self._unlink(old)
            self._kill(old)
            pol.index = old.index
        else:
            pol.index = self.gen_index(pol.dir, pol.index)
        by_selector[key] = pol
        self.byidx[idx_key(pol.index)] = pol
        dir = pol.dir
        counts = self.xnet.spd_counts
        counts[dir] += 1
        pol.curlft_add = self.kernel.clock.wall()
        pol.curlft_use = 0
        # the wire form (Policy.wire_body) is built by the first dump or GETPOLICY that
        # needs it, as dump_one_policy builds each message: building it for every insert
        # cost the charon pair ~1,200 encodings that no reader asked for
        if pol.lft is not NO_LIMITS:
            self._arm(pol, 1)
        if old is None and counts[dir] > self.bydst_hmask[dir]:
            self._resize_check(dir)
        return 0

    def _unlink(self, pol: Policy) -> None:
        """Out of the by-selector table and the counts (the caller checked that it is
        linked). Its by-index entry goes to the policy that takes its index (an UPDPOLICY),
        or at the end of its grace period (delete, rcu_barrier)."""
        del self.by_selector[pol.key]
        self.xnet.spd_counts[pol.dir] -= 1

    def _kill(self, pol: Policy) -> None:
        """``xfrm_policy_kill``: dead, timer stopped, hardware state released."""
        pol.dead = True
        if pol.timer is not None:
            pol.timer.cancel()
            pol.timer = None
        offload.xfrm_dev_policy_release(pol)

    def delete(self, pol: Policy) -> int:
        """``xfrm_policy_delete``: ENOENT if it was already gone. What it reads besides the
        policy is the by-selector slot and entry a lookup by selector has just read."""
        by_selector = self.by_selector
        key = pol.key
        if pol.dead or by_selector.get(key) is not pol:
            return -E.ENOENT
        del by_selector[key]                # _unlink, inline
        self.xnet.spd_counts[pol.dir] -= 1
        self._kill(pol)
        # xfrm_policy_destroy: call_rcu(&pol->rcu, xfrm_policy_destroy_rcu)
        rcu = self._rcu
        rcu.append(pol)
        if len(rcu) == 1:
            self._rcu_timer = self.kernel.add_timer(RCU_GRACE, self.rcu_barrier)
        elif len(rcu) >= RCU_QHIMARK:
            self.rcu_barrier()
        return 0

    def rcu_barrier(self) -> None:
        """The grace period's end (``xfrm_policy_destroy_rcu`` of every deleted policy; the
        kernel timer armed by the first delete, or ``rcu_barrier`` itself): each dead
        policy's by-index entry goes, unless a new policy took the index, and with its last
        reference the policy, its key, templates and index. At a million policies each is a
        cold slot, entry and int and a free into a cold pool (bench_scale: ≈ 0.5 µs more
        than at 1k), paid here, between requests, and not by the DELPOLICY."""
        if self._rcu_timer is not None:
            self._rcu_timer.cancel()
            self._rcu_timer = None
        byidx, rcu = self.byidx, self._rcu
        for p in rcu:
            k = idx_key(p.index)
            if byidx.get(k) is p:
                del byidx[k]
        rcu.clear()

    def flush(self, ptype: int) -> list[Policy]:
        """``xfrm_policy_flush``: every policy of the type, socket policies excepted."""
        gone = [p for p in self.all.values()
                if p.type == ptype and policy_id2dir(p.index) < POLICY_MAX]
        for p in gone:
            self.delete(p)
        return gone

    def destroy(self) -> None:
        for p in list(self.all.values()):
            self.delete(p)
        self.rcu_barrier()

    def dev_flush(self, dev: NetDevice) -> None:
        """``xfrm_dev_policy_flush``: every policy offloaded to ``dev`` leaves the SPD."""
        for pol in list(self.all.values()):
            if pol.xdo is not None and pol.xdo.dev is dev:
                self.delete(pol)

    def _resize_check(self, dir: int) -> None:
        """``xfrm_bydst_should_resize`` → ``xfrm_hash_resize``: a direction's bydst table
        doubles once it holds more policies than its mask; the index table follows the
        total (what SPD_HINFO reports)."""
        counts = self.xnet.spd_counts
        if counts[dir] <= self.bydst_hmask[dir] or self.bydst_hmask[dir] + 1 >= self.xnet.HASHMAX:
            return
        total = 0
        for d in range(2 * POLICY_MAX):
            total += counts[d]
            if counts[d] > self.bydst_hmask[d] and self.bydst_hmask[d] + 1 < self.xnet.HASHMAX:
                self.bydst_hmask[d] = (self.bydst_hmask[d] + 1) * 2 - 1
        hmask = self.xnet.policy_idx_hmask
        if hmask + 1 < self.xnet.HASHMAX and total > hmask:
            self.xnet.policy_idx_hmask = (hmask + 1) * 2 - 1

    # -- lifetimes (xfrm_policy_timer) ----------------------------------------------------
    def _arm(self, pol: Policy, seconds: float) -> None:
        if pol.timer is not None:
            pol.timer.cancel()
            pol.timer = None
        if any(pol.lft[4:8]):
            pol.timer = self.kernel.add_timer(seconds, lambda: self._timer(pol))

    def _timer(self, pol: Policy) -> None:
        pol.timer = None
        if pol.dead:
            return
        now = self.kernel.clock.wall()
        soft_add, hard_add, soft_use, hard_use = pol.lft[4], pol.lft[5], pol.lft[6], pol.lft[7]
        nxt: float | None = None
        warn = False

        def soonest(t: float) -> None:
            nonlocal nxt
            nxt = t if nxt is None or t < nxt else nxt

        for limit, base, hard in ((hard_add, pol.curlft_add, True),
                                  (hard_use, pol.curlft_use or pol.curlft_add, True),
                                  (soft_add, pol.curlft_add, False),
                                  (soft_use, pol.curlft_use or pol.curlft_add, False)):
            if not limit:
                continue
            tmo = limit + base - now
            if tmo <= 0:
                if hard:
                    if self.delete(pol) == 0:
                        self.km_policy_expired(pol, True, 0)
                    return
                warn = True
                tmo = XFRM_KM_TIMEOUT
            soonest(tmo)
        if warn:
            self.km_policy_expired(pol, False, 0)
        if nxt is not None:
            pol.timer = self.kernel.add_timer(nxt, lambda: self._timer(pol))

    # -- key manager notifications --------------------------------------------------------
    def multicast(self, group: int, data: bytes) -> None:
        self.kernel.multicast(self.ns, NETLINK_XFRM, group, data)

    def listening(self, group: int) -> bool:
        return self.kernel.has_listeners(self.ns, NETLINK_XFRM, group)

    def km_policy_notify(self, pol: Policy, event: int, seq: int, pid: int,
                         byid: bool = False) -> None:
        # xfrm_nlmsg_multicast's gate, netlink_has_listeners inlined (Kernel.has_listeners)
        if self.ns.listeners.get(NETLINK_XFRM, 0) & _POLICY_BIT:
            self.xfrm_notify_policy(pol, event, seq, pid, byid)

    def xfrm_notify_policy(self, pol: Policy, event: int, seq: int, pid: int,
                           byid: bool = False) -> None:
        """:meth:`km_policy_notify` past its listener gate, for a caller that has tested it
        (``xfrm_add_policy``'s C path: without a listener, not a call more per NEWPOLICY)."""
        self.multicast(G.POLICY, pol.notify_message(event, seq, pid, byid))

    def km_flush_notify(self, ptype: int, seq: int, pid: int) -> None:
        self.multicast(G.POLICY, flush_message(ptype, seq, pid))

    def km_policy_expired(self, pol: Policy, hard: bool, pid: int) -> None:
        self.multicast(G.EXPIRE, pol.polexpire_message(hard, pid))


def migrate_selector_match(cmp: bytes, tgt: bytes) -> bool:
    """``xfrm_migrate_selector_match``."""
    if cmp[44] == IPSEC_ULPROTO_ANY:
        fam = int.from_bytes(cmp[40:42], "little")
        w = 4 if fam == X.AF_INET else 16
        return (tgt[40:42] == cmp[40:42] and tgt[0:w] == cmp[0:w] and tgt[16:16 + w] == cmp[16:16 + w]
                and tgt[42:44] == cmp[42:44])
    return tgt == cmp


def spd(xnet: XfrmNet) -> PolicyDb:
    """The namespace's :class:`PolicyDb`."""
    return xnet.spd
