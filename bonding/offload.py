"""The bond's xfrmdev_ops (``bond_ipsec_*``) and the bond's LAG offload hooks. What depends
on ``bond.lag_model`` (docs/bonding.md) is one :class:`~bonding.lag.common.LagModel` per
model, chosen from :data:`LAG_MODELS` by name:

* ``off`` — upstream (bonding/lag/upstream.py): an SA lives on the active slave and moves on
  failover;
* ``replicated`` — the RFC as posted (bonding/lag/replicated.py): one replica per running
  slave of a LAG-eligible bond;
* ``shared`` — the newest series (bonding/lag/shared.py): one install on the hash-pinned
  slave, valid on every slave of one offload engine.

What depends on how a state was offloaded (on one slave, replicated, shared) is the state's
record in ``bond.ipsec_list`` (:class:`BondIpsec` and its subclasses). Extack texts are the
patches' (``NL_SET_ERR_MSG_MOD``: "bonding: …"). The labels R1–R4, P38–P43, X01–X06 and
S1–S7 are defined in docs/bonding.md."""
from __future__ import annotations

import errno as E
from typing import Any

from devices.xfrmdev import XFRM_DEV_OFFLOAD_PACKET, OffloadError, XfrmDevOps
from netlink_codec import xfrm as X

from .hash import bond_ipsec_xfrm_hash
from .lag import replicated, shared, upstream
from .lag.common import (AB, Account, BondIpsec, Bonding, Device, Eligibility, LagModel,
                         XPolicy, XState, bond_ipsec_lag_end_flush, bond_ipsec_lag_flush,
                         bond_mode_can_use_lag_xfrm, delete_on_real, find_entry, hw_esp, ops_of,
                         refuse)
from .lag.replicated import bond_ipsec_lag_add_slave
from .lag.upstream import bond_ipsec_add_sa_all, bond_ipsec_del_sa_all

__all__ = [
    # defined here
    "LAG_MODELS", "MODELS", "BondXfrmDevOps", "bond_ipsec_config_change", "bond_ipsec_describe",
    "bond_ipsec_slave_features_changed", "bond_ipsec_topology_begin", "bond_ipsec_topology_end",
    "bond_ipsec_xmit_dev", "bond_lag_esp_eligible", "bond_lag_offload", "bond_xfrm_esp_wanted",
    "lag_model_of",
    # from the models, for the bond, the feature code and the tests
    "BondIpsec", "Eligibility", "LagModel", "bond_ipsec_add_sa_all", "bond_ipsec_del_sa_all",
    "bond_ipsec_lag_add_slave", "bond_ipsec_lag_flush", "bond_ipsec_xfrm_hash",
    "bond_mode_can_use_lag_xfrm",
]

LAG_MODELS: dict[str, LagModel] = {
    "off": upstream.MODEL,
    "replicated": replicated.MODEL,
    "shared": shared.MODEL,
}
MODELS = tuple(LAG_MODELS)


def lag_model_of(bond: Bonding) -> LagModel:
    return LAG_MODELS[bond.lag_model]


def bond_lag_esp_eligible(bond: Bonding) -> Eligibility:
    """May the bond's esp-hw-offload be on (``bond_fix_features`` / ``bond_set_features``
    of the bond's model)? ``(ok, reason)``; the reason says which slave fails which rule.

    * ``off`` (upstream) and active-backup in any model: nothing is checked.
    * ``replicated`` (R3): a LAG-eligible bond needs a running slave, and every running
      slave must be able to do HW_ESP (its flags are checked at SA add time).
    * ``shared`` (P39): LAG-eligible, and every running slave lag-capable (add/delete/free,
      HW_ESP in features|hw_features, LOWER_HANDLE + LAG_SHARED_STATE, lag_compatible) and
      compatible both ways with the first running slave."""
    return lag_model_of(bond).esp_eligible(bond)


def bond_ipsec_xmit_dev(bond: Bonding, x: XState) -> Device | None:
    """The slave a packet-offloaded state's packets leave through: the RFC pins to the
    first usable slave from ``hash % count`` holding a replica (``bond_ipsec_lag_xmit_dev``);
    the newest bond always uses the pinned real_dev while it runs; upstream the active
    slave."""
    entry = find_entry(bond, x)
    return None if entry is None else entry.xmit_dev(bond)


def bond_ipsec_describe(bond: Bonding, e: BondIpsec) -> dict[str, Any]:
    """One bond SA for show-offload: model, which slave holds it, per-slave handles and
    the counters of each hardware context."""
    return e.describe(bond)


# -- the ops ----------------------------------------------------------------------------------

