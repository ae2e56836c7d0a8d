"""``sysctl -w`` and raw writes to /proc/sys files against the host kernel in a fresh
``ip netns``: output, exit status and errno of a valid write, out-of-range values, non-numbers
and a read-only file (tests/test_sysctl_write.py has the script and the expected text)."""
from __future__ import annotations

import subprocess
import uuid

from tests.conftest import require_shim, xfrmd_run
from tests.test_sysctl_write import SYSCTL_SCRIPT, SYSCTL_TEXT
from tests.differential.kconfig_host import host_topology


def test_sysctl_writes_match_the_host():
    require_shim("sh", "sysctl", "python3", "cat")
    ns = "xfrmd-sysctl-" + uuid.uuid4().hex[:8]
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        host = subprocess.run(["ip", "netns", "exec", ns, "sh", "-c", SYSCTL_SCRIPT],
                              capture_output=True, text=True, timeout=60)
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)
    emu = xfrmd_run(SYSCTL_SCRIPT, host_topology())
    assert (emu.returncode, emu.stderr) == (host.returncode, host.stderr)
    assert emu.stdout == host.stdout == SYSCTL_TEXT
