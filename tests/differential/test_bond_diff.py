"""/proc/net/bonding/BOND against the host kernel, in a fresh ``ip netns``: an active-backup
bond without link monitoring (bond_enslave's initial link state). Skipped where the host
kernel has no bonding driver (probed: a bond link in a scratch namespace)."""
from __future__ import annotations

import subprocess
import uuid

import pytest

from tests.conftest import require_shim, xfrmd_run
from tests.test_bonding import BOND_NO_MONITOR, BOND_NO_MONITOR_TEXT
from tests.differential.kconfig_host import host_topology


def _host(script: str) -> subprocess.CompletedProcess:
    ns = "xfrmd-bond-" + uuid.uuid4().hex[:8]
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        return subprocess.run(["ip", "netns", "exec", ns, "sh", "-c", script],
                              capture_output=True, text=True, timeout=60)
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)


def test_active_backup_without_miimon_matches_the_host():
    probe = _host("ip link add b0 type bond")
    if probe.returncode != 0:      # a property of the host kernel, not of this machine's tools
        pytest.skip("host kernel without bonding: " + probe.stderr.strip())
    require_shim("ip", "sh", "grep")
    host = _host(BOND_NO_MONITOR)
    emu = xfrmd_run(BOND_NO_MONITOR, host_topology())
    assert emu.returncode == host.returncode == 0, (emu.stderr, host.stderr)
    assert emu.stdout == host.stdout
    assert emu.stdout.splitlines() == BOND_NO_MONITOR_TEXT
