"""Model ``replicated``: the RFC as posted (R1–R4 of docs/bonding.md, "bonding: replicate
XFRM offload state across LAG slaves", ``bond_ipsec_lag_add_sa``). On an 802.3ad /
balance-xor bond hashing layer3+4 the state is installed on every running slave through the
lower-handle API: one :class:`BondIpsecInst` per slave, any refusal rolls back what was
installed. The hardware sequence (TX), replay (RX) and lifetime counters of each replica live
in its lower's driver, which finds them with ``xfrm_dev_state_lower_handle(x, port)`` (this
model's :meth:`ReplicatedModel.lower_handle`): one per mlx5-like port, one per SOE engine slot
(the ports of one engine share it). xfrmd's ``--require`` switch (require.py) refuses states
whose slaves do not declare the review's guarantees. Active-backup stays on the upstream path.

Where this model refuses because of one slave among several, xfrmd names the slave in
parentheses after the kernel text (docs/bonding.md)."""
from __future__ import annotations

import errno as E
from typing import Any

from devices.xfrmdev import XFRMDEV_OPS_F_LOWER_HANDLE, OffloadError
from xfrmd.xfrm.state import XFRM_STATE_DEAD

from ..hash import bond_ipsec_xfrm_hash, xmit_slave
from .common import (AB, LOWER_ERRORS, OFFLOAD_TYPES, Account, BondIpsec, Bonding, Device,
                     Eligibility, XState, bond_ipsec_lag_flush, bond_mode_can_use_lag_xfrm,
                     describe_header, esp_capable, hw_esp, is_bond, lag_esp_eligible,
                     lag_state_checks, log, lower_contexts, lower_error, lower_recv, lower_view,
                     lower_xmit, ops_of, refuse, running)
from .require import lag_require_check, lag_require_problem
from .upstream import UpstreamModel


def _rfc_slave_problem(dev: Device) -> str | None:
    """Why the RFC's ``bond_ipsec_lag_slave_ok`` (HW_ESP on, add+delete, LOWER_HANDLE) is
    false for ``dev``, or None."""
    ops = ops_of(dev)
    if ops is None or is_bond(dev):
        return "no xfrmdev_ops" if ops is None else "a bond"
    if not ops.flags & XFRMDEV_OPS_F_LOWER_HANDLE:
        return "no XFRMDEV_OPS_F_LOWER_HANDLE"
    if not hw_esp(dev):
        return "esp-hw-offload off"
    return None


# -- the bond's records --------------------------------------------------------------------------

class BondIpsecInst:
    """``struct bond_ipsec_inst`` (RFC): one slave's replica of a state."""
    __slots__ = ("real_dev", "lower_handle", "added", "deleted")

    def __init__(self, real_dev: Device):
        self.real_dev = real_dev
        self.lower_handle = 0
        self.added = self.deleted = False


