"""The bond's xfrmdev_ops under three models (``bond.lag_model``, docs/bonding.md):

* ``off`` — upstream bond_main.c ``bond_ipsec_*``: an SA offloaded on the bond lives on the
  current active slave and moves on failover (``bond_ipsec_del_sa_all`` / ``add_sa_all``).
* ``replicated`` — the RFC as posted ("bonding: replicate XFRM offload state across LAG
  slaves", ``bond_ipsec_lag_add_sa``): on an 802.3ad / balance-xor bond hashing layer3+4 the
  state is installed on every running slave through the lower-handle API; one
  :class:`BondIpsecInst` per slave, any refusal rolls back what was installed. Each replica
  keeps its hardware sequence (TX) and replay (RX) context, shared between replicas only
  where the lowers certify it (XFRMDEV_OPS_F_LAG_SHARED_STATE, or both illustrative halves).
* ``shared`` — the newest series (P38–P40): one install on the hash-pinned slave, valid on
  every slave of one offload engine; topology changes flush every bond-owned state.

Extack texts are the patches' (``NL_SET_ERR_MSG_MOD``: "bonding: …"). Where the replicated
model refuses because of one slave among several, xfrmd names the slave in parentheses after
the kernel text (docs/bonding.md)."""
from __future__ import annotations

import errno as E
import logging

from devices.xfrmdev import (XFRM_DEV_OFFLOAD_CRYPTO, XFRM_DEV_OFFLOAD_FLAG_ACQ,
                             XFRM_DEV_OFFLOAD_IN, XFRM_DEV_OFFLOAD_PACKET,
                             XFRMDEV_OPS_F_LAG_SHARED_RX_REPLAY, XFRMDEV_OPS_F_LAG_SHARED_STATE,
                             XFRMDEV_OPS_F_LAG_SHARED_TX_SEQ, XFRMDEV_OPS_F_LOWER_HANDLE,
                             OffloadError, XfrmDevOps, refuse)
from netlink_codec import xfrm as X

log = logging.getLogger("xfrmd.bonding")

MODELS = ("off", "replicated", "shared")
AB = "active-backup"
ESP = "esp-hw-offload"
XFRM_STATE_ESN = X.XFRM_STATE_ESN


# -- predicates ------------------------------------------------------------------------------

def bond_mode_can_use_lag_xfrm(bond) -> bool:
    """``bond_mode_can_use_lag_xfrm`` (P38 / R2): 802.3ad or balance-xor, layer3+4."""
    return bond.mode in ("802.3ad", "balance-xor") and bond.xmit_hash_policy == "layer3+4"


def _ops(dev):
    return getattr(dev, "xfrmdev_ops", None)


def _is_bond(dev) -> bool:
    return getattr(dev, "bond", None) is not None


def _running(dev) -> bool:
    """``netif_running``: administratively up."""
    return bool(getattr(dev, "up", False))


def _hw_esp(dev) -> bool:
    f = getattr(dev, "features", None)
    return f is not None and f.active(ESP)


def _esp_capable(dev) -> bool:
    """NETIF_F_HW_ESP in ``features | hw_features``."""
    f = getattr(dev, "features", None)
    return f is not None and (f.active(ESP) or ESP in f.hw)


def bond_ipsec_slave_has_xfrm_ops(dev, need_free: bool = True) -> bool:
    """Not a bond, and add + delete (+ free in the newest series) exist. The RFC's
    ``bond_ipsec_slave_has_xfrm_ops`` asks for add and delete only."""
    ops = _ops(dev)
    if dev is None or _is_bond(dev) or ops is None:
        return False
    return not need_free or ops.has_state_free


def _both_flags(ops) -> bool:
    need = XFRMDEV_OPS_F_LOWER_HANDLE | XFRMDEV_OPS_F_LAG_SHARED_STATE
    return ops is not None and ops.flags & need == need


def bond_ipsec_lag_slave_capable(dev) -> bool:
    """``bond_ipsec_lag_slave_capable`` (P39)."""
    ops = _ops(dev)
    return (bond_ipsec_slave_has_xfrm_ops(dev) and _esp_capable(dev) and _both_flags(ops)
            and ops.has_lag_compatible)


def bond_ipsec_lag_slave_ok(dev) -> bool:
    """``bond_ipsec_lag_slave_ok`` (P39): capable and HW_ESP on now."""
    return bond_ipsec_lag_slave_capable(dev) and _hw_esp(dev)


def _compatible(a, b) -> bool:
    """Both directions of ``xdo_dev_state_lag_compatible``, as the bond calls it."""
    return (_ops(a).xdo_dev_state_lag_compatible(a, b)
            and _ops(b).xdo_dev_state_lag_compatible(b, a))


def bond_ipsec_lag_pair_capable(a, b) -> bool:
    return bond_ipsec_lag_slave_capable(a) and bond_ipsec_lag_slave_capable(b) and _compatible(a, b)


def bond_ipsec_lag_pair_ok(a, b) -> bool:
    return bond_ipsec_lag_slave_ok(a) and bond_ipsec_lag_slave_ok(b) and _compatible(a, b)


def bond_ipsec_lag_ready(bond) -> bool:
    """``bond_ipsec_lag_ready`` (P39): usable slaves exist, each pair_ok with the first."""
    usable = bond.usable_slaves()
    return bool(usable) and all(bond_ipsec_lag_pair_ok(usable[0], s) for s in usable)


