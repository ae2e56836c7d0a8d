"""The bond's xfrmdev_ops. Model ``off`` is upstream (bond_main.c ``bond_ipsec_*``): an SA
offloaded on the bond lives on the current active slave and moves on failover
(``bond_ipsec_del_sa_all`` / ``bond_ipsec_add_sa_all``). The RFC's ``replicated`` and the
newest ``shared`` models are selectable but not modelled yet (they refuse with an
``xfrmd:`` message)."""
from __future__ import annotations

import errno as E
import logging

from devices.xfrmdev import XfrmDevOps, refuse

log = logging.getLogger("xfrmd.bonding")


class BondXfrmDevOps(XfrmDevOps):
    name = "bonding"
    module = "bonding"
    flags = 0
    has_advance_esn = True         # the bond forwards it to the active slave
    has_update_stats = True
    has_policy_ops = False         # packet-offload policies cannot target a bond

    def __init__(self, bond):
        self.bond = bond

    def xdo_dev_state_add(self, dev, x) -> None:
        """``bond_ipsec_add_sa``: the mode is not checked; whatever curr_active_slave is."""
        b = self.bond
        if b.lag_model != "off":
            refuse(f"xfrmd: LAG model {b.lag_model!r} is not modelled yet", E.EOPNOTSUPP)
        slave = b.active
        if slave is None:
            refuse(None, E.ENODEV)
        ops = getattr(slave, "xfrmdev_ops", None)
        if ops is None or isinstance(ops, BondXfrmDevOps):
            refuse("Slave does not support ipsec offload", E.EINVAL)
        ops.xdo_dev_state_add(slave, x)
        x.xso.real_dev = slave
        b.ipsec_list.append(x)

    def xdo_dev_state_delete(self, dev, x) -> None:
        real = x.xso.real_dev
        if real is not None and real is not dev:
            real.xfrmdev_ops.xdo_dev_state_delete(real, x)

    def xdo_dev_state_free(self, dev, x) -> None:
        real = x.xso.real_dev
        if real is not None and real is not dev:
            real.xfrmdev_ops.xdo_dev_state_free(real, x)
        x.xso.real_dev = None
        if x in self.bond.ipsec_list:
            self.bond.ipsec_list.remove(x)

    def xdo_dev_offload_ok(self, x) -> bool:
        """``bond_ipsec_offload_ok``: only in active-backup, on the active slave."""
        b = self.bond
        return b.mode == "active-backup" and b.active is not None and x.xso.real_dev is b.active

    def table(self, dev) -> list[dict]:
        return [{"spi": x.id.spi, "slave": x.xso.real_dev.name if x.xso.real_dev else None,
                 "handle": x.xso.offload_handle} for x in self.bond.ipsec_list]


def bond_ipsec_del_sa_all(bond) -> None:
    """Before a failover: every offloaded SA leaves the old active slave."""
    for x in bond.ipsec_list:
        real = x.xso.real_dev
        if real is None:
            continue
        x.xso.real_dev = None
        ops = real.xfrmdev_ops
        ops.xdo_dev_state_delete(real, x)
        ops.xdo_dev_state_free(real, x)


def bond_ipsec_add_sa_all(bond) -> None:
    """After a failover: each SA is added on the new active slave; a refusal leaves it
    without offload (the kernel only warns "failed to add SA")."""
    slave = bond.active
    ops = getattr(slave, "xfrmdev_ops", None)
    if ops is None:
        if bond.ipsec_list:
            log.warning("%s: no slave xdo_dev_state_add", bond.dev.name)
        return
    from devices.xfrmdev import OffloadError
    for x in bond.ipsec_list:
        if x.xso.real_dev is slave:
            continue
        try:
            ops.xdo_dev_state_add(slave, x)
        except OffloadError:
            log.warning("%s: failed to add SA", bond.dev.name)
            continue
        x.xso.real_dev = slave
