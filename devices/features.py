"""Netdev features as ethtool names them (``ethtool -k``): what the hardware can toggle
(``hw``, "available"), what was asked for (``wanted``, "requested") and what is on
(``active``); a feature on but not in ``hw`` shows as fixed. Drivers may refuse a change
through its ``ndo_set_features`` (``dev.set_features_hook``) and fix them up through
``ndo_fix_features`` (``dev.fix_features_hook``).

FEATURE_NAMES is the kernel's ETH_SS_FEATURES string set (Linux 6.18, read with
ETHTOOL_GSTRINGS): the index is the NETIF_F_*_BIT. The per-kind masks are what a real veth,
lo and bridge report (ETHTOOL_GFEATURES) on that kernel."""
from __future__ import annotations

import errno as E
import logging
from typing import TYPE_CHECKING, Any, Iterable

from xfrmd.errors import KernelError

from .linkgen import link_changed

if TYPE_CHECKING:
    from .netdev import NetDevice

FEATURE_NAMES = [
    "tx-scatter-gather", "tx-checksum-ipv4", "", "tx-checksum-ip-generic", "tx-checksum-ipv6",
    "highdma", "tx-scatter-gather-fraglist", "tx-vlan-hw-insert", "rx-vlan-hw-parse",
    "rx-vlan-filter", "vlan-challenged", "tx-generic-segmentation", "", "", "rx-gro", "rx-lro",
    "tx-tcp-segmentation", "tx-gso-robust", "tx-tcp-ecn-segmentation",
    "tx-tcp-mangleid-segmentation", "tx-tcp6-segmentation", "tx-fcoe-segmentation",
    "tx-gre-segmentation", "tx-gre-csum-segmentation", "tx-ipxip4-segmentation",
    "tx-ipxip6-segmentation", "tx-udp_tnl-segmentation", "tx-udp_tnl-csum-segmentation",
    "tx-gso-partial", "tx-tunnel-remcsum-segmentation", "tx-sctp-segmentation",
    "tx-esp-segmentation", "", "tx-udp-segmentation", "tx-gso-list",
    "tx-tcp-accecn-segmentation", "tx-checksum-fcoe-crc", "tx-checksum-sctp",
    "rx-ntuple-filter", "rx-hashing", "rx-checksum", "tx-nocache-copy", "loopback", "rx-fcs",
    "rx-all", "tx-vlan-stag-hw-insert", "rx-vlan-stag-hw-parse", "rx-vlan-stag-filter",
    "l2-fwd-offload", "hw-tc-offload", "esp-hw-offload", "esp-tx-csum-hw-offload",
    "rx-udp_tunnel-port-offload", "tls-hw-tx-offload", "tls-hw-rx-offload", "rx-gro-hw",
    "tls-hw-record", "rx-gro-list", "macsec-hw-offload", "rx-udp-gro-forwarding",
    "hsr-tag-ins-offload", "hsr-tag-rm-offload", "hsr-fwd-offload", "hsr-dup-offload"]
BIT = {n: i for i, n in enumerate(FEATURE_NAMES) if n}
ESP_FEATURES = ("esp-hw-offload", "esp-tx-csum-hw-offload", "tx-esp-segmentation")
NEVER_CHANGE = 1 << BIT["vlan-challenged"]

# (available, requested, active) as a real device of that kind reports them
_VETH = (0x0A00632E_4FDD49E9, 0x0000612E_4FDD09E9, 0x0000612E_4FDD09E9)
_LO = (0x0A00000E_401D4800, 0x0A00000E_401D4800, 0x0000052E_401D4C69)
_BRIDGE = (0x0A00220F_FFFF48E9, 0x0000200F_FFFF48E9, 0x0000200F_FFFF48E9)
# register_netdevice turns the soft features (GSO, GRO) on for every device; veth is the
# one that turns GRO off again (veth_setup, unless XDP or GRO is asked for). Kinds this
# kernel cannot make (dummy, bond, netdevsim, the hardware ports) take veth's masks with
# GRO on, as registration leaves them.
_GRO = 1 << BIT["rx-gro"]
_REGISTERED = (_VETH[0], _VETH[1] | _GRO, _VETH[2] | _GRO)
PROFILES = {"veth": _VETH, "loopback": _LO, "bridge": _BRIDGE, "dummy": _REGISTERED,
            "bond": _REGISTERED, "netdevsim": _REGISTERED, "mlx5": _REGISTERED,
            "airoha-soe": _REGISTERED}