def _rfc_slave_problem(dev) -> str | None:
    """Why the RFC's ``bond_ipsec_lag_slave_ok`` (HW_ESP on, add+delete, LOWER_HANDLE) is
    false for ``dev``, or None."""
    ops = _ops(dev)
    if ops is None or _is_bond(dev):
        return "no xfrmdev_ops" if ops is None else "a bond"
    if not ops.flags & XFRMDEV_OPS_F_LOWER_HANDLE:
        return "no XFRMDEV_OPS_F_LOWER_HANDLE"
    if not _hw_esp(dev):
        return "esp-hw-offload off"
    return None


def _shared_slave_problem(dev) -> str | None:
    """Why ``bond_ipsec_lag_slave_capable`` is false for ``dev``, or None."""
    ops = _ops(dev)
    if ops is None or _is_bond(dev):
        return "no xfrmdev_ops" if ops is None else "a bond"
    if not ops.has_state_free:
        return "no xdo_dev_state_free"
    if not _esp_capable(dev):
        return "no esp-hw-offload"
    if not ops.flags & XFRMDEV_OPS_F_LOWER_HANDLE:
        return "no XFRMDEV_OPS_F_LOWER_HANDLE"
    if not ops.flags & XFRMDEV_OPS_F_LAG_SHARED_STATE:
        return "no XFRMDEV_OPS_F_LAG_SHARED_STATE"
    if not ops.has_lag_compatible:
        return "no xdo_dev_state_lag_compatible"
    return None


class Eligibility(tuple):
    """``(ok, reason)``; true in a boolean context exactly when ``ok``."""

    def __new__(cls, ok: bool, reason: str = ""):
        return super().__new__(cls, (bool(ok), reason))

    def __bool__(self):
        return self[0]


def bond_lag_esp_eligible(bond) -> Eligibility:
    """May the bond's esp-hw-offload be on (``bond_fix_features`` / ``bond_set_features``
    of the bond's model)? ``(ok, reason)``; the reason says which slave fails which rule.

    * ``off`` (upstream) and active-backup in any model: nothing is checked.
    * ``replicated`` (RFC R3): a LAG-eligible bond needs a running slave, and every running
      slave must be able to do HW_ESP (its flags are checked at SA add time).
    * ``shared`` (P39): LAG-eligible, and every running slave lag-capable (add/delete/free,
      HW_ESP in features|hw_features, LOWER_HANDLE + LAG_SHARED_STATE, lag_compatible) and
      compatible both ways with the first running slave."""
    model = bond.lag_model
    if model == "off" or bond.mode == AB:
        return Eligibility(True)
    if not bond_mode_can_use_lag_xfrm(bond):
        return Eligibility(False, f"bond mode {bond.mode} with xmit_hash_policy "
                                  f"{bond.xmit_hash_policy} cannot use IPsec offload")
    running = [s for s in bond.slaves if _running(s)]
    if not running:
        return Eligibility(False, "no running slave")
    if model == "replicated":
        for s in running:
            if not _esp_capable(s):
                return Eligibility(False, f"slave {s.name}: no esp-hw-offload")
        return Eligibility(True)
    for s in running:
        why = _shared_slave_problem(s)
        if why:
            return Eligibility(False, f"slave {s.name}: {why}")
    first = running[0]
    for s in running[1:]:
        if not _compatible(first, s):
            return Eligibility(False, f"slaves {first.name} and {s.name} do not share one "
                                      "offload engine (xdo_dev_state_lag_compatible)")
    return Eligibility(True)


# -- per-replica hardware contexts (RFC model) ---------------------------------------------

class TxContext:
    """One hardware TX sequence counter (what a lower's SA instance numbers packets with)."""
    __slots__ = ("oseq", "packets", "bytes", "ports")

    def __init__(self, port: str):
        self.oseq = 0
        self.packets = self.bytes = 0
        self.ports = [port]


class RxContext:
    """One hardware anti-replay window (right edge ``seq``, ``bitmap`` of the window)."""
    __slots__ = ("seq", "bitmap", "window", "packets", "bytes", "replay_drops", "ports")

    def __init__(self, port: str, window: int):
        self.seq = 0
        self.bitmap = 0
        self.window = window
        self.packets = self.bytes = self.replay_drops = 0
        self.ports = [port]


def _shares(a, b, half: int) -> bool:
    """Do lowers ``a`` and ``b`` keep one context for this half (TX sequence or RX replay)?
    LAG_SHARED_STATE covers both halves; the RFC reply's illustrative flags one each."""
    oa, ob = _ops(a), _ops(b)
    fa = oa.flags if oa else 0
    fb = ob.flags if ob else 0
    ok = lambda f: bool(f & (XFRMDEV_OPS_F_LAG_SHARED_STATE | half))  # noqa: E731
    if not (ok(fa) and ok(fb)):
        return False
    if oa.has_lag_compatible and ob.has_lag_compatible:
        return _compatible(a, b)
    return type(oa) is type(ob)


def _window(x) -> int:
    r = getattr(x, "replay_esn", None)
    return r.replay_window if r is not None else x.props.replay_window


# -- the bond's records ------------------------------------------------------------------------

class BondIpsecInst:
    """``struct bond_ipsec_inst`` (RFC): one slave's replica of a state."""
    __slots__ = ("real_dev", "lower_handle", "added", "deleted", "tx", "rx")

    def __init__(self, real_dev):
        self.real_dev = real_dev
        self.lower_handle = 0
        self.added = self.deleted = False
        self.tx = self.rx = None


