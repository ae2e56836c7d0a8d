"""Which driver a device of each kind gets (called by the topology and by netdevsim's
sysfs ``new_device``): the xfrmdev ops, the features ethtool shows, driver facts."""
from __future__ import annotations

import errno as E

from .features import ESP_FEATURES, NetdevFeatures

_ENGINES: dict = {}        # (kernel id, nic name) -> SoeEngine


def setup_device(dev, spec: dict) -> None:
    kind = dev.kind
    if kind == "netdevsim":
        from .netdevsim import NsimIpsec
        dev_id, port = spec.get("nsim_id", 0), spec.get("nsim_port", 0)
        dev.xfrmdev_ops = NsimIpsec(dev_id, port)
        dev.bus_info = f"netdevsim{dev_id}"
        dev.nsim = (dev_id, port)
        # NETIF_F_HW_ESP & co in features, not in hw_features: fixed on
        dev.features = NetdevFeatures(active=ESP_FEATURES, kind="netdevsim")
    elif kind == "mlx5":
        from .mlx5 import Mlx5Ipsec
        dev.xfrmdev_ops = Mlx5Ipsec(spec.get("capabilities"))
        dev.bus_info = f"0000:08:00.{spec.get('port_no', 0)}"
        # mlx5e_ipsec_build_netdev: HW_ESP (+TX_CSUM) in features, GSO_ESP toggleable
        on = ("esp-hw-offload", "esp-tx-csum-hw-offload", "tx-esp-segmentation")
        dev.features = NetdevFeatures(active=on if spec.get("esp_hw_offload", True) else (),
                                      hw=("tx-esp-segmentation",) if spec.get("esp_hw_offload", True)
                                      else ("esp-hw-offload", "tx-esp-segmentation"), kind="mlx5")
    elif kind == "airoha-soe":
        from .airoha_soe import SoeEngine, SoeIpsec
        key = (id(dev.netns.kernel) if dev.netns is not None else 0, spec.get("nic", "soe"))
        engine = _ENGINES.get(key)
        if engine is None:
            engine = _ENGINES[key] = SoeEngine(spec.get("nic", "soe"))
        dev.xfrmdev_ops = SoeIpsec(engine)
        # airoha_ethtool_get_drvinfo: dev_name() of the one platform device behind the ports
        dev.bus_info = "1fb50000.ethernet"
        dev.features = NetdevFeatures(
            active=("esp-hw-offload",) if spec.get("esp_hw_offload", True) else (),
            hw=("esp-hw-offload",), kind="airoha-soe")
        dev.set_features_hook = _soe_set_features
    elif kind == "bond":
        from bonding.bond import Bond
        from bonding.offload import BondXfrmDevOps
        bond = Bond(dev, spec.get("mode", "balance-rr"), spec.get("xmit_hash_policy", "layer2"),
                    spec.get("miimon", 0), spec.get("lag_model", "off"))
        dev.bond = bond
        dev.xfrmdev_ops = BondXfrmDevOps(bond)
        dev.driver = "bonding"
        # bond_setup: BOND_XFRM_FEATURES toggleable, on only in active-backup
        ab = bond.mode == "active-backup"
        dev.features = NetdevFeatures(active=ESP_FEATURES if ab else (), hw=ESP_FEATURES,
                                      kind="bond")
        bond.set_lag_model(bond.lag_model)     # the model's ESP wanted bits
    else:
        dev.features = NetdevFeatures(kind=kind)


def _soe_set_features(dev, new: set) -> int:
    """airoha: any ESP feature change while the port holds SAs → EBUSY."""
    if ("esp-hw-offload" in new) != dev.features.active("esp-hw-offload"):
        if dev.xfrmdev_ops.active_sas(dev):
            return E.EBUSY
    return 0
