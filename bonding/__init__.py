"""The bonding driver (drivers/net/bonding/) and the LAG IPsec offload models."""
from __future__ import annotations

from typing import Any

from . import services as bond_services


def init(kernel: Any) -> None:
    """``bonding_init``: the bond link kind, its netdevice notifier, service ops and files."""
    bond_services.register(kernel)
