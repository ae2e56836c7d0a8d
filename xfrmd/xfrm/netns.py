"""Per-namespace XFRM state (``struct netns_xfrm``)."""
from __future__ import annotations

from typing import TYPE_CHECKING, cast

from netlink_codec import xfrm as X

from .policy import Policy
from .sadb import StateDb
from .spdb import PolicyDb
from .state_list import StateList

if TYPE_CHECKING:
    from ..kernel import NetNamespace


class XfrmNet:
    # xfrm_state_hashmax / xfrm_policy_hashmax (1 Mi buckets)
    HASHMAX = 1024 * 1024

    def __init__(self, ns: NetNamespace):
        self.ns = ns
        # state_all (the SAD's, below) / policy_all: insertion-ordered; dumps walk them
        # newest first
        self.policy_all: dict[bytes, Policy] = {}   # by selector (PolicyDb.by_selector)
        self.state_hmask = 7          # xfrm_state_init: 8 buckets
        self.policy_idx_hmask = 7     # xfrm_policy_init: 8 index buckets
        self.hthresh4 = (32, 32)      # policy_hthresh lbits4/rbits4
        self.hthresh6 = (128, 128)
        # SETDEFAULT: in, fwd, out
        self.policy_default = [X.XFRM_USERPOLICY_ACCEPT] * 3
        self.spd_counts = [0] * 6     # policy_count[dir] for IN OUT FWD and the socket dirs
        self.sad = StateDb(self)      # xfrm_state_init
        self.spd = PolicyDb(self)     # xfrm_policy_init

    @property
    def state_all(self) -> StateList:
        """Every state not deleted, insertion order (``StateDb.all``: the deleted ones of
        the current grace period are let go first)."""
        return self.sad.all

    def flush_all(self) -> None:
        self.sad.destroy()            # the SAD's indexes and timers (xfrm_state_fini)
        self.state_all.clear()
        self.policy_all.clear()
        self.spd.rcu_barrier()
        self.spd.byidx.clear()


def xfrm_net(ns: NetNamespace) -> XfrmNet:
    """``net->xfrm``: the namespace's XFRM part (made by ``XfrmUser.init_net``)."""
    return cast(XfrmNet, getattr(ns, "xfrm"))