class BondIpsec:
    """``struct bond_ipsec``: one entry of ``bond.ipsec_list``."""
    __slots__ = ("x", "real_dev", "real_ops", "lag", "replicated", "instances", "tx", "rx")

    def __init__(self, x, real_dev=None, real_ops=None, lag=False, replicated=False):
        self.x = x
        self.real_dev = real_dev
        self.real_ops = real_ops
        self.lag = lag
        self.replicated = replicated
        self.instances: list[BondIpsecInst] = []
        self.tx = self.rx = None        # shared model: the one context of the pinned lower


def _find(bond, x):
    for e in bond.ipsec_list:
        if e.x is x:
            return e
    return None


def _lower_error(e: OffloadError, slave, name_slave: bool) -> OffloadError:
    """The lower's extack passes through with its own module prefix (the bond hands the
    user's extack down); in the replicated model xfrmd adds which slave refused."""
    module = e.module if e.module is not None else _ops(slave).module
    if not name_slave:
        return OffloadError(e.errno, e.msg, module)
    if e.msg:
        return OffloadError(e.errno, f"{e.msg} (slave {slave.name})", module)
    return OffloadError(e.errno, f"Device failed to offload this state (slave {slave.name})", "")


# -- the ops ----------------------------------------------------------------------------------

class BondXfrmDevOps(XfrmDevOps):
    name = "bonding"
    module = "bonding"
    flags = 0
    has_advance_esn = True         # the bond forwards it to the active (or pinned) slave
    has_update_stats = True
    has_offload_ok = True          # bond_ipsec_offload_ok

    @property
    def has_packet_xmit(self) -> bool:
        """The newest series adds ``bond_ipsec_packet_xmit``; upstream and the RFC have none."""
        return self.bond.lag_model == "shared"

    def __init__(self, bond):
        self.bond = bond

    # the proposed models add xdo_dev_state_lower_handle and (validation-only) policy_add
    @property
    def has_lower_handle(self) -> bool:
        return self.bond.lag_model != "off"

    @property
    def has_policy_ops(self) -> bool:
        """Upstream: packet-offload policies cannot target a bond."""
        return self.bond.lag_model != "off"

    # -- add --------------------------------------------------------------------------------
    def xdo_dev_state_add(self, dev, x) -> None:
        b = self.bond
        if b.lag_model == "replicated":
            if bond_mode_can_use_lag_xfrm(b):
                return _rfc_lag_add_sa(b, dev, x)
            if b.mode != AB:
                refuse("Bond mode does not support IPsec offload", E.EOPNOTSUPP)
        elif b.lag_model == "shared":
            return _shared_add_sa(b, dev, x)
        _upstream_add_sa(b, x)

    # -- delete / free ------------------------------------------------------------------------
    def xdo_dev_state_delete(self, dev, x) -> None:
        """``bond_ipsec_del_sa``: a replicated state is deleted on every instance (reverse
        order); otherwise on ``xso.real_dev``."""
        entry = _find(self.bond, x)
        if entry is not None and entry.replicated:
            _rfc_call_state(x, entry, delete=True, free=False)
            return
        real = x.xso.real_dev
        if real is None or real is dev:
            return
        ops = entry.real_ops if entry is not None and entry.real_ops is not None else _ops(real)
        ops.xdo_dev_state_delete(real, x)

    def xdo_dev_state_free(self, dev, x) -> None:
        """``bond_ipsec_free_sa``: unlink the entry, free on the lower(s), zero real_dev and
        the handle."""
        b = self.bond
        entry = _find(b, x)
        if entry is not None and entry.replicated:
            b.ipsec_list.remove(entry)
            _rfc_call_state(x, entry, delete=False, free=True)
            x.xso.upper_priv = None
            x.xso.real_dev = None
            x.xso.offload_handle = 0
            return
        real = x.xso.real_dev
        x.xso.real_dev = None
        if real is not None and real is not dev:
            ops = entry.real_ops if entry is not None and entry.real_ops is not None else _ops(real)
            if ops is not None and ops.has_state_free:
                ops.xdo_dev_state_free(real, x)
        if entry is not None:
            b.ipsec_list.remove(entry)
        if b.lag_model == "shared":
            x.xso.offload_handle = 0

    # -- datapath questions -------------------------------------------------------------------
    def xdo_dev_offload_ok(self, x) -> bool:
        b = self.bond
        lag = bond_mode_can_use_lag_xfrm(b)
        if b.lag_model == "replicated" and lag:
            # RFC: crypto/packet and a replicated record present
            return x.xso.type in (XFRM_DEV_OFFLOAD_CRYPTO, XFRM_DEV_OFFLOAD_PACKET) \
                and x.xso.upper_priv is not None
        if b.lag_model == "shared":
            real = x.xso.real_dev
            if real is None or real is b.dev or _is_bond(real) or not _running(real):
                return False
            if lag and not self.xdo_dev_state_lower_handle(b.dev, x, real):
                return False
            return x.xso.type in (XFRM_DEV_OFFLOAD_CRYPTO, XFRM_DEV_OFFLOAD_PACKET)
        # upstream bond_ipsec_offload_ok: active-backup, on the active slave
        return b.mode == AB and b.active is not None and x.xso.real_dev is b.active

    def xdo_dev_state_lower_handle(self, dev, x, lower_dev) -> int:
        """``bond_ipsec_lower_handle`` of the model (RFC / P39)."""
        b = self.bond
        if b.lag_model == "replicated":
            if b.mode == AB:
                return x.xso.offload_handle if x.xso.real_dev is lower_dev else 0
            if not bond_mode_can_use_lag_xfrm(b):
                return 0
            entry = x.xso.upper_priv
            if not isinstance(entry, BondIpsec) or not entry.replicated or entry.x is not x:
                return 0
            for inst in entry.instances:
                if inst.added and inst.real_dev is lower_dev:
                    return inst.lower_handle
            if lower_dev is b.dev:
                # an RX path that already promoted skb->dev to the bond: any installed one
                for inst in entry.instances:
                    if inst.added:
                        return inst.lower_handle
            return 0
        if b.lag_model == "shared":
            if not bond_mode_can_use_lag_xfrm(b):
                return 0
            entry = _find(b, x)
            real = x.xso.real_dev
            if entry is None or not entry.lag or real is None:
                return 0
            if lower_dev is b.dev or lower_dev is real:
                return x.xso.offload_handle
            if getattr(lower_dev, "master", None) is b.dev and bond_ipsec_lag_pair_ok(real, lower_dev):
                return x.xso.offload_handle
            return 0
        return 0

    def xdo_dev_state_advance_esn(self, x) -> None:
        real = self._forward_dev(x)
        if real is not None and _ops(real).has_advance_esn:
            _ops(real).xdo_dev_state_advance_esn(x)

    def xdo_dev_state_update_stats(self, x) -> None:
        """Upstream/AB: the active slave's op. RFC LAG: nothing (left as upstream, which only
        knows active-backup). Shared: the pinned lower's captured ops — its one context holds
        the totals."""
        real = self._forward_dev(x)
        if real is not None and _ops(real).has_update_stats:
            _ops(real).xdo_dev_state_update_stats(x)

    def _forward_dev(self, x):
        b = self.bond
        entry = _find(b, x)
        if entry is None or entry.replicated:
            return None
        if entry.lag:
            return entry.real_dev
        # bond_ipsec_dev: active-backup, the active slave holding the state
        if b.mode != AB or b.active is None or x.xso.real_dev is not b.active:
            return None
        return b.active

    # -- policies (RFC R2 and P39: validation only, nothing reaches the lowers) --------------
    def xdo_dev_policy_add(self, dev, pol) -> None:
        """``bond_ipsec_policy_add``."""
        b = self.bond
        if pol.xdo.type != XFRM_DEV_OFFLOAD_PACKET:
            refuse("Bond supports only XFRM packet policies", E.EOPNOTSUPP)
        if pol.dir >= 3:
            refuse("Bond does not offload socket policies", E.EOPNOTSUPP)
        if len(pol.templates) != 1 or pol.templates[0].proto != X.IPPROTO_ESP:
            refuse("Bond offloads ESP policies only", E.EOPNOTSUPP)
        if not _hw_esp(b.dev):
            refuse("Bond IPsec offload is disabled", E.EOPNOTSUPP)
        if b.mode != AB and not bond_mode_can_use_lag_xfrm(b):
            refuse("Bond mode cannot use XFRM packet offload", E.EOPNOTSUPP)
        if pol.xdo.dir not in (1, 2, 3):
            refuse("Bond does not support this policy direction", E.EOPNOTSUPP)

    # -- emulation -------------------------------------------------------------------------------
    def hw_traffic(self, dev, x, packets: int, nbytes: int) -> None:
        """``xfrmd ctl offload-traffic BOND SPI``: the packets cross the slave the model
        sends them through (active / pinned); the lower's counters and the replica's context
        move."""
        b = self.bond
        entry = _find(b, x)
        if entry is None:
            refuse("xfrmd: the SA is not offloaded to a slave", E.EOPNOTSUPP)
        if entry.replicated:
            slave = bond_ipsec_xmit_dev(b, x)
            inst = next((i for i in entry.instances if i.real_dev is slave), None)
            if inst is None:
                refuse("xfrmd: no usable slave holds a replica", E.EOPNOTSUPP)
            saved = (x.xso.real_dev, x.xso.offload_handle)
            x.xso.real_dev, x.xso.offload_handle = slave, inst.lower_handle
            try:
                _ops(slave).hw_traffic(slave, x, packets, nbytes)
            except OffloadError:
                pass                       # the lower keeps no counters; the context does
            finally:
                x.xso.real_dev, x.xso.offload_handle = saved
            _count(x, inst.tx, inst.rx, packets, nbytes)
            return
        slave = x.xso.real_dev
        if slave is None or slave is dev:
            refuse("xfrmd: the SA is not offloaded to a slave", E.EOPNOTSUPP)
        _ops(slave).hw_traffic(slave, x, packets, nbytes)
        _count(x, entry.tx, entry.rx, packets, nbytes)

    def hw_xmit(self, dev, x, nbytes: int, account, spray=None):
        """One packet-offloaded packet of ``x`` through the bond (xfrmd.datapath):

        * RFC replicas: the TX pin (``bond_ipsec_xmit_dev``) — or, with ``spray`` (a
          :class:`bonding.hash.Flow`), the slave ``bond_xmit_hash`` picks for the inner flow —
          and that replica's own TX sequence context numbers it;
        * newest series: ``bond_ipsec_packet_xmit`` — the pinned real_dev while it runs, else
          EHOSTUNREACH; the core numbers it on the one state (X05);
        * upstream: the active slave holding the state, whose hardware numbers it."""
        from .hash import xmit_slave
        b = self.bond
        entry = _find(b, x)
        if entry is None:
            raise OffloadError(E.EHOSTUNREACH, "bonding: the SA is not offloaded to a slave")
        if entry.replicated:
            if spray is not None:
                slave = xmit_slave(spray, b.xmit_hash_policy, b.usable_slaves())
            else:
                slave = bond_ipsec_xmit_dev(b, x)
            inst = next((i for i in entry.instances if i.added and i.real_dev is slave), None)
            if inst is None:
                raise OffloadError(E.EHOSTUNREACH, "bonding: no usable slave holds a replica")
            saved = (x.xso.real_dev, x.xso.offload_handle)
            x.xso.real_dev, x.xso.offload_handle = slave, inst.lower_handle
            try:
                _ops(slave).hw_traffic(slave, x, 1, nbytes)
            except OffloadError:
                pass                       # the lower keeps no counters; the context does
            finally:
                x.xso.real_dev, x.xso.offload_handle = saved
            inst.tx.oseq += 1
            inst.tx.packets += 1
            inst.tx.bytes += nbytes
            return slave, inst.tx.oseq
        if entry.lag:
            slave = bond_ipsec_xmit_dev(b, x)
            if slave is None:
                raise OffloadError(E.EHOSTUNREACH, "bonding: the pinned slave is gone or not running")
            account()
            try:
                _ops(slave).hw_traffic(slave, x, 1, nbytes)
            except OffloadError:
                pass
            if entry.tx is not None:
                _count(x, entry.tx, entry.rx, 1, nbytes)
            return slave, None
        real = x.xso.real_dev
        if (real is None or real is dev or not _running(real)
                or (b.mode == AB and real is not b.active)):
            raise OffloadError(E.EHOSTUNREACH, "bonding: no active slave holds the state")
        _, seq = _ops(real).hw_xmit(real, x, nbytes, account)
        return real, seq

    def hw_recv(self, dev, x, rx_dev, seq: int, nbytes: int, account) -> None:
        """One packet-offloaded packet of the IN state ``x`` arriving on slave ``rx_dev``:
        RFC replicas — that slave's replica and its RX replay context (per port unless the
        lowers share it: S3); newest series — the core's check on the one state (X06);
        upstream — the active slave holding the state."""
        from devices.xfrmdev import hw_replay_window
        b = self.bond
        entry = _find(b, x)
        if entry is None:
            raise OffloadError(0, "bonding: the SA is not offloaded to a slave")
        if entry.replicated:
            inst = next((i for i in entry.instances if i.added and i.real_dev is rx_dev), None)
            if inst is None:
                raise OffloadError(0, f"bonding: no replica on {getattr(rx_dev, 'name', rx_dev)}")
            ctx = inst.rx
            why, ctx.seq, ctx.bitmap = hw_replay_window(ctx.seq, ctx.bitmap, ctx.window, seq)
            if why:
                ctx.replay_drops += 1
                raise OffloadError(0, f"replay drop in {rx_dev.name}'s replica context: {why}")
            ctx.packets += 1
            ctx.bytes += nbytes
            return
        if entry.lag:
            account()
            if entry.rx is not None:
                entry.rx.seq = max(entry.rx.seq, seq)
                entry.rx.packets += 1
                entry.rx.bytes += nbytes
            return
        real = x.xso.real_dev
        if real is None or real is not rx_dev:
            raise OffloadError(0, "bonding: the packet arrived on a slave without the state")
        _ops(real).hw_recv(real, x, rx_dev, seq, nbytes, account)

    def table(self, dev) -> list[dict]:
        return [bond_ipsec_describe(self.bond, e) for e in self.bond.ipsec_list]

    def describe(self, dev) -> dict:
        """Extra show-offload fields for the bond itself."""
        b = self.bond
        ok, why = bond_lag_esp_eligible(b)
        out = {"lag_model": b.lag_model, "mode": b.mode, "xmit_hash_policy": b.xmit_hash_policy,
               "lag_eligible": bond_mode_can_use_lag_xfrm(b),
               "slaves": [s.name for s in b.slaves],
               "usable_slaves": [s.name for s in b.usable_slaves()]}
        if b.mode == AB:
            out["active_slave"] = b.active.name if b.active is not None else None
        if not ok:
            out["esp_ineligible"] = why
        return out


