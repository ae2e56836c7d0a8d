"""The hardware drivers' table: which driver a port of each hardware kind gets (called by the
topology and by netdevsim's sysfs ``new_device``): the xfrmdev ops, the features ethtool
shows, driver facts. Kinds made through RTM_NEWLINK have link ops instead
(``kernel.link_ops``); any other device gets its kind's default features."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from .airoha_soe import SoeIpsec, soe_engine, soe_set_features
from .features import ESP_FEATURES, NetdevFeatures
from .mlx5 import DEFAULT_CAPS, Mlx5Ipsec
from .netdev import NET_NAME_RENAMED, NetDevice
from .netdevsim import NsimIpsec
from .xfrmdev import LAG_GUARANTEES

AIROHA_DRIVER = "airoha_eth"


def _nsim_setup(dev: NetDevice, spec: dict[str, Any]) -> None:
    """``nsim_create``: a port of simulated device ``nsim_id``."""
    dev_id, port = spec.get("nsim_id", 0), spec.get("nsim_port", 0)
    dev.xfrmdev_ops = NsimIpsec(dev_id, port)
    dev.bus_info = f"netdevsim{dev_id}"
    dev.nsim = (dev_id, port)
    # nsim_create allocates "eth%d" with NET_NAME_UNKNOWN; eni<ID>np<N> is udev's rename
    dev.name_assign_type = NET_NAME_RENAMED
    # NETIF_F_HW_ESP & co in features, not in hw_features: fixed on
    dev.features = NetdevFeatures(active=ESP_FEATURES, kind="netdevsim")


def _mlx5_setup(dev: NetDevice, spec: dict[str, Any]) -> None:
    """``mlx5e_ipsec_build_netdev``: HW_ESP (+TX_CSUM) in features, GSO_ESP toggleable."""
    dev.xfrmdev_ops = Mlx5Ipsec(spec.get("capabilities"), bool(spec.get("lag_converted")))
    dev.bus_info = f"0000:08:00.{spec.get('port_no', 0)}"
    on = ("esp-hw-offload", "esp-tx-csum-hw-offload", "tx-esp-segmentation")
    esp = spec.get("esp_hw_offload", True)
    dev.features = NetdevFeatures(active=on if esp else (),
                                  hw=("tx-esp-segmentation",) if esp
                                  else ("esp-hw-offload", "tx-esp-segmentation"), kind="mlx5")


def _soe_setup(dev: NetDevice, spec: dict[str, Any]) -> None:
    """A port of the airoha SOE NIC ``spec["nic"]``, on that NIC's engine."""
    kernel = dev.netns.kernel if dev.netns is not None else None
    dev.xfrmdev_ops = SoeIpsec(soe_engine(kernel, spec.get("nic", "soe")))
    # airoha_ethtool_get_drvinfo: dev_name() of the one platform device behind the ports
    dev.bus_info = "1fb50000.ethernet"
    dev.features = NetdevFeatures(
        active=("esp-hw-offload",) if spec.get("esp_hw_offload", True) else (),
        hw=("esp-hw-offload",), kind="airoha-soe")
    dev.set_features_hook = soe_set_features


@dataclass(frozen=True)
class HwDriver:
    """A hardware driver: its ethtool name and the probe that makes a port its own."""
    name: str
    setup: Callable[[NetDevice, dict[str, Any]], None]


DRIVERS = {
    "netdevsim": HwDriver("netdevsim", _nsim_setup),
    "mlx5": HwDriver("mlx5_core", _mlx5_setup),
    "airoha-soe": HwDriver(AIROHA_DRIVER, _soe_setup),
}


def setup_device(dev: NetDevice, spec: dict[str, Any]) -> None:
    """The hardware driver of the device's kind sets it up; any other device gets its
    kind's default features. A topology's ``lag_guarantees`` replaces what the port's
    driver declares of the review's LAG guarantees (xfrmd's model, docs/bonding.md)."""
    drv = DRIVERS.get(dev.kind)
    if drv is not None:
        drv.setup(dev, spec)
        if "lag_guarantees" in spec and dev.xfrmdev_ops is not None:
            dev.xfrmdev_ops.lag_guarantees = frozenset(spec["lag_guarantees"])
    else:
        dev.features = NetdevFeatures(kind=dev.kind)


# the personality keys a topology may give a hardware port (docs/topology.md), each with
# the kinds it applies to and the type a value must have
PERSONALITY_KEYS: dict[str, tuple[tuple[str, ...], str]] = {
    "lag_converted": (("mlx5",), "true or false"),
    "lag_guarantees": (tuple(DRIVERS), "a list of " + ", ".join(LAG_GUARANTEES)),
}


def capabilities_problem(kind: str, value: Any) -> str | None:
    """Why an mlx5-like port's ``capabilities`` table is wrong (a key it does not have, a
    value not true/false), or None. The RFC opt-in is no capability: ``lag_converted``."""
    if kind != "mlx5":
        return f"capabilities applies to kind mlx5 only, not {kind}"
    if not isinstance(value, dict):
        return f"capabilities = {value!r} is not a table of {', '.join(DEFAULT_CAPS)}"
    for key, v in value.items():
        if key == "lag_lower_handle":
            return "capabilities.lag_lower_handle is not a capability: use lag_converted = true"
        if key not in DEFAULT_CAPS or not isinstance(v, bool):
            return (f"capabilities.{key} = {v!r} is not one of {', '.join(DEFAULT_CAPS)} "
                    "= true or false")
    return None


def personality_problem(kind: str, key: str, value: Any) -> str | None:
    """Why ``key = value`` cannot set up a port of ``kind``, or None."""
    kinds, allowed = PERSONALITY_KEYS[key]
    if kind not in kinds:
        return f"{key} applies to kind {' or '.join(kinds)} only, not {kind}"
    if key == "lag_converted":
        ok = isinstance(value, bool)
    else:
        ok = isinstance(value, list) and all(v in LAG_GUARANTEES for v in value)
    return None if ok else f"{key} = {value!r} is not {allowed}"