class BondXfrmDevOps(XfrmDevOps):
    name = "bonding"
    module = "bonding"
    flags = 0
    has_advance_esn = True         # the bond forwards it to the active (or pinned) slave
    has_update_stats = True
    has_offload_ok = True          # bond_ipsec_offload_ok

    def __init__(self, bond: Bonding):
        self.bond = bond

    @property
    def model(self) -> LagModel:
        return lag_model_of(self.bond)

    @property
    def has_packet_xmit(self) -> bool:  # type: ignore[override]
        """The newest series adds ``bond_ipsec_packet_xmit``; upstream and the RFC have none."""
        return self.model.has_packet_xmit

    # the proposed models add xdo_dev_state_lower_handle and (validation-only) policy_add
    @property
    def has_lower_handle(self) -> bool:  # type: ignore[override]
        return self.model.has_lower_handle

    @property
    def has_policy_ops(self) -> bool:  # type: ignore[override]
        """Upstream: packet-offload policies cannot target a bond."""
        return self.model.has_policy_ops

    # the net core's feature code asks the bond through these (bond_fix_features,
    # bond_set_features turning esp-hw-offload off)
    def xdo_dev_lag_esp_eligible(self, dev: Device) -> bool:
        return bool(bond_lag_esp_eligible(self.bond))

    def xdo_dev_lag_flush(self, dev: Device) -> None:
        bond_ipsec_lag_flush(self.bond)

    # -- states -------------------------------------------------------------------------------
    def xdo_dev_state_add(self, dev: Device, x: XState) -> None:
        self.model.add_sa(self.bond, dev, x)

    def xdo_dev_state_delete(self, dev: Device, x: XState) -> None:
        """``bond_ipsec_del_sa``: a replicated state is deleted on every instance (reverse
        order); otherwise on ``xso.real_dev``."""
        entry = find_entry(self.bond, x)
        if entry is None:
            delete_on_real(dev, x, None)
        else:
            entry.delete(dev)

    def xdo_dev_state_free(self, dev: Device, x: XState) -> None:
        """``bond_ipsec_free_sa``: unlink the entry, free on the lower(s), zero real_dev and
        (in the LAG models) the handle."""
        self.model.free_sa(self.bond, dev, x)

    # -- datapath questions -------------------------------------------------------------------
    def xdo_dev_offload_ok(self, x: XState) -> bool:
        return self.model.offload_ok(self.bond, x)

    def xdo_dev_state_lower_handle(self, dev: Device, x: XState, lower_dev: Device) -> int:
        """``bond_ipsec_lower_handle`` of the model (R1 / P39)."""
        return self.model.lower_handle(self.bond, x, lower_dev)

    def xdo_dev_state_advance_esn(self, x: XState) -> None:
        real = self._forward_dev(x)
        if real is not None and ops_of(real).has_advance_esn:
            ops_of(real).xdo_dev_state_advance_esn(x)

    def xdo_dev_state_update_stats(self, x: XState) -> None:
        """Upstream/AB: the active slave's op. RFC LAG: nothing (left as upstream, which only
        knows active-backup). Shared: the pinned lower's captured ops — its one context holds
        the totals."""
        real = self._forward_dev(x)
        if real is not None and ops_of(real).has_update_stats:
            ops_of(real).xdo_dev_state_update_stats(x)

    def _forward_dev(self, x: XState) -> Device | None:
        entry = find_entry(self.bond, x)
        return None if entry is None else entry.forward_dev(self.bond)

    # -- policies (R2 and P39: validation only, nothing reaches the lowers) ------------------
    def xdo_dev_policy_add(self, dev: Device, pol: XPolicy) -> None:
        """``bond_ipsec_policy_add``."""
        b = self.bond
        if pol.xdo.type != XFRM_DEV_OFFLOAD_PACKET:
            refuse("Bond supports only XFRM packet policies", E.EOPNOTSUPP)
        if pol.dir >= 3:
            refuse("Bond does not offload socket policies", E.EOPNOTSUPP)
        if len(pol.templates) != 1 or pol.templates[0].proto != X.IPPROTO_ESP:
            refuse("Bond offloads ESP policies only", E.EOPNOTSUPP)
        if not hw_esp(b.dev):
            refuse("Bond IPsec offload is disabled", E.EOPNOTSUPP)
        if b.mode != AB and not bond_mode_can_use_lag_xfrm(b):
            refuse("Bond mode cannot use XFRM packet offload", E.EOPNOTSUPP)
        if pol.xdo.dir not in (1, 2, 3):
            refuse("Bond does not support this policy direction", E.EOPNOTSUPP)

    # -- emulation -------------------------------------------------------------------------------
    def hw_traffic(self, dev: Device, x: XState, packets: int, nbytes: int) -> None:
        """``xfrmd ctl offload-traffic BOND SPI``: the packets cross the slave the model
        sends them through (active / pinned); that slave's driver counts them in the context
        it resolves with ``xfrm_dev_state_lower_handle``."""
        entry = find_entry(self.bond, x)
        if entry is None:
            refuse("xfrmd: the SA is not offloaded to a slave", E.EOPNOTSUPP)
        entry.hw_traffic(self.bond, dev, packets, nbytes)

    def hw_xmit(self, dev: Device, x: XState, nbytes: int, account: Account | None,
                spray: Any = None) -> tuple[Device, int | None]:
        """One packet-offloaded packet of ``x`` through the bond (xfrmd.datapath): the model
        picks the slave, whose driver finds its hardware SA with
        ``xfrm_dev_state_lower_handle(x, slave)`` and numbers it in its own context:

        * RFC replicas: the TX pin (``bond_ipsec_xmit_dev``) — or, with ``spray`` (a
          :class:`bonding.hash.Flow`), the slave ``bond_xmit_hash`` picks for the inner flow;
        * newest series: ``bond_ipsec_packet_xmit`` — the pinned real_dev while it runs, else
          EHOSTUNREACH; the core numbers it on the one state (X05: ``account``);
        * upstream: the active slave holding the state."""
        entry = find_entry(self.bond, x)
        if entry is None:
            raise OffloadError(E.EHOSTUNREACH, "bonding: the SA is not offloaded to a slave")
        return entry.hw_xmit(self.bond, dev, nbytes, account, spray)

    def hw_recv(self, dev: Device, x: XState, rx_dev: Device, seq: int, nbytes: int,
                account: Account | None) -> None:
        """One packet-offloaded packet of the IN state ``x`` arriving on slave ``rx_dev``:
        that slave's driver resolves its hardware SA and checks replay in the context that
        owns it — RFC replicas: the replica's (per port for mlx5-like, engine-wide for the
        SOE: scenario S3 of docs/bonding.md); newest series: the core's check on the one
        state (X06); upstream: the active slave holding the state."""
        entry = find_entry(self.bond, x)
        if entry is None:
            raise OffloadError(0, "bonding: the SA is not offloaded to a slave")
        entry.hw_recv(self.bond, dev, rx_dev, seq, nbytes, account)

    def table(self, dev: Device) -> list[dict[str, Any]]:
        return [e.describe(self.bond) for e in self.bond.ipsec_list]

    def describe(self, dev: Device) -> dict[str, Any]:
        """Extra show-offload fields for the bond itself."""
        b = self.bond
        ok, why = bond_lag_esp_eligible(b)
        out = {"lag_model": b.lag_model, "mode": b.mode, "xmit_hash_policy": b.xmit_hash_policy,
               "lag_eligible": bond_mode_can_use_lag_xfrm(b),
               "slaves": [s.name for s in b.slaves],
               "usable_slaves": [s.name for s in b.usable_slaves()]}
        if b.mode == AB:
            out["active_slave"] = b.active.name if b.active is not None else None
        if b.lag_require:                   # xfrmd's --require switch (lag/require.py)
            out["lag_require"] = list(b.lag_require)
        if not ok:
            out["esp_ineligible"] = why
        return out