def _count(x, tx, rx, packets, nbytes):
    if x.xso.dir == XFRM_DEV_OFFLOAD_IN:
        if rx is not None:
            rx.packets += packets
            rx.bytes += nbytes
    elif tx is not None:
        tx.oseq += packets
        tx.packets += packets
        tx.bytes += nbytes


def bond_ipsec_describe(bond, e: BondIpsec) -> dict:
    """One bond SA for show-offload: model, which slave holds it, per-slave handles and
    the counters of each hardware context."""
    x = e.x
    d = {"spi": x.id.spi, "dir": "in" if x.xso is not None and x.xso.dir == XFRM_DEV_OFFLOAD_IN else "out",
         "type": "packet" if x.xso is not None and x.xso.type == XFRM_DEV_OFFLOAD_PACKET else "crypto"}
    if e.replicated:
        d["model"] = "replicated"
        xmit = bond_ipsec_xmit_dev(bond, x)
        d["xmit_slave"] = xmit.name if xmit is not None else None
        tx_ids, rx_ids = {}, {}
        reps = []
        for inst in e.instances:
            reps.append({"slave": inst.real_dev.name, "handle": inst.lower_handle,
                         "added": inst.added,
                         "tx_ctx": tx_ids.setdefault(id(inst.tx), len(tx_ids) + 1),
                         "rx_ctx": rx_ids.setdefault(id(inst.rx), len(rx_ids) + 1),
                         "oseq": inst.tx.oseq, "tx_packets": inst.tx.packets,
                         "rx_seq": inst.rx.seq, "rx_packets": inst.rx.packets,
                         "replay_drops": inst.rx.replay_drops})
        d["replicas"] = reps
        return d
    real = x.xso.real_dev if x.xso is not None else None
    d["model"] = "shared" if e.lag else ("active-backup" if bond.mode == AB else bond.lag_model)
    d["slave"] = real.name if real is not None and real is not bond.dev else None
    d["handle"] = x.xso.offload_handle if x.xso is not None else 0
    if e.lag:
        d["valid_on"] = [s.name for s in bond.usable_slaves()
                         if BondXfrmDevOps.xdo_dev_state_lower_handle(_ops(bond.dev), bond.dev, x, s)]
        if e.tx is not None:
            d.update(oseq=e.tx.oseq, tx_packets=e.tx.packets, rx_seq=e.rx.seq,
                     rx_packets=e.rx.packets)
    return d