class ReplicatedIpsec(BondIpsec):
    """A state replicated on every running slave (``instances``)."""
    __slots__ = ()

    def __init__(self, x: XState):
        super().__init__(x, lag=True, replicated=True)

    def delete(self, dev: Device) -> None:
        """Deleted on every instance, in reverse order."""
        self.call_state(delete=True, free=False)

    def free(self, bond: Bonding, dev: Device) -> None:
        bond.ipsec_list.remove(self)
        self.call_state(delete=False, free=True)
        x = self.x
        x.xso.upper_priv = None
        x.xso.real_dev = None
        x.xso.offload_handle = 0

    def call_state(self, delete: bool, free: bool) -> None:
        for inst in reversed(self.instances):
            _rfc_call_inst(self.x, inst, delete, free)

    def forward_dev(self, bond: Bonding) -> Device | None:
        """ESN advance and stats: nothing (R2 left them active-backup only)."""
        return None

    def xmit_dev(self, bond: Bonding) -> Device | None:
        """``bond_ipsec_lag_xmit_dev``: the first usable slave from ``hash % count`` holding
        a replica."""
        usable = bond.usable_slaves()
        if not usable:
            return None
        start = bond_ipsec_xfrm_hash(self.x) % len(usable)
        for i in range(len(usable)):
            s = usable[(start + i) % len(usable)]
            if any(inst.added and inst.real_dev is s for inst in self.instances):
                return s
        return None

    def _replica_on(self, slave: Device | None) -> BondIpsecInst | None:
        return next((i for i in self.instances if i.added and i.real_dev is slave), None)

    def hw_traffic(self, bond: Bonding, dev: Device, packets: int, nbytes: int) -> None:
        """The packets cross the TX pin's replica (its driver's context counts them)."""
        slave = self.xmit_dev(bond)
        if self._replica_on(slave) is None:
            refuse("xfrmd: no usable slave holds a replica", E.EOPNOTSUPP)
        ops_of(slave).hw_traffic(slave, self.x, packets, nbytes)

    def hw_xmit(self, bond: Bonding, dev: Device, nbytes: int, account: Account | None,
                spray: Any) -> tuple[Device, int | None]:
        """The TX pin — or, with ``spray`` (a :class:`bonding.hash.Flow`), the slave
        ``bond_xmit_hash`` picks for the inner flow. The RFC bond has no
        ``xdo_dev_packet_xmit``, so the core keeps no accounting: the slave's driver
        resolves its replica with ``xfrm_dev_state_lower_handle`` and its hardware context
        numbers the packet (per port unless the lowers share one: an SOE engine slot)."""
        if spray is not None:
            slave = xmit_slave(spray, bond.xmit_hash_policy, bond.usable_slaves())
        else:
            slave = self.xmit_dev(bond)
        if self._replica_on(slave) is None:
            raise OffloadError(E.EHOSTUNREACH, "bonding: no usable slave holds a replica")
        return lower_xmit(slave, self.x, nbytes, None)

    def hw_recv(self, bond: Bonding, dev: Device, rx_dev: Device, seq: int, nbytes: int,
                account: Account | None) -> None:
        """The replica on ``rx_dev``: its driver's replay context decides (per port for
        mlx5-like, engine-wide for SOE ports of one engine: scenario S3 of
        docs/bonding.md)."""
        if self._replica_on(rx_dev) is None:
            raise OffloadError(0, f"bonding: no replica on {getattr(rx_dev, 'name', rx_dev)}")
        lower_recv(rx_dev, self.x, seq, nbytes, None)

    def slaves_holding(self, bond: Bonding) -> list[Device]:
        return [i.real_dev for i in self.instances]

    def describe(self, bond: Bonding) -> dict[str, Any]:
        """The TX pin, per-slave handles and the lowers' hardware contexts (each once)."""
        d = describe_header(self.x)
        d["model"] = "replicated"
        xmit = self.xmit_dev(bond)
        d["xmit_slave"] = xmit.name if xmit is not None else None
        rows, contexts = lower_contexts(self.x, self.slaves_holding(bond))
        for row, inst in zip(rows, self.instances):
            row["added"] = inst.added
        d["replicas"] = rows
        d["contexts"] = contexts
        return d


# -- add -------------------------------------------------------------------------------------------

def _rfc_lag_add_sa(b: Bonding, x: XState) -> None:
    """``bond_ipsec_lag_add_sa`` (R2), in its order."""
    lag_state_checks(b, x, refuse_acquire=False)
    if not bond_mode_can_use_lag_xfrm(b):
        refuse("Bond LAG XFRM eligibility changed", E.EAGAIN)
    entry = ReplicatedIpsec(x)
    for s in b.slaves:
        if not running(s):
            continue
        why = _rfc_slave_problem(s)
        if why:
            refuse(f"Not all slaves support IPsec offload (slave {s.name}: {why})", E.EOPNOTSUPP)
        entry.instances.append(BondIpsecInst(s))
    if not entry.instances:
        refuse(None, E.ENODEV)
    lag_require_check(b, [inst.real_dev for inst in entry.instances])   # xfrmd's --require
    done = []
    try:
        for inst in entry.instances:
            _rfc_add_inst(x, inst)
            done.append(inst)
    except LOWER_ERRORS:
        for inst in reversed(done):
            _rfc_call_inst(x, inst, delete=True, free=True)
        x.xso.real_dev = None
        x.xso.offload_handle = 0
        raise
    x.xso.real_dev = None
    x.xso.offload_handle = 0
    x.xso.upper_priv = entry
    b.ipsec_list.insert(0, entry)          # list_add: at the head


