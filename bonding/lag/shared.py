"""Model ``shared``: the newest series (P38–P40 of docs/bonding.md). One install on the
hash-pinned slave, valid on every slave of one offload engine; topology changes flush every
bond-owned state."""
from __future__ import annotations

import errno as E
from typing import Any

from devices.xfrmdev import (XFRMDEV_OPS_F_LAG_SHARED_STATE, XFRMDEV_OPS_F_LOWER_HANDLE,
                             OffloadError)

from ..hash import bond_ipsec_xfrm_hash
from .common import (AB, OFFLOAD_TYPES, Account, BondIpsec, Bonding, Device, Eligibility,
                     LagModel, XState, add_on_slave, bond_ipsec_lag_begin_flush,
                     bond_ipsec_lag_flush, bond_mode_can_use_lag_xfrm,
                     bond_xfrm_dev_state_flush, compatible, esp_capable, find_entry, hw_esp,
                     is_bond, lag_esp_eligible, lag_state_checks, lower_recv, lower_xmit,
                     ops_of, refuse, running)
from .require import lag_require_check


# -- slave eligibility (P39) ---------------------------------------------------------------------

def bond_ipsec_slave_has_xfrm_ops(dev: Device, need_free: bool = True) -> bool:
    """Not a bond, and add + delete (+ free in the newest series) exist. The RFC's
    ``bond_ipsec_slave_has_xfrm_ops`` asks for add and delete only."""
    ops = ops_of(dev)
    if dev is None or is_bond(dev) or ops is None:
        return False
    return not need_free or bool(ops.has_state_free)


def _both_flags(ops: Any) -> bool:
    need = XFRMDEV_OPS_F_LOWER_HANDLE | XFRMDEV_OPS_F_LAG_SHARED_STATE
    return ops is not None and ops.flags & need == need


def bond_ipsec_lag_slave_capable(dev: Device) -> bool:
    """``bond_ipsec_lag_slave_capable`` (P39)."""
    ops = ops_of(dev)
    return bool(bond_ipsec_slave_has_xfrm_ops(dev) and esp_capable(dev) and _both_flags(ops)
                and ops.has_lag_compatible)


def bond_ipsec_lag_slave_ok(dev: Device) -> bool:
    """``bond_ipsec_lag_slave_ok`` (P39): capable and HW_ESP on now."""
    return bond_ipsec_lag_slave_capable(dev) and hw_esp(dev)


def bond_ipsec_lag_pair_ok(a: Device, b: Device) -> bool:
    return bond_ipsec_lag_slave_ok(a) and bond_ipsec_lag_slave_ok(b) and compatible(a, b)


def _shared_slave_problem(dev: Device) -> str | None:
    """Why ``bond_ipsec_lag_slave_capable`` is false for ``dev``, or None."""
    ops = ops_of(dev)
    if ops is None or is_bond(dev):
        return "no xfrmdev_ops" if ops is None else "a bond"
    if not ops.has_state_free:
        return "no xdo_dev_state_free"
    if not esp_capable(dev):
        return "no esp-hw-offload"
    if not ops.flags & XFRMDEV_OPS_F_LOWER_HANDLE:
        return "no XFRMDEV_OPS_F_LOWER_HANDLE"
    if not ops.flags & XFRMDEV_OPS_F_LAG_SHARED_STATE:
        return "no XFRMDEV_OPS_F_LAG_SHARED_STATE"
    if not ops.has_lag_compatible:
        return "no xdo_dev_state_lag_compatible"
    return None


def _slaves_eligible(slaves: list[Device]) -> Eligibility:
    """Every running slave lag-capable and compatible both ways with the first one."""
    for s in slaves:
        why = _shared_slave_problem(s)
        if why:
            return Eligibility(False, f"slave {s.name}: {why}")
    first = slaves[0]
    for s in slaves[1:]:
        if not compatible(first, s):
            return Eligibility(False, f"slaves {first.name} and {s.name} do not share one "
                                      "offload engine (xdo_dev_state_lag_compatible)")
    return Eligibility(True)


def bond_ipsec_lag_select_dev(bond: Bonding, x: XState) -> Device | None:
    """``bond_ipsec_lag_select_dev`` (P39): usable[hash % count], which must be slave_ok
    and pair_ok with every usable slave, else None."""
    usable = bond.usable_slaves()
    if not usable:
        return None
    pick = usable[bond_ipsec_xfrm_hash(x) % len(usable)]
    if not bond_ipsec_lag_slave_ok(pick):
        return None
    if not all(bond_ipsec_lag_pair_ok(pick, s) for s in usable):
        return None
    return pick


# -- the bond's records --------------------------------------------------------------------------

class SharedIpsec(BondIpsec):
    """A LAG state installed once, on the pinned slave; the one hardware context (the
    lower's: an SOE engine slot) serves every member that resolves its handle."""
    __slots__ = ()

    def __init__(self, x: XState, slave: Device, ops: Any):
        super().__init__(x, slave, ops, lag=True)

    def forward_dev(self, bond: Bonding) -> Device | None:
        """ESN advance and stats: the pinned lower's ops (its one context holds the
        totals)."""
        return self.real_dev

    def hw_xmit(self, bond: Bonding, dev: Device, nbytes: int, account: Account | None,
                spray: Any) -> tuple[Device, int | None]:
        """``bond_ipsec_packet_xmit``: the pinned real_dev while it runs, else EHOSTUNREACH;
        the core numbers it on the one state (X05) and the lower's context carries it."""
        slave = self.xmit_dev(bond)
        if slave is None:
            raise OffloadError(E.EHOSTUNREACH, "bonding: the pinned slave is gone or not running")
        return lower_xmit(slave, self.x, nbytes, account)

    def hw_recv(self, bond: Bonding, dev: Device, rx_dev: Device, seq: int, nbytes: int,
                account: Account | None) -> None:
        """Any member: its driver resolves the one handle (0 on a slave not pair_ok with
        the pinned one) and the core's check on the one state decides (X06)."""
        lower_recv(rx_dev, self.x, seq, nbytes, account)

    def model_label(self, bond: Bonding) -> str:
        return "shared"

    def slaves_holding(self, bond: Bonding) -> list[Device]:
        return list(bond.slaves)

    def describe(self, bond: Bonding) -> dict[str, Any]:
        """Also the slaves the state is valid on (a non-zero handle)."""
        d = super().describe(bond)
        usable = {s.name for s in bond.usable_slaves()}
        d["valid_on"] = [r["slave"] for r in d["lowers"] if r["handle"] and r["slave"] in usable]
        return d