FEATURE_COUNT = len(FEATURE_NAMES)                  # NETDEV_FEATURE_COUNT
ALL_FEATURES = (1 << FEATURE_COUNT) - 1
ETHTOOL_BITS = ALL_FEATURES & ~NEVER_CHANGE         # NETIF_F_ETHTOOL_BITS
HW_ESP = 1 << BIT["esp-hw-offload"]
HW_ESP_TX_CSUM = 1 << BIT["esp-tx-csum-hw-offload"]
GSO_ESP = 1 << BIT["tx-esp-segmentation"]
BOND_XFRM_FEATURES = HW_ESP | HW_ESP_TX_CSUM | GSO_ESP

log = logging.getLogger("xfrmd.features")


def _names(mask: int) -> set[str]:
    return {n for n, i in BIT.items() if mask >> i & 1}


def _mask(names: Iterable[str]) -> int:
    m = 0
    for n in names:
        m |= 1 << BIT[n]
    return m


class _LinkGenMask:
    """A feature mask attribute of :class:`NetdevFeatures` whose change moves the link
    generation (devices/linkgen.py), so the shim asks GFEATURES again."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.slot = "_" + name

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        return self if obj is None else getattr(obj, self.slot)

    def __set__(self, obj: Any, v: int) -> None:
        if getattr(obj, self.slot, None) != v:
            setattr(obj, self.slot, v)
            link_changed()


class NetdevFeatures:
    """``hw_features``, ``wanted_features`` and ``features`` of one device, as 64-bit masks
    (``hw_mask``, ``wanted_mask``, ``active_mask``); the name-set views are for readers."""

    def __init__(self, active: Iterable[str] = (), hw: Iterable[str] = (),
                 wanted: Iterable[str] | None = None, kind: str = "veth"):
        avail, req, act = PROFILES.get(kind, _VETH)
        self.active_mask = act | _mask(active)
        self.hw_mask = avail | _mask(hw)
        self.wanted_mask = (req | _mask(active)) if wanted is None else _mask(wanted)
        self.last_error = 0       # the driver's errno of the last refused ndo_set_features

    # every mask moves the link generation when its value changes (_LinkGenMask):
    # ETHTOOL_GFEATURES answers all three, and a `wanted`-only change (a refused or fixed-up
    # `ethtool -K`) sends no notification the shim could see
    hw_mask = _LinkGenMask()
    wanted_mask = _LinkGenMask()
    active_mask = _LinkGenMask()

    def active(self, name: str) -> bool:
        return bool(self.active_mask >> BIT[name] & 1)

    @property
    def hw(self) -> set[str]:
        return _names(self.hw_mask)

    @property
    def wanted(self) -> set[str]:
        return _names(self.wanted_mask)

    @property
    def fixed(self) -> set[str]:
        return _names(self.active_mask & ~self.hw_mask)

    def names(self) -> set[str]:
        return _names(self.active_mask)

    def masks(self) -> tuple[int, int, int, int]:
        """(available, requested, active, never_changed) as ETHTOOL_GFEATURES reports."""
        return self.hw_mask, self.wanted_mask, self.active_mask, NEVER_CHANGE


# -- __netdev_update_features and its callers --------------------------------------------

def _feat(dev: "NetDevice") -> NetdevFeatures:
    """The features of a device the caller knows has them."""
    f = dev.features
    assert f is not None, dev
    return f


def _bond_running_slaves(dev: "NetDevice") -> list["NetDevice"]:
    bond = dev.bond
    return [s for s in (bond.slaves if bond else []) if s.up and s.features is not None]


def _bond_lag_eligible(bond: Any) -> bool:
    """``bond_mode_can_use_lag_xfrm``: 802.3ad or balance-xor with layer3+4."""
    return bond.mode in ("802.3ad", "balance-xor") and bond.xmit_hash_policy == "layer3+4"


def _bond_lag_ready(dev: "NetDevice") -> bool:
    """Every running slave can carry a LAG state: the bond's offload ops answer
    (``xdo_dev_lag_esp_eligible``, the bonding driver's ``bond_lag_esp_eligible``)."""
    ops = dev.xfrmdev_ops
    assert ops is not None, dev
    return bool(ops.xdo_dev_lag_esp_eligible(dev))


def bond_fix_features(dev: "NetDevice", features: int) -> int:
    """``bond_fix_features`` for the XFRM bits (docs/bonding.md). Active-backup and the
    upstream model (``off``) pass the requested bits through; in the LAG models the bits
    stay only while the bond is LAG-eligible and every running slave is capable, and each
    is ANDed over the slaves' ``features | (hw_features & mask)``; a mode that can use
    neither clears them. HW_ESP off takes TX_CSUM and GSO_ESP with it."""
    bond = dev.bond
    if bond is None:
        return features
    if bond.mode != "active-backup" and bond.lag_model != "off":
        xfrm = features & BOND_XFRM_FEATURES
        features &= ~BOND_XFRM_FEATURES
        if _bond_lag_eligible(bond) and _bond_lag_ready(dev):
            for s in _bond_running_slaves(dev):
                sf = _feat(s)
                xfrm &= sf.active_mask | (sf.hw_mask & BOND_XFRM_FEATURES)
            features |= xfrm
    if not features & HW_ESP:
        features &= ~(HW_ESP_TX_CSUM | GSO_ESP)
    return features


def _bits(*names: str) -> int:
    return _mask(names)


_ALL_TSO = _bits("tx-tcp-segmentation", "tx-tcp6-segmentation", "tx-tcp-ecn-segmentation",
                 "tx-tcp-mangleid-segmentation", "tx-tcp-accecn-segmentation")
_GSO_SOFTWARE = _ALL_TSO | _bits("tx-sctp-segmentation", "tx-udp-segmentation",
                                 "tx-gso-list")
_ONE_FOR_ALL = _GSO_SOFTWARE | _bits("tx-gso-robust", "tx-scatter-gather", "highdma",
                                     "tx-scatter-gather-fraglist", "vlan-challenged")
_ALL_FOR_ALL = _bits("tx-nocache-copy", "tx-fcoe-segmentation")
_HW_CSUM = _bits("tx-checksum-ip-generic")
_CSUM_MASK = _bits("tx-checksum-ipv4", "tx-checksum-ipv6") | _HW_CSUM


def netdev_increment_features(all_: int, one: int, mask: int) -> int:
    """``netdev_increment_features``: a lower device's features folded into an upper's
    (one-for-all bits if any lower has them, all-for-all bits only if every lower has)."""
    if mask & _HW_CSUM:
        mask |= _CSUM_MASK
    mask |= NEVER_CHANGE                            # NETIF_F_VLAN_CHALLENGED
    all_ |= one & (_ONE_FOR_ALL | _CSUM_MASK) & mask
    all_ &= one | ~_ALL_FOR_ALL
    if all_ & _HW_CSUM:
        all_ &= ~(_CSUM_MASK & ~_HW_CSUM)
    return all_


def br_fix_features(dev: "NetDevice", features: int) -> int:
    """``br_fix_features`` → ``br_features_recompute``: with ports, the one-for-all bits
    come from them, then ``netdev_add_tso_features``."""
    ns = dev.netns
    ports = [p for p in ns.links if p.master is dev and p.features is not None] if ns else []
    if not ports:
        return features
    mask = features
    features &= ~_ONE_FOR_ALL
    for p in ports:
        features = netdev_increment_features(features, _feat(p).active_mask, mask)
    return netdev_increment_features(features, _ALL_TSO, mask)


def _set_slave_xfrm_features(slave: "NetDevice", on: bool) -> int:
    """``bond_set_slave_xfrm_features``: only a slave whose HW_ESP is in ``hw_features``
    is changed; -EOPNOTSUPP when its resulting HW_ESP differs from the request."""
    f = _feat(slave)
    if not f.hw_mask & HW_ESP:
        return 0 if bool(f.active_mask & HW_ESP) == on else E.EOPNOTSUPP
    f.wanted_mask = (f.wanted_mask | HW_ESP) if on else (f.wanted_mask & ~HW_ESP)
    netdev_update_features(slave)
    return 0 if bool(f.active_mask & HW_ESP) == on else E.EOPNOTSUPP


def bond_set_features(dev: "NetDevice", features: int) -> int:
    """``bond_set_features`` (ndo_set_features, LAG models only) on an HW_ESP change: off
    flushes the bond's offloaded states, then every running slave gets the new value; on
    pushes it to every running slave and refuses (-EOPNOTSUPP) unless all of them took it.
    A refused change is rolled back on the slaves that had switched (a failing multi-step
    operation leaves nothing half done)."""
    bond = dev.bond
    if bond.mode == "active-backup" or bond.lag_model == "off":
        return 0
    on = bool(features & HW_ESP)
    if on == bool(_feat(dev).active_mask & HW_ESP):
        return 0
    if not on:
        # bond_ipsec_lag_begin_flush + xfrm_dev_state_flush(bond) + end_flush: the bond's
        # states only; policies offloaded to the bond stay (the newest series' bond_set_features)
        ops = dev.xfrmdev_ops
        assert ops is not None, dev
        ops.xdo_dev_lag_flush(dev)
    dev.notifier_ctx = True     # bond->notifier_ctx: the slaves' FEAT_CHANGE must not recurse
    try:
        return _bond_push(dev, on)
    finally:
        dev.notifier_ctx = False


def _bond_push(dev: "NetDevice", on: bool) -> int:
    running = _bond_running_slaves(dev)
    saved = [(s, _feat(s).wanted_mask, _feat(s).active_mask) for s in running]
    failed = [s for s in running if _set_slave_xfrm_features(s, on)]
    if on and (failed or not _bond_lag_ready(dev)):
        for s, wanted, active in saved:
            sf = _feat(s)
            if sf.active_mask != active or sf.wanted_mask != wanted:
                sf.wanted_mask = wanted
                netdev_update_features(s)
        for s in failed:
            log.warning("%s: failed to apply LAG XFRM feature request on %s", dev.name, s.name)
        return E.EOPNOTSUPP
    return 0


def __netdev_update_features(dev: "NetDevice") -> int:
    """``__netdev_update_features``: features = the fixed bits kept, the wanted bits of
    ``hw_features``, through the driver's ``ndo_fix_features``; a change goes to the driver's
    ``ndo_set_features``, which may refuse (then nothing changes: ``set_features() failed``
    in the kernel log). Returns 1 changed, 0 nothing to do, -1 refused.

    A bond whose driver set no ndo hooks gets :func:`bond_fix_features` and
    :func:`bond_set_features`, a bridge :func:`br_fix_features`."""
    f = _feat(dev)
    features = (f.active_mask & ~f.hw_mask) | (f.wanted_mask & f.hw_mask)
    fix = dev.fix_features_hook
    if fix is None and dev.bond is not None:
        fix = bond_fix_features
    if fix is None and dev.kind == "bridge":
        fix = br_fix_features
    if fix is not None:
        features = fix(dev, features)
    f.last_error = 0
    if features == f.active_mask:
        return 0
    hook = dev.set_features_hook
    if hook is None and dev.bond is not None:
        hook = bond_set_features
    err = hook(dev, features) if hook is not None else 0
    if err:
        f.last_error = abs(err)
        log.info("%s: set_features() failed (%d); wanted %#x, left %#x", dev.name, -abs(err),
                 features, f.active_mask)
        return -1
    f.active_mask = features
    return 1


def netdev_features_change(dev: "NetDevice", old: int) -> None:
    """``netdev_features_change``: NETDEV_FEAT_CHANGE (ethtool's FEATURES_NTF, the SOE's
    flush, the bond's recomputation)."""
    dev.call_netdevice_notifiers("NETDEV_FEAT_CHANGE", old=_names(old))


def netdev_update_features(dev: "NetDevice") -> int:
    """``netdev_update_features``; returns the driver's errno if it refused, else 0."""
    f = _feat(dev)
    old = f.active_mask
    if __netdev_update_features(dev):
        if f.active_mask != old:
            netdev_features_change(dev, old)
    return f.last_error


def ethtool_sfeatures(dev: "NetDevice", valid: int, wanted: int) -> int:
    """``ethtool_set_features`` (ETHTOOL_SFEATURES): returns the ETHTOOL_F_* bits the ioctl
    returns (UNSUPPORTED = 1: a bit the device cannot change; WISH = 2: wanted differs
    from active afterwards), or a negative errno."""
    f = _feat(dev)
    if valid & ~ETHTOOL_BITS:
        return -E.EINVAL
    ret = 0
    if valid & ~f.hw_mask:
        valid &= f.hw_mask
        ret |= 1
    f.wanted_mask = (f.wanted_mask & ~valid) | (wanted & valid)
    netdev_update_features(dev)
    if (f.wanted_mask ^ f.active_mask) & valid:
        ret |= 2
    return ret


def ethnl_set_features(dev: "NetDevice", req_wanted: int, req_mask: int, *,
                       notify: bool = True) -> tuple[int, int, int, int]:
    """``ethnl_set_features`` once the bitset is parsed: the wanted bits change only where
    the request differs from ``wanted_features``; returns the reply's (wanted value, wanted
    mask, active value, active mask): the requested bits that did not become active, and
    the bits whose active state changed."""
    f = _feat(dev)
    if req_mask & ~ETHTOOL_BITS:
        raise KernelError(E.EINVAL, "attempt to change non-ethtool features")
    old_active, old_wanted = f.active_mask, f.wanted_mask
    req_wanted = (req_wanted & req_mask) | (old_wanted & ~req_mask)
    if req_wanted != old_wanted:
        f.wanted_mask = (f.wanted_mask & ~f.hw_mask) | (req_wanted & f.hw_mask)
        __netdev_update_features(dev)
    new_active = f.active_mask
    wanted_diff = (req_wanted ^ new_active) & req_mask
    active_diff = old_active ^ new_active
    if notify and new_active != old_active:      # the genetlink handler notifies after its reply
        netdev_features_change(dev, old_active)
    return req_wanted & wanted_diff, wanted_diff, new_active & active_diff, active_diff


def set_features(dev: "NetDevice", wanted: dict[str, bool]) -> tuple[int, str | None]:
    """``{name: on}`` through the ETHTOOL_SFEATURES path; returns (the driver's errno if it
    refused the change, None)."""
    f = dev.features
    if f is None:
        return E.EOPNOTSUPP, None
    valid = _mask(wanted)
    req = _mask(n for n, on in wanted.items() if on)
    ret = ethtool_sfeatures(dev, valid, req)
    if ret < 0:
        return -ret, None
    return f.last_error, None


def bond_compute_features(dev: "NetDevice") -> None:
    """``bond_compute_features`` → ``netdev_change_features``: recompute a bond's features
    from its slaves (enslave, release, a slave's FEAT_CHANGE, a slave going up or down)."""
    if dev.features is not None and not dev.notifier_ctx:
        netdev_update_features(dev)


def bond_features_netdev_event(event: str, dev: "NetDevice", **info: Any) -> None:
    """The part of ``bond_netdev_event`` that recomputes a bond's features (the netdevice
    chain at NETDEV_PRI_BOND_FEATURES, registered by the devices init call)."""
    if dev.bond is not None and event == "NETDEV_CHANGEUPPER":
        bond_compute_features(dev)
        return
    master = dev.master
    if master is None or master.bond is None:
        return
    if event in ("NETDEV_FEAT_CHANGE", "NETDEV_UP", "NETDEV_DOWN", "NETDEV_CHANGEUPPER"):
        bond_compute_features(master)