# -- upstream (model off, and active-backup under the RFC) ------------------------------------

def _add_on_slave(x, slave, ops) -> None:
    """The lower's xdo_dev_state_add with ``xso.real_dev`` already the slave (the lower sees
    itself as real_dev); a refusal clears it and carries the slave's own message."""
    x.xso.real_dev = slave
    try:
        ops.xdo_dev_state_add(slave, x)
    except OffloadError as e:
        x.xso.real_dev = None
        raise _lower_error(e, slave, False) from None


def _upstream_add_sa(b, x) -> None:
    """``bond_ipsec_add_sa`` (upstream): the mode is not checked; whatever
    curr_active_slave is."""
    slave = b.active
    if slave is None:
        refuse(None, E.ENODEV)
    ops = _ops(slave)
    if ops is None or _is_bond(slave):
        refuse("Slave does not support ipsec offload", E.EINVAL)
    _add_on_slave(x, slave, ops)
    b.ipsec_list.append(BondIpsec(x, slave, ops))


def bond_ipsec_del_sa_all(bond) -> None:
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
        ops = _ops(real)
        ops.xdo_dev_state_delete(real, x)
        if ops.has_state_free:
            ops.xdo_dev_state_free(real, x)


def bond_ipsec_add_sa_all(bond) -> None:
    """After a failover: each SA is added on the new active slave; a refusal leaves it
    without offload (the kernel only warns "failed to add SA")."""
    if bond.mode != AB:
        return
    slave = bond.active
    ops = _ops(slave)
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
        except OffloadError:
            x.xso.real_dev = None
            log.warning("%s: failed to add SA", bond.dev.name)
            continue
        e.real_dev, e.real_ops = slave, ops


