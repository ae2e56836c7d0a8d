"""Real `ip` 6.1 through the preload shim against xfrmd built like the running kernel (its
options in the topology's [kernel] table, the crypto algorithms it lacks switched off with
`xfrmd ctl`: tests/differential/kconfig_host.py), and on the real kernel in a fresh netns:
the same `ip xfrm state` lines print the same stdout/stderr/status."""
from __future__ import annotations

import shlex
import shutil
import subprocess
import sys

import pytest

from tests.conftest import require
from tests.differential.test_sa_ip_text import LINES
from tests.differential.kconfig_host import host_profile, host_topology
from tests.replay.realip import have_tools, run_in_fresh_netns

pytestmark = pytest.mark.netns
XFRMD = [sys.executable, "-m", "xfrmd.cli"]


def test_real_ip_through_the_shim_matches_the_kernel(tmp_path):
    require(have_tools(), "needs root and ip")
    require(shutil.which("gcc") or shutil.which("cc"), "needs a C compiler for the shim")
    ctl = " ".join(XFRMD) + " ctl"
    setup = host_profile().crypto_ctl(ctl) or ["true"]
    quoted = [" ".join(shlex.quote(w) for w in shlex.split(c)) for c in LINES]
    body = "\n".join(f"ip {c}; echo \"== $?\"; echo '==' >&2" for c in quoted) + "\n"
    emu_script = tmp_path / "emu.sh"
    emu_script.write_text("set -e\n" + "\n".join(setup) + "\nset +e\n" + body)
    real_script = tmp_path / "real.sh"
    real_script.write_text(body)
    emu = subprocess.run(XFRMD + ["run", "--topology", host_topology(), "--", "sh", str(emu_script)],
                         capture_output=True, text=True, timeout=120)
    real = run_in_fresh_netns(["sh", str(real_script)])
    assert emu.stderr.split("==\n") == real.stderr.split("==\n")
    assert emu.stdout.split("== ") == real.stdout.split("== ")


MONITOR = """ip xfrm monitor > "$1" 2>&1 &
M=$!
sleep 1
ip xfrm state allocspi src 192.0.2.1 dst 198.51.100.1 proto esp mode tunnel reqid 7 min 0x300 max 0x300 > /dev/null
ip xfrm state allocspi src 2001:db8::1 dst 2001:db8::2 proto ah mode transport reqid 9 mark 7 mask 0xff min 0x400 max 0x400 > /dev/null
ip xfrm state delete src 192.0.2.1 dst 198.51.100.1 proto esp spi 0x300
ip xfrm state delete src 2001:db8::1 dst 2001:db8::2 proto ah spi 0x400 mark 7 mask 0xff
ip xfrm state allocspi src 192.0.2.1 dst 198.51.100.1 proto comp mode tunnel reqid 7 min 0x30 max 0x30 > /dev/null
ip xfrm state flush proto comp
ip xfrm state flush
sleep 1
kill $M
"""


def test_ip_xfrm_monitor_prints_what_the_kernel_sends(tmp_path):
    """`ip xfrm monitor` (real ip) sees the same SA events from xfrmd as from the kernel."""
    require(have_tools(), "needs root and ip")
    require(shutil.which("gcc") or shutil.which("cc"), "needs a C compiler for the shim")
    script = tmp_path / "mon.sh"
    script.write_text(MONITOR)
    emu_out, real_out = tmp_path / "emu.txt", tmp_path / "real.txt"
    emu = subprocess.run(XFRMD + ["run", "--topology", host_topology(), "--", "sh", str(script),
                               str(emu_out)],
                         capture_output=True, text=True, timeout=120)
    assert emu.returncode == 0, emu.stderr
    run_in_fresh_netns(["sh", str(script), str(real_out)])
    real = real_out.read_text()
    assert "Deleted src" in real and "Flushed state proto comp" in real
    assert emu_out.read_text() == real
