"""Emulated device drivers (drivers/net/…): each registers its link kinds, notifiers,
service ops and virtual files in :func:`init`."""
from __future__ import annotations

from typing import Any


def init(kernel: Any) -> None:
    """The drivers' module_init calls, in link order."""