def _lag_state_checks(b, x, *, refuse_acquire: bool) -> None:
    """The state checks both LAG models make first, in their order (the newest series also
    refuses acquire-created states, between the type and the ESN checks)."""
    if x.xso.type not in (XFRM_DEV_OFFLOAD_CRYPTO, XFRM_DEV_OFFLOAD_PACKET):
        refuse("LAG supports only XFRM crypto or packet offload", E.EOPNOTSUPP)
    if refuse_acquire and x.xso.flags & XFRM_DEV_OFFLOAD_FLAG_ACQ:
        refuse("LAG does not support acquire offload states", E.EOPNOTSUPP)
    if x.props.flags & XFRM_STATE_ESN:
        refuse("LAG does not support XFRM ESN offload", E.EOPNOTSUPP)
    if b.ipsec_lag_block_count:
        refuse("Bond LAG XFRM state add is blocked", E.EAGAIN)
    if not _hw_esp(b.dev):
        refuse("Bond IPsec offload is disabled", E.EOPNOTSUPP)


# -- replicated (the RFC, R2/R4) -------------------------------------------------------------

def _rfc_lag_add_sa(b, dev, x) -> None:
    """``bond_ipsec_lag_add_sa`` (R2), in its order."""
    _lag_state_checks(b, x, refuse_acquire=False)
    if not bond_mode_can_use_lag_xfrm(b):
        refuse("Bond LAG XFRM eligibility changed", E.EAGAIN)
    entry = BondIpsec(x, lag=True, replicated=True)
    for s in b.slaves:
        if not _running(s):
            continue
        why = _rfc_slave_problem(s)
        if why:
            refuse(f"Not all slaves support IPsec offload (slave {s.name}: {why})", E.EOPNOTSUPP)
        entry.instances.append(BondIpsecInst(s))
    if not entry.instances:
        refuse(None, E.ENODEV)
    done = []
    try:
        for inst in entry.instances:
            _rfc_add_inst(x, inst)
            done.append(inst)
    except OffloadError:
        for inst in reversed(done):
            _rfc_call_inst(x, inst, delete=True, free=True)
        x.xso.real_dev = None
        x.xso.offload_handle = 0
        raise
    x.xso.real_dev = None
    x.xso.offload_handle = 0
    for inst in entry.instances:
        _attach_contexts(x, entry, inst)
    x.xso.upper_priv = entry
    b.ipsec_list.insert(0, entry)          # list_add: at the head