def _rfc_add_inst(x: XState, inst: BondIpsecInst) -> None:
    """``bond_ipsec_lag_add_inst``: the lower sees itself as real_dev and a zero handle;
    the handle it leaves is the replica's."""
    s = inst.real_dev
    ops = ops_of(s)
    if _rfc_slave_problem(s):
        refuse(None, E.EOPNOTSUPP)
    with lower_view(x, s, 0):
        try:
            ops.xdo_dev_state_add(s, x)
        except LOWER_ERRORS as e:
            raise lower_error(e, s, True) from None
        h = x.xso.offload_handle
        if not h:
            ops.xdo_dev_state_delete(s, x)
            if ops.has_state_free:
                ops.xdo_dev_state_free(s, x)
            refuse(f"Slave did not return an IPsec offload handle (slave {s.name})", E.EINVAL)
        inst.lower_handle = h
        inst.deleted = False
        inst.added = True


def _rfc_call_inst(x: XState, inst: BondIpsecInst, delete: bool, free: bool) -> None:
    """``bond_ipsec_lag_call_inst``: delete and/or free one replica on its lower, with
    real_dev and the handle set to the replica's for the call."""
    if not inst.lower_handle:
        return
    ops = ops_of(inst.real_dev)
    if ops is None:
        return
    with lower_view(x, inst.real_dev, inst.lower_handle):
        if delete:
            if not inst.deleted:
                ops.xdo_dev_state_delete(inst.real_dev, x)
                inst.deleted = True
            inst.added = False
        if free:
            if ops.has_state_free:
                ops.xdo_dev_state_free(inst.real_dev, x)
            inst.lower_handle = 0


# -- membership (R4) ---------------------------------------------------------------------------

def bond_ipsec_lag_remove_slave(bond: Bonding, slave: Device) -> None:
    """``bond_ipsec_lag_remove_slave`` (R4): only the departing slave's replicas are deleted
    and freed; the others stay."""
    if not bond_mode_can_use_lag_xfrm(bond):
        return
    for e in bond.ipsec_list:
        if not e.replicated:
            continue
        for inst in [i for i in e.instances if i.real_dev is slave]:
            _rfc_call_inst(e.x, inst, delete=True, free=True)
            e.instances.remove(inst)


def bond_ipsec_lag_add_slave(bond: Bonding, slave: Device) -> None:
    """``bond_ipsec_lag_add_slave`` (R4): every replicated state gets a replica on a newly
    running slave. A failure flushes every bond state ("failed to replicate IPsec SA,
    flushing bond states")."""
    if not bond_mode_can_use_lag_xfrm(bond) or not running(slave):
        return
    slave_ok = _rfc_slave_problem(slave) is None and lag_require_problem(
        bond, [s for s in bond.slaves if running(s)]) is None          # xfrmd's --require
    have_states = False
    err = 0
    for e in bond.ipsec_list:
        if not e.replicated:
            continue
        have_states = True
        if e.x.km_state == XFRM_STATE_DEAD:
            continue
        if not slave_ok:
            err = E.EOPNOTSUPP
            break
        if any(i.real_dev is slave for i in e.instances):
            continue
        inst = BondIpsecInst(slave)
        try:
            _rfc_add_inst(e.x, inst)
        except LOWER_ERRORS as exc:
            err = exc.errno
            break
        e.instances.append(inst)
    if err and have_states:
        log.warning("%s: (slave %s): failed to replicate IPsec SA, flushing bond states",
                    bond.dev.name, slave.name)
        bond_ipsec_lag_flush(bond)


