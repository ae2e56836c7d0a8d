"""Netdev features as ethtool names them (``ethtool -k``): what the hardware can toggle
(``hw``), what was asked for (``wanted``) and what is on (``active``); features on but not in
``hw`` are fixed. Drivers may refuse a change through ``dev.set_features_hook``."""
from __future__ import annotations

import errno as E

ESP_FEATURES = ("esp-hw-offload", "esp-tx-csum-hw-offload", "tx-esp-segmentation")


class NetdevFeatures:
    def __init__(self, active=(), hw=()):
        self._active = set(active)
        self.hw = set(hw)
        self.wanted = set(active)

    def active(self, name: str) -> bool:
        return name in self._active

    @property
    def fixed(self) -> set:
        return self._active - self.hw

    def names(self) -> set:
        return set(self._active)


def set_features(dev, wanted: dict) -> tuple[int, str | None]:
    """``__netdev_update_features`` for ``{name: on}``: fixed features cannot change; the
    driver's hook may refuse (then nothing changes). Returns (errno, message)."""
    f = dev.features
    if f is None:
        return E.EOPNOTSUPP, None
    new = set(f.names())
    for name, on in wanted.items():
        if name not in f.hw:
            if on != f.active(name):
                return E.EOPNOTSUPP, f"{name} is fixed"
            continue
        (new.add if on else new.discard)(name)
    hook = getattr(dev, "set_features_hook", None)
    if hook is not None:
        err = hook(dev, new)
        if err:
            return err, None
    old = f.names()
    f._active = new
    f.wanted = set(new)
    if new != old:
        from .netdev import call_netdevice_notifiers
        call_netdevice_notifiers("NETDEV_FEAT_CHANGE", dev, old=old)
    return 0, None