# -- the model -----------------------------------------------------------------------------------

def _shared_add_sa(b: Bonding, x: XState) -> None:
    """``bond_ipsec_add_sa`` of the newest series (P39), checks in the order of
    docs/bonding.md's table."""
    lag = bond_mode_can_use_lag_xfrm(b)
    if b.mode != AB and not lag:
        refuse("Bond mode does not support IPsec offload", E.EOPNOTSUPP)
    if lag:
        lag_state_checks(b, x, refuse_acquire=True)
        slave = bond_ipsec_lag_select_dev(b, x)
    else:
        slave = b.active
    if slave is None:
        refuse("No eligible IPsec offload slave", E.ENODEV)
    if lag:
        lag_require_check(b, b.usable_slaves())         # xfrmd's --require switch
    if not bond_ipsec_slave_has_xfrm_ops(slave):
        refuse("Slave does not support IPsec offload", E.EOPNOTSUPP)
    ops = ops_of(slave)
    # real_dev / real_ops are set before the lower add: the lower sees itself as real_dev
    add_on_slave(x, slave, ops)
    if lag and not x.xso.offload_handle:
        ops.xdo_dev_state_delete(slave, x)
        ops.xdo_dev_state_free(slave, x)
        x.xso.real_dev = None
        refuse("LAG slave did not return an offload handle", E.EINVAL)
    b.ipsec_list.append(SharedIpsec(x, slave, ops) if lag else BondIpsec(x, slave, ops))


class SharedModel(LagModel):
    name = "shared"
    has_packet_xmit = True

    def add_sa(self, bond: Bonding, dev: Device, x: XState) -> None:
        _shared_add_sa(bond, x)

    def free_sa(self, bond: Bonding, dev: Device, x: XState) -> None:
        """Also zeroes the handle."""
        super().free_sa(bond, dev, x)
        x.xso.offload_handle = 0

    def offload_ok(self, bond: Bonding, x: XState) -> bool:
        """On a running slave holding the state, which (LAG) resolves a handle for it."""
        real = x.xso.real_dev
        if real is None or real is bond.dev or is_bond(real) or not running(real):
            return False
        if bond_mode_can_use_lag_xfrm(bond) and not self.lower_handle(bond, x, real):
            return False
        return x.xso.type in OFFLOAD_TYPES

    def lower_handle(self, bond: Bonding, x: XState, lower_dev: Device) -> int:
        """The one handle, for the bond, the pinned slave and every slave pair_ok with it.
        Outside LAG (active-backup) the slave holding the state: the newest series' helper
        (P35) answers ``xso.real_dev`` itself before it asks the bond, the RFC's helper (patch
        1/4, :func:`xfrmd.xfrm.offload.xfrm_dev_state_lower_handle`) asks the bond first."""
        if not bond_mode_can_use_lag_xfrm(bond):
            real = x.xso.real_dev
            return int(x.xso.offload_handle) if real is not None and real is lower_dev else 0
        entry = find_entry(bond, x)
        real = x.xso.real_dev
        if entry is None or not entry.lag or real is None:
            return 0
        if lower_dev is bond.dev or lower_dev is real:
            return int(x.xso.offload_handle)
        if (getattr(lower_dev, "master", None) is bond.dev
                and bond_ipsec_lag_pair_ok(real, lower_dev)):
            return int(x.xso.offload_handle)
        return 0

    def esp_eligible(self, bond: Bonding) -> Eligibility:
        """LAG-eligible, and every running slave lag-capable (add/delete/free, HW_ESP in
        features|hw_features, LOWER_HANDLE + LAG_SHARED_STATE, lag_compatible) and
        compatible both ways with the first running slave."""
        return lag_esp_eligible(bond, _slaves_eligible)

    def topology_begin(self, bond: Bonding, event: str, slave: Device | None) -> None:
        """A LAG-eligible bond flushes every bond state and blocks adds until the change
        ends (P39, P40)."""
        if bond_mode_can_use_lag_xfrm(bond):
            bond_ipsec_lag_begin_flush(bond)
            bond_xfrm_dev_state_flush(bond)
            bond._lag_flushing = getattr(bond, "_lag_flushing", 0) + 1

    def config_change(self, bond: Bonding, old_eligible: bool, new_eligible: bool) -> None:
        """The old or the new configuration LAG-eligible: flush (P40)."""
        if old_eligible or new_eligible:
            bond_ipsec_lag_flush(bond)

    def esp_wanted(self, bond: Bonding, entering_lag: bool) -> bool | None:
        """P40: wanted in active-backup and in LAG-eligible configurations, cleared
        otherwise; they take effect once every running slave qualifies."""
        return bool(bond.mode == AB or bond_mode_can_use_lag_xfrm(bond))


MODEL = SharedModel()