# -- the model -----------------------------------------------------------------------------------

def _slaves_eligible(slaves: list[Device]) -> Eligibility:
    """R3: every running slave must be able to do HW_ESP (its flags are checked at SA add
    time)."""
    for s in slaves:
        if not esp_capable(s):
            return Eligibility(False, f"slave {s.name}: no esp-hw-offload")
    return Eligibility(True)


class ReplicatedModel(UpstreamModel):
    name = "replicated"
    lag_offload = True
    has_lower_handle = True
    has_policy_ops = True

    def add_sa(self, bond: Bonding, dev: Device, x: XState) -> None:
        if bond_mode_can_use_lag_xfrm(bond):
            _rfc_lag_add_sa(bond, x)
            return
        if bond.mode != AB:
            refuse("Bond mode does not support IPsec offload", E.EOPNOTSUPP)
        super().add_sa(bond, dev, x)

    def offload_ok(self, bond: Bonding, x: XState) -> bool:
        if bond_mode_can_use_lag_xfrm(bond):
            # crypto/packet and a replicated record present
            return x.xso.type in OFFLOAD_TYPES and x.xso.upper_priv is not None
        return super().offload_ok(bond, x)

    def lower_handle(self, bond: Bonding, x: XState, lower_dev: Device) -> int:
        if bond.mode == AB:
            return int(x.xso.offload_handle) if x.xso.real_dev is lower_dev else 0
        if not bond_mode_can_use_lag_xfrm(bond):
            return 0
        entry = x.xso.upper_priv
        if not isinstance(entry, ReplicatedIpsec) or entry.x is not x:
            return 0
        for inst in entry.instances:
            if inst.added and inst.real_dev is lower_dev:
                return int(inst.lower_handle)
        if lower_dev is bond.dev:
            # an RX path that already promoted skb->dev to the bond: any installed one
            for inst in entry.instances:
                if inst.added:
                    return int(inst.lower_handle)
        return 0

    def esp_eligible(self, bond: Bonding) -> Eligibility:
        """A LAG-eligible bond needs a running slave, and every running slave must be able
        to do HW_ESP."""
        return lag_esp_eligible(bond, _slaves_eligible)

    def topology_end(self, bond: Bonding, event: str, slave: Device | None) -> None:
        """Replicas are added to a slave that now runs (enslave, UP, CHANGE, a feature
        change) or removed from a stopped or departed slave (DOWN, release, unregister)."""
        if slave is None:
            return
        if event in ("release", "NETDEV_DOWN", "NETDEV_UNREGISTER"):
            bond_ipsec_lag_remove_slave(bond, slave)
        elif event in ("enslave", "NETDEV_UP", "NETDEV_CHANGE", "NETDEV_FEAT_CHANGE"):
            bond_ipsec_lag_add_slave(bond, slave)

    def config_change(self, bond: Bonding, old_eligible: bool, new_eligible: bool) -> None:
        """Leaving LAG flushes the bond's states."""
        if old_eligible and not new_eligible:
            bond_ipsec_lag_flush(bond)

    def slave_features_changed(self, bond: Bonding, slave: Device) -> None:
        """R4: try to replicate onto the slave whose features changed."""
        bond_ipsec_lag_add_slave(bond, slave)

    def esp_wanted(self, bond: Bonding, entering_lag: bool) -> bool | None:
        """R3/R4: wanted in active-backup; entering LAG clears them (the user opts in with
        ``ethtool -K BOND esp-hw-offload on``), staying in LAG leaves the user's choice;
        other modes cleared."""
        if bond.mode == AB:
            return True
        if bond_mode_can_use_lag_xfrm(bond):
            return None if not entering_lag else False
        return False


MODEL = ReplicatedModel()
