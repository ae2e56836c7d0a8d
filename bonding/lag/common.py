"""What every LAG offload model of the bond shares: the :class:`LagModel` interface the
bond's xfrmdev_ops delegate to, the bond's records of offloaded states (``struct
bond_ipsec``), the slave predicates, the hardware contexts and the LAG flush.

The labels R1–R4 (the RFC), P38–P43 (the newest series) and S1–S7 (the replay scenarios) are
defined in docs/bonding.md."""
from __future__ import annotations

import errno as E
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, NoReturn, TypeAlias

from devices.xfrmdev import (XFRM_DEV_OFFLOAD_CRYPTO, XFRM_DEV_OFFLOAD_FLAG_ACQ,
                             XFRM_DEV_OFFLOAD_IN, XFRM_DEV_OFFLOAD_PACKET, OffloadError,
                             xfrmdev_flag_names)
from netlink_codec import xfrm as X
from xfrmd.errors import KernelError
from xfrmd.xfrm.offload import xfrm_dev_state_lower_handle
from xfrmd.xfrm.sadb import sad

log = logging.getLogger("xfrmd.bonding")

# The objects the offload models work on belong to other packages (the net device, the
# bond, the xfrm state, the xfrm policy); they are typed loosely here.
Device: TypeAlias = Any
Bonding: TypeAlias = Any
XState: TypeAlias = Any
XPolicy: TypeAlias = Any
Account: TypeAlias = Callable[[], None]

AB = "active-backup"
ESP = "esp-hw-offload"
XFRM_STATE_ESN = X.XFRM_STATE_ESN
OFFLOAD_TYPES = (XFRM_DEV_OFFLOAD_CRYPTO, XFRM_DEV_OFFLOAD_PACKET)


# A lower's refusal: a KernelError, or the drivers' transitional OffloadError.
LOWER_ERRORS = (KernelError, OffloadError)


def refuse(msg: str | None, errno: int = E.EINVAL) -> NoReturn:
    """A refusal of the bond's ops: ``NL_SET_ERR_MSG_MOD(extack, msg)`` and ``-errno``."""
    raise OffloadError(errno, msg)


# -- predicates ------------------------------------------------------------------------------

def bond_mode_can_use_lag_xfrm(bond: Bonding) -> bool:
    """``bond_mode_can_use_lag_xfrm`` (P38): 802.3ad or balance-xor, layer3+4."""
    return bond.mode in ("802.3ad", "balance-xor") and bond.xmit_hash_policy == "layer3+4"


def ops_of(dev: Device | None) -> Any:
    """``dev->xfrmdev_ops`` (a :class:`~devices.xfrmdev.XfrmDevOps`, or None)."""
    return getattr(dev, "xfrmdev_ops", None)


def is_bond(dev: Device) -> bool:
    return getattr(dev, "bond", None) is not None


def running(dev: Device) -> bool:
    """``netif_running``: administratively up."""
    return bool(getattr(dev, "up", False))


def hw_esp(dev: Device) -> bool:
    """NETIF_F_HW_ESP in ``features``."""
    f = getattr(dev, "features", None)
    return f is not None and bool(f.active(ESP))


def esp_capable(dev: Device) -> bool:
    """NETIF_F_HW_ESP in ``features | hw_features``."""
    f = getattr(dev, "features", None)
    return f is not None and bool(f.active(ESP) or ESP in f.hw)


def compatible(a: Device, b: Device) -> bool:
    """Both directions of ``xdo_dev_state_lag_compatible``, as the bond calls it."""
    return bool(ops_of(a).xdo_dev_state_lag_compatible(a, b)
                and ops_of(b).xdo_dev_state_lag_compatible(b, a))


class Eligibility(tuple[bool, str]):
    """``(ok, reason)``; true in a boolean context exactly when ``ok``."""

    def __new__(cls, ok: bool, reason: str = "") -> Eligibility:
        return super().__new__(cls, (bool(ok), reason))

    def __bool__(self) -> bool:
        return self[0]