def _rfc_add_inst(x, inst) -> None:
    """``bond_ipsec_lag_add_inst``: the lower sees itself as real_dev and a zero handle;
    the handle it leaves is the replica's."""
    s = inst.real_dev
    ops = _ops(s)
    if _rfc_slave_problem(s):
        refuse(None, E.EOPNOTSUPP)
    saved = (x.xso.real_dev, x.xso.offload_handle)
    x.xso.real_dev, x.xso.offload_handle = s, 0
    try:
        try:
            ops.xdo_dev_state_add(s, x)
        except OffloadError as e:
            raise _lower_error(e, s, True) from None
        h = x.xso.offload_handle
        if not h:
            ops.xdo_dev_state_delete(s, x)
            if ops.has_state_free:
                ops.xdo_dev_state_free(s, x)
            refuse(f"Slave did not return an IPsec offload handle (slave {s.name})", E.EINVAL)
        inst.lower_handle = h
        inst.deleted = False
        inst.added = True
    finally:
        x.xso.real_dev, x.xso.offload_handle = saved


def _attach_contexts(x, entry, inst) -> None:
    """The replica's TX sequence and RX replay contexts: its own, unless an earlier replica's
    lower shares that half with it."""
    s = inst.real_dev
    for other in entry.instances:
        if other is inst or other.tx is None:
            continue
        if inst.tx is None and _shares(other.real_dev, s, XFRMDEV_OPS_F_LAG_SHARED_TX_SEQ):
            inst.tx = other.tx
            inst.tx.ports.append(s.name)
        if inst.rx is None and _shares(other.real_dev, s, XFRMDEV_OPS_F_LAG_SHARED_RX_REPLAY):
            inst.rx = other.rx
            inst.rx.ports.append(s.name)
    if inst.tx is None:
        inst.tx = TxContext(s.name)
    if inst.rx is None:
        inst.rx = RxContext(s.name, _window(x))


def _rfc_call_inst(x, inst, delete: bool, free: bool) -> None:
    """``bond_ipsec_lag_call_inst``: delete and/or free one replica on its lower, with
    real_dev and the handle set to the replica's for the call."""
    if not inst.lower_handle:
        return
    ops = _ops(inst.real_dev)
    if ops is None:
        return
    saved = (x.xso.real_dev, x.xso.offload_handle)
    x.xso.real_dev, x.xso.offload_handle = inst.real_dev, inst.lower_handle
    try:
        if delete:
            if not inst.deleted:
                ops.xdo_dev_state_delete(inst.real_dev, x)
                inst.deleted = True
            inst.added = False
        if free:
            if ops.has_state_free:
                ops.xdo_dev_state_free(inst.real_dev, x)
            inst.lower_handle = 0
    finally:
        x.xso.real_dev, x.xso.offload_handle = saved


def _rfc_call_state(x, entry, delete: bool, free: bool) -> None:
    for inst in reversed(entry.instances):
        _rfc_call_inst(x, inst, delete, free)


def bond_ipsec_lag_remove_slave(bond, slave) -> None:
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
            for ctx in (inst.tx, inst.rx):
                if ctx is not None and slave.name in ctx.ports:
                    ctx.ports.remove(slave.name)


def bond_ipsec_lag_add_slave(bond, slave) -> int:
    """``bond_ipsec_lag_add_slave`` (R4): every replicated state gets a replica on a newly
    running slave. A failure flushes every bond state ("failed to replicate IPsec SA,
    flushing bond states"). Returns 0 or the errno."""
    if not bond_mode_can_use_lag_xfrm(bond) or not _running(slave):
        return 0
    slave_ok = _rfc_slave_problem(slave) is None
    have_states = False
    err = 0
    from xfrmd.xfrm.state import XFRM_STATE_DEAD
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
        except OffloadError as exc:
            err = exc.errno
            break
        e.instances.append(inst)
        _attach_contexts(e.x, e, inst)
    if err and have_states:
        log.warning("%s: (slave %s): failed to replicate IPsec SA, flushing bond states",
                    bond.dev.name, slave.name)
        bond_ipsec_lag_flush(bond)
    return err


# -- shared (the newest series, P38–P40) ------------------------------------------------------

def bond_ipsec_xfrm_hash(x) -> int:
    """``bond_ipsec_xfrm_hash`` (P39): SPI ^ proto ^ family ^ the addresses (each __be32
    read as the little-endian CPU holds it), the encap ports, folded >>16, >>8."""
    def le(raw):
        return int.from_bytes(bytes(raw), "little")
    h = le(x.id.spi.to_bytes(4, "big")) ^ x.id.proto ^ x.props.family
    if x.props.family == X.AF_INET:
        h ^= le(x.id.daddr[:4]) ^ le(x.props.saddr[:4])
    elif x.props.family == X.AF_INET6:
        for i in range(0, 16, 4):
            h ^= le(x.id.daddr[i:i + 4]) ^ le(x.props.saddr[i:i + 4])
    enc = getattr(x, "encap", None)
    if enc is not None:
        # (__force u16) of a __be16: the port's network bytes read little-endian
        sport = int.from_bytes(enc.encap_sport.to_bytes(2, "big"), "little")
        dport = int.from_bytes(enc.encap_dport.to_bytes(2, "big"), "little")
        h ^= (sport << 16) ^ dport
    h &= 0xFFFFFFFF
    h ^= h >> 16
    h ^= h >> 8
    return h


def bond_ipsec_lag_select_dev(bond, x):
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


def bond_ipsec_xmit_dev(bond, x):
    """The slave a packet-offloaded state's packets leave through: the RFC pins to the
    first usable slave from ``hash % count`` holding a replica (``bond_ipsec_lag_xmit_dev``);
    the newest bond always uses the pinned real_dev while it runs; upstream the active
    slave."""
    entry = _find(bond, x)
    if entry is None:
        return None
    if entry.replicated:
        usable = bond.usable_slaves()
        if not usable:
            return None
        start = bond_ipsec_xfrm_hash(x) % len(usable)
        for i in range(len(usable)):
            s = usable[(start + i) % len(usable)]
            if any(inst.added and inst.real_dev is s for inst in entry.instances):
                return s
        return None
    real = x.xso.real_dev
    return real if real is not None and real is not bond.dev and _running(real) else None


