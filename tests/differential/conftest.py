"""Fixtures of the differential tests: the running kernel's build profile, read once per
session (kconfig_host.py), which every comparison builds the emulated kernel from."""
from __future__ import annotations

import pytest

from tests.differential import kconfig_host


@pytest.fixture(scope="session")
def host_kconfig() -> kconfig_host.HostProfile:
    """The running kernel's options and missing crypto algorithms (root and ip needed)."""
    return kconfig_host.host_profile()