# -- the bond's hooks ---------------------------------------------------------------------------

def bond_ipsec_topology_begin(bond: Bonding, event: str, slave: Device | None = None) -> None:
    """Before a membership / link change (enslave, release, a slave's UP, DOWN or carrier
    CHANGE): the newest series flushes every bond state of a LAG-eligible bond and blocks
    adds until :func:`bond_ipsec_topology_end` (P39, P40)."""
    lag_model_of(bond).topology_begin(bond, event, slave)


def bond_ipsec_topology_end(bond: Bonding, event: str, slave: Device | None = None) -> None:
    """After the change: the newest series ends the flush; the RFC adds replicas to a
    slave that now runs (enslave, UP, CHANGE) or removes a stopped or departed slave's
    replicas (DOWN, release)."""
    if getattr(bond, "_lag_flushing", 0):
        bond._lag_flushing -= 1
        bond_ipsec_lag_end_flush(bond)
    lag_model_of(bond).topology_end(bond, event, slave)


def bond_lag_offload(bond: Bonding) -> bool:
    """Does the bond's model offload on a LAG (``replicated``, ``shared``; not upstream)?"""
    return lag_model_of(bond).lag_offload


def bond_xfrm_esp_wanted(bond: Bonding, entering_lag: bool = False) -> bool | None:
    """The ESP *wanted* features of the bond's model (``bond_set_xfrm_features``): True
    set, False cleared, None the user's choice left alone."""
    return lag_model_of(bond).esp_wanted(bond, entering_lag)


def bond_ipsec_slave_features_changed(bond: Bonding, slave: Device) -> None:
    """A slave's NETDEV_FEAT_CHANGE: the RFC tries to replicate onto it (R4)."""
    lag_model_of(bond).slave_features_changed(bond, slave)


def bond_ipsec_config_change(bond: Bonding, old_eligible: bool, new_eligible: bool) -> None:
    """Mode or xmit_hash_policy change (P40 / R4): the newest series flushes when the old
    or the new configuration is LAG-eligible, the RFC only when leaving LAG; upstream
    does nothing."""
    lag_model_of(bond).config_change(bond, old_eligible, new_eligible)