def _shared_add_sa(b, dev, x) -> None:
    """``bond_ipsec_add_sa`` of the newest series (P39), checks in the order of docs/bonding.md's table."""
    lag = bond_mode_can_use_lag_xfrm(b)
    if b.mode != AB and not lag:
        refuse("Bond mode does not support IPsec offload", E.EOPNOTSUPP)
    if lag:
        _lag_state_checks(b, x, refuse_acquire=True)
        slave = bond_ipsec_lag_select_dev(b, x)
    else:
        slave = b.active
    if slave is None:
        refuse("No eligible IPsec offload slave", E.ENODEV)
    if not bond_ipsec_slave_has_xfrm_ops(slave):
        refuse("Slave does not support IPsec offload", E.EOPNOTSUPP)
    ops = _ops(slave)
    # real_dev / real_ops are set before the lower add: the lower sees itself as real_dev
    _add_on_slave(x, slave, ops)
    if lag and not x.xso.offload_handle:
        ops.xdo_dev_state_delete(slave, x)
        ops.xdo_dev_state_free(slave, x)
        x.xso.real_dev = None
        refuse("LAG slave did not return an offload handle", E.EINVAL)
    entry = BondIpsec(x, slave, ops, lag=lag)
    if lag:
        # one hardware context for the SA, whichever member carries its packets
        entry.tx, entry.rx = TxContext(slave.name), RxContext(slave.name, _window(x))
    b.ipsec_list.append(entry)


# -- flushes and topology events --------------------------------------------------------------

def bond_ipsec_lag_begin_flush(bond) -> None:
    """``bond_ipsec_lag_begin_flush``: block LAG adds (the 0→1 transition would also tear
    down states caught between offload and SAD insertion; the sans-IO model has none)."""
    bond.ipsec_lag_block_count += 1


def bond_ipsec_lag_end_flush(bond) -> None:
    if bond.ipsec_lag_block_count == 0:
        log.warning("%s: LAG XFRM flush end without begin", bond.dev.name)
        return
    bond.ipsec_lag_block_count -= 1


def bond_xfrm_dev_state_flush(bond) -> list:
    """``xfrm_dev_state_flush(net, bond, true)``: every state offloaded to the bond leaves
    the SAD. The kernel sends no XFRM_MSG_DELSA for it (only the netlink delete path
    notifies); with ``bond.lag_flush_notify`` xfrmd sends one per state, as
    ``ip xfrm state delete`` would (seq 0, pid 0). Policies offloaded to the bond stay."""
    ns = bond.dev.netns
    xnet = getattr(ns, "xfrm", None) if ns is not None else None
    if xnet is None:
        return []
    from xfrmd.xfrm.sadb import sad
    db = sad(xnet)
    victims = db.dev_flush(bond.dev)
    if bond.lag_flush_notify:
        for x in victims:
            db.km_state_notify(x, X.XfrmMsg.DELSA, 0, 0)
    return victims


def bond_ipsec_lag_flush(bond) -> list:
    bond_ipsec_lag_begin_flush(bond)
    try:
        return bond_xfrm_dev_state_flush(bond)
    finally:
        bond_ipsec_lag_end_flush(bond)


def bond_ipsec_topology_begin(bond, event: str, slave=None) -> None:
    """Before a membership / link change (enslave, release, a slave's UP, DOWN or carrier
    CHANGE): the newest series flushes every bond state of a LAG-eligible bond and blocks
    adds until :func:`bond_ipsec_topology_end` (P39, P40)."""
    if bond.lag_model == "shared" and bond_mode_can_use_lag_xfrm(bond):
        bond_ipsec_lag_begin_flush(bond)
        bond_xfrm_dev_state_flush(bond)
        bond._lag_flushing = getattr(bond, "_lag_flushing", 0) + 1


def bond_ipsec_topology_end(bond, event: str, slave=None) -> None:
    """After the change: the newest series ends the flush; the RFC adds replicas to a
    slave that now runs (enslave, UP, CHANGE) or removes a stopped or departed slave's
    replicas (DOWN, release)."""
    if getattr(bond, "_lag_flushing", 0):
        bond._lag_flushing -= 1
        bond_ipsec_lag_end_flush(bond)
    if bond.lag_model != "replicated" or slave is None:
        return
    if event in ("release", "NETDEV_DOWN") or (event == "NETDEV_UNREGISTER"):
        bond_ipsec_lag_remove_slave(bond, slave)
    elif event in ("enslave", "NETDEV_UP", "NETDEV_CHANGE", "NETDEV_FEAT_CHANGE"):
        bond_ipsec_lag_add_slave(bond, slave)


def bond_ipsec_config_change(bond, old_eligible: bool, new_eligible: bool) -> None:
    """Mode or xmit_hash_policy change (P40 / R4): the newest series flushes when the old
    or the new configuration is LAG-eligible, the RFC only when leaving LAG; upstream
    does nothing."""
    if bond.lag_model == "shared" and (old_eligible or new_eligible):
        bond_ipsec_lag_flush(bond)
    elif bond.lag_model == "replicated" and old_eligible and not new_eligible:
        bond_ipsec_lag_flush(bond)
