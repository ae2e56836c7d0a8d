"""Netdev features as ethtool names them (``ethtool -k``): what the hardware can toggle
(``hw``, "available"), what was asked for (``wanted``, "requested") and what is on
(``active``); a feature on but not in ``hw`` shows as fixed. Drivers may refuse a change
through ``dev.set_features_hook``.

FEATURE_NAMES is the kernel's ETH_SS_FEATURES string set (Linux 6.18, read with
ETHTOOL_GSTRINGS): the index is the NETIF_F_*_BIT. The per-kind masks are what a real veth
and lo report (ETHTOOL_GFEATURES) on that kernel."""
from __future__ import annotations

import errno as E

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
PROFILES = {"veth": _VETH, "loopback": _LO, "dummy": _VETH, "bridge": _VETH, "bond": _VETH,
            "netdevsim": _VETH, "mlx5": _VETH, "airoha-soe": _VETH}


def _names(mask: int) -> set:
    return {n for n, i in BIT.items() if mask >> i & 1}


def _mask(names) -> int:
    m = 0
    for n in names:
        m |= 1 << BIT[n]
    return m


class NetdevFeatures:
    def __init__(self, active=(), hw=(), wanted=None, kind: str = "veth"):
        avail, req, act = PROFILES.get(kind, _VETH)
        self._active = _names(act) | set(active)
        self.hw = _names(avail) | set(hw)
        self.wanted = (_names(req) | set(active)) if wanted is None else set(wanted)

    def active(self, name: str) -> bool:
        return name in self._active

    @property
    def fixed(self) -> set:
        return self._active - self.hw

    def names(self) -> set:
        return set(self._active)

    def masks(self) -> tuple[int, int, int, int]:
        """(available, requested, active, never_changed) as ETHTOOL_GFEATURES reports."""
        return _mask(self.hw), _mask(self.wanted), _mask(self._active), NEVER_CHANGE


def set_features(dev, wanted: dict) -> tuple[int, str | None]:
    """``__netdev_update_features`` for ``{name: on}``: only available features change; the
    driver's hook may refuse (then nothing changes). Returns (errno, message)."""
    f = dev.features
    if f is None:
        return E.EOPNOTSUPP, None
    new = set(f.names())
    want = set(f.wanted)
    for name, on in wanted.items():
        if name not in f.hw:
            if on != f.active(name):
                return E.EOPNOTSUPP, f"{name} is fixed"
            continue
        (new.add if on else new.discard)(name)
        (want.add if on else want.discard)(name)
    hook = getattr(dev, "set_features_hook", None)
    if hook is not None:
        err = hook(dev, new)
        if err:
            return err, None
    old = f.names()
    f._active = new
    f.wanted = want
    if new != old:
        from .netdev import call_netdevice_notifiers
        call_netdevice_notifiers("NETDEV_FEAT_CHANGE", dev, old=old)
    return 0, None
