"""The bond's ESP offload features (drivers/net/bonding/bond_main.c
``bond_compute_features``, ``bond_set_xfrm_features``) under each LAG offload model."""
from __future__ import annotations

from typing import TYPE_CHECKING

from devices.features import BIT, ESP_FEATURES, netdev_update_features

if TYPE_CHECKING:
    from .bond import Bond

# NETIF_F_HW_ESP | NETIF_F_HW_ESP_TX_CSUM | NETIF_F_GSO_ESP: BOND_XFRM_FEATURES
_ESP_MASK = sum(1 << BIT[n] for n in ESP_FEATURES)


def bond_update_features(bond: Bond) -> None:
    """``bond_compute_features`` → ``netdev_update_features``."""
    if bond.dev.features is not None:
        netdev_update_features(bond.dev)


def bond_set_xfrm_features(bond: Bond, entering_lag: bool = False) -> None:
    """The ESP ``wanted_features`` of the bond's model (``bond_set_xfrm_features``, as
    ``bond_option_mode_set`` calls it), then the features are recomputed:

    * ``off``: wanted in active-backup, cleared otherwise (upstream);
    * ``replicated``: wanted in active-backup; entering LAG clears them (the user opts in
      with ``ethtool -K BOND esp-hw-offload on``); other modes cleared;
    * ``shared``: wanted in active-backup and in LAG-eligible configurations, cleared
      otherwise; they take effect once every running slave qualifies."""
    f = bond.dev.features
    if f is None:
        return
    ab = bond.mode == "active-backup"
    want: bool | None
    if bond.lag_model == "shared":
        want = ab or bond.lag_eligible()
    elif bond.lag_model == "replicated":
        if ab:
            want = True
        elif bond.lag_eligible():
            want = None if not entering_lag else False     # None: leave the user's choice
        else:
            want = False
    else:
        want = ab
    if want is not None:
        f.wanted_mask = (f.wanted_mask | _ESP_MASK) if want else (f.wanted_mask & ~_ESP_MASK)
    bond_update_features(bond)
