"""Model ``off``: upstream bond_main.c ``bond_ipsec_*``. An SA offloaded on the bond lives
on the current active slave and moves on failover (``bond_ipsec_del_sa_all`` /
``bond_ipsec_add_sa_all``, which every model runs for its active-backup states)."""
from __future__ import annotations

import errno as E

from .common import (AB, LOWER_ERRORS, BondIpsec, Bonding, Device, LagModel, XState,
                     add_on_slave, is_bond, log, ops_of, refuse)


def upstream_add_sa(b: Bonding, x: XState) -> None:
    """``bond_ipsec_add_sa`` (upstream): the mode is not checked; whatever
    curr_active_slave is."""
    slave = b.active
    if slave is None:
        refuse(None, E.ENODEV)
    ops = ops_of(slave)
    if ops is None or is_bond(slave):
        refuse("Slave does not support ipsec offload", E.EINVAL)
    add_on_slave(x, slave, ops)
    b.ipsec_list.append(BondIpsec(x, slave, ops))


def upstream_offload_ok(b: Bonding, x: XState) -> bool:
    """``bond_ipsec_offload_ok`` (upstream): active-backup, on the active slave."""
    return bool(b.mode == AB and b.active is not None and x.xso.real_dev is b.active)


class UpstreamModel(LagModel):
    name = "off"
    lag_offload = False
    has_lower_handle = False
    has_policy_ops = False       # packet-offload policies cannot target a bond

    def add_sa(self, bond: Bonding, dev: Device, x: XState) -> None:
        upstream_add_sa(bond, x)

    def offload_ok(self, bond: Bonding, x: XState) -> bool:
        return upstream_offload_ok(bond, x)

    def esp_wanted(self, bond: Bonding, entering_lag: bool) -> bool | None:
        """Wanted in active-backup, cleared otherwise (``bond_option_mode_set``)."""
        return bool(bond.mode == AB)


MODEL = UpstreamModel()


def bond_ipsec_del_sa_all(bond: Bonding) -> None:
    """Before a failover: every (non-LAG) offloaded SA leaves the old active slave."""
    if bond.mode != AB:
        return
    for e in bond.ipsec_list:
        x = e.x
        if e.lag:
            continue
        real = x.xso.real_dev
        if real is None or real is bond.dev:
            continue
        x.xso.real_dev = None
        e.real_dev = None
        ops = ops_of(real)
        ops.xdo_dev_state_delete(real, x)
        if ops.has_state_free:
            ops.xdo_dev_state_free(real, x)


def bond_ipsec_add_sa_all(bond: Bonding) -> None:
    """After a failover: each SA is added on the new active slave; a refusal leaves it
    without offload (the kernel only warns "failed to add SA")."""
    if bond.mode != AB:
        return
    slave = bond.active
    ops = ops_of(slave)
    if ops is None:
        if bond.ipsec_list:
            log.warning("%s: no slave xdo_dev_state_add", bond.dev.name)
        return
    for e in bond.ipsec_list:
        x = e.x
        if e.lag or x.xso.real_dev is slave:
            continue
        x.xso.real_dev = slave
        try:
            ops.xdo_dev_state_add(slave, x)
        except LOWER_ERRORS:
            x.xso.real_dev = None
            log.warning("%s: failed to add SA", bond.dev.name)
            continue
        e.real_dev, e.real_ops = slave, ops