def lag_esp_eligible(bond: Bonding,
                     slave_rules: Callable[[list[Device]], Eligibility]) -> Eligibility:
    """What both LAG models ask before their own rules on the running slaves: an
    active-backup bond passes; any other must be LAG-eligible and have a running slave."""
    if bond.mode == AB:
        return Eligibility(True)
    if not bond_mode_can_use_lag_xfrm(bond):
        return Eligibility(False, f"bond mode {bond.mode} with xmit_hash_policy "
                                  f"{bond.xmit_hash_policy} cannot use IPsec offload")
    slaves = [s for s in bond.slaves if running(s)]
    if not slaves:
        return Eligibility(False, "no running slave")
    return slave_rules(slaves)


# -- the lowers' hardware contexts ---------------------------------------------------------------
# The sequence counters, replay windows and lifetime counters of an offloaded state live in
# the lower drivers (mlx5-like: one per port; SOE: one per engine slot), which find them with
# ``xfrm_dev_state_lower_handle(x, port)``: RFC patch 1/4, "the lower device they are
# transmitting or receiving on". The bond only chooses the port.

def lower_xmit(slave: Device, x: XState, nbytes: int,
               account: Account | None) -> tuple[Device, int | None]:
    """One packet of ``x`` handed to ``slave``'s driver. ``account``: the core's accounting
    of the one state (X05: ``xfrm_dev_packet_state_check``), when the bond has
    ``xdo_dev_packet_xmit``; it runs before the bond's xmit, and the lower carries the number
    the core gave."""
    if account is None:
        port, seq = ops_of(slave).hw_xmit(slave, x, nbytes, None)
        return port, seq
    seq = account()
    port, _ = ops_of(slave).hw_xmit(slave, x, nbytes, lambda: seq)
    return port, None


def lower_recv(slave: Device, x: XState, seq: int, nbytes: int,
               account: Account | None) -> None:
    """One packet of ``x`` arriving on ``slave``: its driver checks it in the context it
    resolves (or, with ``account``, the core's X06 check on the one state runs, once)."""
    if account is None:
        ops_of(slave).hw_recv(slave, x, slave, seq, nbytes, None)
        return
    ran: list[bool] = []

    def once() -> None:
        if not ran:
            ran.append(True)
            account()
    ops_of(slave).hw_recv(slave, x, slave, seq, nbytes, once)
    once()


def lower_contexts(x: XState, slaves: list[Device]) -> tuple[list[dict[str, Any]],
                                                             dict[str, dict[str, Any]]]:
    """For show-offload: per slave the handle ``xfrm_dev_state_lower_handle`` gives and the
    id of the hardware context its driver resolves; and each context once, by id (a context
    the ports of one engine share appears once)."""
    rows: list[dict[str, Any]] = []
    contexts: dict[str, dict[str, Any]] = {}
    for s in slaves:
        ops = ops_of(s)
        row: dict[str, Any] = {"slave": s.name, "driver": ops.name if ops else None,
                               "flags": xfrmdev_flag_names(ops.flags if ops else 0),
                               "handle": xfrm_dev_state_lower_handle(x, s)}
        ctx = ops.hw_context(s, x) if ops is not None else None
        if ctx is not None:
            row["context"] = ctx["id"]
            # the ports of this bond that reach the context (an SOE slot: every port of
            # the engine the bond gives the handle to)
            contexts.setdefault(ctx["id"], dict(ctx, ports=[]))["ports"].append(s.name)
        rows.append(row)
    return rows, contexts


@contextmanager
def lower_view(x: XState, dev: Device, handle: int) -> Iterator[None]:
    """For a call into a lower: ``xso.real_dev`` is the lower and ``offload_handle`` the
    lower's own; both are restored after."""
    saved = (x.xso.real_dev, x.xso.offload_handle)
    x.xso.real_dev, x.xso.offload_handle = dev, handle
    try:
        yield
    finally:
        x.xso.real_dev, x.xso.offload_handle = saved


# -- the bond's records --------------------------------------------------------------------------

