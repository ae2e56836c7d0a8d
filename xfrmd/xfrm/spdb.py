"""The Security Policy Database of one namespace (xfrm_policy.c): the policy_all list (dumps
walk it newest first), the by-index and by-selector indexes, index generation, the per-
direction counts and hash sizes GETSPDINFO reports, and the policy lifetime timers."""
from __future__ import annotations

import errno as E

from netlink_codec import xfrm as X
from netlink_codec.netlink import NETLINK_XFRM

from .policy import Policy, flush_message, policy_id2dir

G = X.XfrmNlGrp
XFRM_KM_TIMEOUT = 30
POLICY_MAX = 3


class PolicyDb:
    def __init__(self, xnet):
        self.xnet = xnet
        self.ns = xnet.ns
        self.kernel = xnet.ns.kernel
        self.all: dict[int, Policy] = xnet.policy_all   # insertion order = oldest first
        self.byidx: dict[int, Policy] = {}
        self.by_selector: dict[tuple, Policy] = {}
        self.idx_generator = 0
        self.bydst_hmask = [7] * (2 * POLICY_MAX)

    # -- lookups ------------------------------------------------------------------------
    def byid(self, mark, if_id: int, ptype: int, dir: int, index: int):
        """``xfrm_policy_byid`` (without the delete): None unless type, if_id and the mark
        (value and mask) match and the index belongs to ``dir``."""
        if policy_id2dir(index) != dir:
            return None
        p = self.byidx.get(index)
        if p is None or p.type != ptype or p.if_id != if_id or p.mark != tuple(mark):
            return None
        return p

    def bysel(self, mark, if_id: int, ptype: int, dir: int, sel: bytes):
        """``xfrm_policy_bysel_ctx``."""
        return self.by_selector.get((dir, ptype, if_id, sel, tuple(mark)))

    def walk_newest_first(self):
        return reversed(list(self.all.values()))

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
            if idx not in self.byidx:
                return idx

    def insert(self, pol: Policy, excl: bool) -> int:
        """``xfrm_policy_insert``: EEXIST for a NEWPOLICY that exists; an UPDPOLICY takes
        the old policy's index and place (it moves to the head of the dump). The mark value
        is stored masked first, as xfrm_policy_insert sanitizes it (lookups compare the
        user's mark unmasked, so a GETPOLICY with value 5 mask 0 misses what it added)."""
        pol.mark = (pol.mark[0] & pol.mark[1], pol.mark[1])
        old = self.by_selector.get(pol.key)
        if old is not None and excl:
            return -E.EEXIST
        self._link(pol)
        if old is not None:
            self._unlink(old)
            self._kill(old)
            pol.index = old.index
        else:
            pol.index = self.gen_index(pol.dir, pol.index)
        self.byidx[pol.index] = pol
        pol.curlft_add = self.kernel.clock.wall()
        pol.curlft_use = 0
        # the cached wire form: built once the ACK is out, not in the first dump
        if self.kernel.idle_work is not None:
            self.kernel.idle_work.append(pol.wire_body)
        self._arm(pol, 1)
        if old is None:
            self._resize_check(pol.dir)
        return 0

    def _link(self, pol: Policy) -> None:
        self.all[id(pol)] = pol
        self.by_selector[pol.key] = pol
        self.xnet.spd_counts[pol.dir] += 1

    def _unlink(self, pol: Policy) -> None:
        del self.all[id(pol)]
        if self.by_selector.get(pol.key) is pol:
            del self.by_selector[pol.key]
        if self.byidx.get(pol.index) is pol:
            del self.byidx[pol.index]
        self.xnet.spd_counts[pol.dir] -= 1

    def _kill(self, pol: Policy) -> None:
        """``xfrm_policy_kill``: dead, timer stopped, hardware state released."""
        from . import offload
        pol.dead = True
        if pol.timer is not None:
            pol.timer.cancel()
            pol.timer = None
        if pol.xdo is not None:
            offload.xfrm_dev_policy_delete(pol)
            offload.xfrm_dev_policy_free(pol)

    def delete(self, pol: Policy) -> int:
        """``xfrm_policy_delete``: ENOENT if it was already gone."""
        if pol.dead or id(pol) not in self.all:
            return -E.ENOENT
        self._unlink(pol)
        self._kill(pol)
        return 0

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
        nxt = None
        warn = False

        def soonest(t):
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
        if self.listening(G.POLICY):
            self.multicast(G.POLICY, pol.notify_message(event, seq, pid, byid))

    def km_flush_notify(self, ptype: int, seq: int, pid: int) -> None:
        self.multicast(G.POLICY, flush_message(ptype, seq, pid))

    def km_policy_expired(self, pol: Policy, hard: bool, pid: int) -> None:
        self.multicast(G.EXPIRE, pol.polexpire_message(hard, pid))


def spd(xnet) -> PolicyDb:
    """The namespace's :class:`PolicyDb`, created on first use."""
    db = getattr(xnet, "spd", None)
    if db is None:
        db = xnet.spd = PolicyDb(xnet)
    return db
