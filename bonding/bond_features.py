"""The bond's ESP offload features (drivers/net/bonding/bond_main.c
``bond_compute_features``, ``bond_set_xfrm_features``) under each LAG offload model."""
from __future__ import annotations

from typing import TYPE_CHECKING

from devices.features import BIT, ESP_FEATURES, netdev_update_features

from .offload import bond_xfrm_esp_wanted

if TYPE_CHECKING:
    from .bond import Bond

# NETIF_F_HW_ESP | NETIF_F_HW_ESP_TX_CSUM | NETIF_F_GSO_ESP: BOND_XFRM_FEATURES
_ESP_MASK = sum(1 << BIT[n] for n in ESP_FEATURES)


def bond_update_features(bond: Bond) -> None:
    """``bond_compute_features`` → ``netdev_update_features``."""
    if bond.dev.features is not None:
        netdev_update_features(bond.dev)


def bond_set_xfrm_features(bond: Bond, entering_lag: bool = False) -> None:
    """The ESP ``wanted_features`` the bond's LAG model gives (``bond_set_xfrm_features``,
    as ``bond_option_mode_set`` calls it: set, cleared, or the user's choice left alone),
    then the features are recomputed."""
    f = bond.dev.features
    if f is None:
        return
    want = bond_xfrm_esp_wanted(bond, entering_lag)
    if want is not None:
        f.wanted_mask = (f.wanted_mask | _ESP_MASK) if want else (f.wanted_mask & ~_ESP_MASK)
    bond_update_features(bond)