class BondIpsec:
    """``struct bond_ipsec``: one entry of ``bond.ipsec_list``. This class is a state on one
    slave as upstream keeps it (it follows the active slave on failover); the LAG models
    subclass it."""
    __slots__ = ("x", "real_dev", "real_ops", "lag", "replicated", "instances")

    def __init__(self, x: XState, real_dev: Device | None = None, real_ops: Any = None,
                 lag: bool = False, replicated: bool = False):
        self.x = x
        self.real_dev = real_dev
        self.real_ops = real_ops
        self.lag = lag
        self.replicated = replicated
        self.instances: list[Any] = []          # replicated: one BondIpsecInst per slave

    def delete(self, dev: Device) -> None:
        """``bond_ipsec_del_sa``: delete on ``xso.real_dev``."""
        delete_on_real(dev, self.x, self.real_ops)

    def free(self, bond: Bonding, dev: Device) -> None:
        """``bond_ipsec_free_sa``: free on ``xso.real_dev``, zero it, unlink the entry."""
        free_on_real(dev, self.x, self.real_ops)
        bond.ipsec_list.remove(self)

    def forward_dev(self, bond: Bonding) -> Device | None:
        """``bond_ipsec_dev``: the slave ESN advance and stats go to: active-backup, the
        active slave holding the state."""
        if bond.mode != AB or bond.active is None or self.x.xso.real_dev is not bond.active:
            return None
        return bond.active

    def xmit_dev(self, bond: Bonding) -> Device | None:
        """The slave the state's packets leave through: its real_dev while it runs."""
        real = self.x.xso.real_dev
        return real if real is not None and real is not bond.dev and running(real) else None

    def hw_traffic(self, bond: Bonding, dev: Device, packets: int, nbytes: int) -> None:
        x = self.x
        slave = x.xso.real_dev
        if slave is None or slave is dev:
            refuse("xfrmd: the SA is not offloaded to a slave", E.EOPNOTSUPP)
        ops_of(slave).hw_traffic(slave, x, packets, nbytes)

    def hw_xmit(self, bond: Bonding, dev: Device, nbytes: int, account: Account | None,
                spray: Any) -> tuple[Device, int | None]:
        """Upstream: the active slave holding the state, whose hardware numbers it."""
        x = self.x
        real = x.xso.real_dev
        if (real is None or real is dev or not running(real)
                or (bond.mode == AB and real is not bond.active)):
            raise OffloadError(E.EHOSTUNREACH, "bonding: no active slave holds the state")
        return lower_xmit(real, x, nbytes, account)

    def hw_recv(self, bond: Bonding, dev: Device, rx_dev: Device, seq: int, nbytes: int,
                account: Account | None) -> None:
        """Upstream: the active slave holding the state checks it."""
        x = self.x
        real = x.xso.real_dev
        if real is not None and real is not rx_dev and bond.mode == AB:
            # bond_ipsec_add_sa offloads to curr_active_slave alone, under every LAG model
            # (active-backup stays upstream): the backup port's driver has nothing to match
            raise OffloadError(0, f"bonding: the SA lives on the active slave {real.name} "
                                  f"only; {rx_dev.name} is a backup port and its driver holds "
                                  "no SA for it")
        if real is None or real is not rx_dev:
            raise OffloadError(0, "bonding: the packet arrived on a slave without the state")
        lower_recv(real, x, seq, nbytes, account)

    def slaves_holding(self, bond: Bonding) -> list[Device]:
        """The slaves whose drivers hold (or may resolve) the state, for show-offload."""
        real = self.x.xso.real_dev if self.x.xso is not None else None
        return [real] if real is not None and real is not bond.dev else []

    def model_label(self, bond: Bonding) -> str:
        return "active-backup" if bond.mode == AB else str(bond.lag_model)

    def describe(self, bond: Bonding) -> dict[str, Any]:
        """One bond SA for show-offload: which slave holds it and its handle."""
        x = self.x
        d = describe_header(x)
        real = x.xso.real_dev if x.xso is not None else None
        d["model"] = self.model_label(bond)
        d["slave"] = real.name if real is not None and real is not bond.dev else None
        d["handle"] = x.xso.offload_handle if x.xso is not None else 0
        d["lowers"], d["contexts"] = lower_contexts(x, self.slaves_holding(bond))
        return d


def describe_header(x: XState) -> dict[str, Any]:
    return {"spi": x.id.spi,
            "dir": "in" if x.xso is not None and x.xso.dir == XFRM_DEV_OFFLOAD_IN else "out",
            "type": "packet" if x.xso is not None and x.xso.type == XFRM_DEV_OFFLOAD_PACKET
            else "crypto"}


def find_entry(bond: Bonding, x: XState) -> BondIpsec | None:
    entries: list[BondIpsec] = bond.ipsec_list
    for e in entries:
        if e.x is x:
            return e
    return None


def delete_on_real(dev: Device, x: XState, real_ops: Any) -> None:
    """The lower's delete on ``xso.real_dev`` (with the ops captured at add, if any)."""
    real = x.xso.real_dev
    if real is None or real is dev:
        return
    ops = real_ops if real_ops is not None else ops_of(real)
    ops.xdo_dev_state_delete(real, x)


def free_on_real(dev: Device, x: XState, real_ops: Any) -> None:
    """The lower's free on ``xso.real_dev``, which is zeroed."""
    real = x.xso.real_dev
    x.xso.real_dev = None
    if real is not None and real is not dev:
        ops = real_ops if real_ops is not None else ops_of(real)
        if ops is not None and ops.has_state_free:
            ops.xdo_dev_state_free(real, x)


# -- adding on a lower -------------------------------------------------------------------------

def lower_error(e: KernelError | OffloadError, slave: Device, name_slave: bool) -> OffloadError:
    """The lower's extack passes through with its own module prefix (the bond hands the
    user's extack down); in the replicated model xfrmd adds which slave refused."""
    module = e.module if e.module is not None else ops_of(slave).module
    if not name_slave:
        return OffloadError(e.errno, e.msg, module=module)
    if e.msg:
        return OffloadError(e.errno, f"{e.msg} (slave {slave.name})", module=module)
    return OffloadError(e.errno, f"Device failed to offload this state (slave {slave.name})",
                        module="")


def add_on_slave(x: XState, slave: Device, ops: Any) -> None:
    """The lower's xdo_dev_state_add with ``xso.real_dev`` already the slave (the lower sees
    itself as real_dev); a refusal clears it and carries the slave's own message."""
    x.xso.real_dev = slave
    try:
        ops.xdo_dev_state_add(slave, x)
    except LOWER_ERRORS as e:
        x.xso.real_dev = None
        raise lower_error(e, slave, False) from None


def lag_state_checks(b: Bonding, x: XState, *, refuse_acquire: bool) -> None:
    """The state checks both LAG models make first, in their order (the newest series also
    refuses acquire-created states, between the type and the ESN checks)."""
    if x.xso.type not in OFFLOAD_TYPES:
        refuse("LAG supports only XFRM crypto or packet offload", E.EOPNOTSUPP)
    if refuse_acquire and x.xso.flags & XFRM_DEV_OFFLOAD_FLAG_ACQ:
        refuse("LAG does not support acquire offload states", E.EOPNOTSUPP)
    if x.flags & XFRM_STATE_ESN:
        refuse("LAG does not support XFRM ESN offload", E.EOPNOTSUPP)
    if b.ipsec_lag_block_count:
        refuse("Bond LAG XFRM state add is blocked", E.EAGAIN)
    if not hw_esp(b.dev):
        refuse("Bond IPsec offload is disabled", E.EOPNOTSUPP)


# -- the LAG flush ---------------------------------------------------------------------------------

def bond_ipsec_lag_begin_flush(bond: Bonding) -> None:
    """``bond_ipsec_lag_begin_flush``: block LAG adds (the 0→1 transition would also tear
    down states caught between offload and SAD insertion; the sans-IO model has none)."""
    bond.ipsec_lag_block_count += 1


def bond_ipsec_lag_end_flush(bond: Bonding) -> None:
    if bond.ipsec_lag_block_count == 0:
        log.warning("%s: LAG XFRM flush end without begin", bond.dev.name)
        return
    bond.ipsec_lag_block_count -= 1


def bond_xfrm_dev_state_flush(bond: Bonding) -> list[XState]:
    """``xfrm_dev_state_flush(net, bond, true)``: every state offloaded to the bond leaves
    the SAD. The kernel sends no XFRM_MSG_DELSA for it (only the netlink delete path
    notifies); with ``bond.lag_flush_notify`` xfrmd sends one per state, as
    ``ip xfrm state delete`` would (seq 0, pid 0). Policies offloaded to the bond stay."""
    ns = bond.dev.netns
    xnet = getattr(ns, "xfrm", None) if ns is not None else None
    if xnet is None:
        return []
    db = sad(xnet)
    victims: list[XState] = db.dev_flush(bond.dev)
    if bond.lag_flush_notify:
        for x in victims:
            db.km_state_notify(x, X.XfrmMsg.DELSA, 0, 0)
    return victims


def bond_ipsec_lag_flush(bond: Bonding) -> list[XState]:
    bond_ipsec_lag_begin_flush(bond)
    try:
        return bond_xfrm_dev_state_flush(bond)
    finally:
        bond_ipsec_lag_end_flush(bond)


# -- the interface -------------------------------------------------------------------------------

class LagModel:
    """One value of ``bond.lag_model``: what the bond's xfrmdev_ops do that depends on it.
    The bond's ops (bonding/offload.py) find the model in their table by name and call it;
    what depends on how a state was offloaded lives in the state's :class:`BondIpsec`."""
    name = ""
    lag_offload = True           # offloads on a LAG (the bond's ESP features follow the slaves)
    has_lower_handle = True      # xdo_dev_state_lower_handle (the proposed models)
    has_policy_ops = True        # bond_ipsec_policy_add (validation only)
    has_packet_xmit = False      # bond_ipsec_packet_xmit (the newest series)

    def add_sa(self, bond: Bonding, dev: Device, x: XState) -> None:
        """``bond_ipsec_add_sa`` of the model."""
        raise NotImplementedError

    def free_sa(self, bond: Bonding, dev: Device, x: XState) -> None:
        """``bond_ipsec_free_sa``: unlink the entry, free on the lower(s), zero real_dev."""
        entry = find_entry(bond, x)
        if entry is None:
            free_on_real(dev, x, None)
        else:
            entry.free(bond, dev)

    def offload_ok(self, bond: Bonding, x: XState) -> bool:
        """``bond_ipsec_offload_ok`` of the model."""
        raise NotImplementedError

    def lower_handle(self, bond: Bonding, x: XState, lower_dev: Device) -> int:
        """``bond_ipsec_lower_handle`` of the model: the handle ``lower_dev`` holds for
        ``x``, 0 for none."""
        return 0

    def esp_eligible(self, bond: Bonding) -> Eligibility:
        """May the bond's esp-hw-offload be on (``bond_fix_features`` of the model)?"""
        return Eligibility(True)

    def topology_begin(self, bond: Bonding, event: str, slave: Device | None) -> None:
        """Before a membership or link change (enslave, release, a slave's UP, DOWN, CHANGE
        or UNREGISTER)."""

    def topology_end(self, bond: Bonding, event: str, slave: Device | None) -> None:
        """After that change."""

    def config_change(self, bond: Bonding, old_eligible: bool, new_eligible: bool) -> None:
        """A mode or xmit_hash_policy change, before it takes effect."""

    def slave_features_changed(self, bond: Bonding, slave: Device) -> None:
        """A slave's NETDEV_FEAT_CHANGE (after the bond synced its features)."""

    def esp_wanted(self, bond: Bonding, entering_lag: bool) -> bool | None:
        """The bond's ESP *wanted* features under this model (``bond_set_xfrm_features``):
        True set, False cleared, None the user's choice left alone."""
        raise NotImplementedError
