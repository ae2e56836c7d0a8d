"""Acceptance: the real `ip` 6.1 through `xfrmd run` prints what it prints on the real kernel
in a fresh network namespace — `ip -batch` with a failing line (stops) and with `-force`
(continues, except that ip's xfrm code exits on a kernel error even then), `ip -j xfrm …`
(iproute2 6.1 has no JSON for xfrm: plain text, compared as well), `ip xfrm monitor` running
in the background while other `ip` commands add, update, delete and flush, `ip xfrm state
allocspi`, `count`, and SA validation errors the kernel raises before its type lookup (the
kernel here has no ESP/AH, so only those are comparable). Same stdout, stderr and exit status
line by line."""
from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap

import pytest

from .conftest import require
from .replay.realip import RealNetns, have_tools

XFRMD = [sys.executable, "-m", "xfrmd.cli"]
KEY = "0x00112233445566778899aabbccddeeff"

BATCHES = {
    # the second line fails in the kernel (EEXIST): ip stops there, -force or not
    "fail.batch": """\
        xfrm policy add src 10.0.0.0/24 dst 10.0.1.0/24 dir out
        xfrm policy add src 10.0.0.0/24 dst 10.0.1.0/24 dir out
        xfrm policy add src 10.0.2.0/24 dst 10.0.3.0/24 dir in
    """,
    # a failing line that returns (no such device): -force goes on, plain -batch stops
    "force.batch": """\
        link show dev nope0
        xfrm policy add src 10.0.8.0/24 dst 10.0.9.0/24 dir in
        xfrm policy count
    """,
    # an argument error: ip exits(-1) at once, -force or not
    "badarg.batch": """\
        xfrm policy add src 10.0.4.0/24 dst 10.0.5.0/24 dir fwd
        xfrm policy add src 10.0.4.0/24 dst 10.0.5.0/24 dir sideways
        xfrm policy add src 10.0.6.0/24 dst 10.0.7.0/24 dir fwd
    """,
}

SCRIPT = f"""\
cd "$(dirname "$0")"
c() {{ "$@"; echo "== $?"; echo "==" >&2; }}
c ip -batch fail.batch
c ip xfrm policy list
c ip -force -batch fail.batch
c ip -batch force.batch
c ip xfrm policy count
c ip -force -batch force.batch
c ip -force -batch badarg.batch
c ip -batch badarg.batch
c ip xfrm policy count
c ip -j xfrm policy list
c ip -j -p xfrm policy list
c ip xfrm policy flush
ip xfrm monitor > monitor.out 2>&1 &
M=$!
sleep 1
c ip xfrm policy add src 10.1.0.0/16 dst 10.2.0.0/16 dir out priority 5 tmpl src 192.0.2.1 dst 192.0.2.2 proto esp mode tunnel
c ip xfrm policy add src 2001:db8::/64 dst 2001:db8:1::/64 dir in action block mark 3
c ip xfrm policy update src 10.1.0.0/16 dst 10.2.0.0/16 dir out priority 6
c ip xfrm policy add src 10.1.0.0/16 dst 10.2.0.0/16 dir out
c ip xfrm state allocspi src 192.0.2.1 dst 192.0.2.2 proto esp min 0x1000 max 0x1000
c ip xfrm state allocspi src 192.0.2.1 dst 192.0.2.3 proto esp mode tunnel reqid 7 min 0x2000 max 0x2000
c ip xfrm state allocspi src 192.0.2.1 dst 192.0.2.2 proto esp min 0x1000 max 0x1000
c ip xfrm state count
c ip -s xfrm state count
c ip -j xfrm state list
c ip xfrm state get src 192.0.2.1 dst 192.0.2.3 proto esp spi 0x2000
c ip xfrm state delete src 192.0.2.1 dst 192.0.2.3 proto esp spi 0x2000
c ip xfrm state delete src 192.0.2.1 dst 192.0.2.3 proto esp spi 0x2000
c ip xfrm policy delete src 10.1.0.0/16 dst 10.2.0.0/16 dir out
c ip xfrm state add src 10.0.0.1 dst 10.0.0.2 proto esp spi 1 aead 'rfc4106(gcm(aes))' 0x0102030405060708090a0b0c0d0e0f1011121314 128 replay-window 0 flag esn
c ip xfrm state add src 10.0.0.1 dst 10.0.0.2 proto esp spi 1 enc 'cbc(aes)' {KEY} mode transport tfcpad 100
c ip xfrm state add src 10.0.0.1 dst 10.0.0.2 proto esp spi 1 enc 'cbc(aes)' {KEY} sel src 2001:db8::/64 dst 10.0.0.0/8
c ip xfrm state flush
c ip xfrm state count
c ip xfrm policy flush
c ip xfrm policy count
sleep 1
kill $M; wait $M 2>/dev/null
echo "-- monitor"
cat monitor.out
"""


@pytest.fixture(scope="module")
def tools():
    require(have_tools(), "needs root and ip")
    require(shutil.which("gcc") or shutil.which("cc"), "needs a C compiler for the shim")


def _write(tmp_path):
    for name, text in BATCHES.items():
        (tmp_path / name).write_text(textwrap.dedent(text))
    script = tmp_path / "acceptance.sh"
    script.write_text(SCRIPT)
    return script


def test_ip_through_xfrmd_run_equals_the_kernel(tools, tmp_path):
    emu_dir = tmp_path / "emu"
    real_dir = tmp_path / "real"
    emu_dir.mkdir()
    real_dir.mkdir()
    emu = subprocess.run(XFRMD + ["run", "--topology", "bare", "--", "sh", str(_write(emu_dir))],
                         capture_output=True, text=True, timeout=120)
    ns = RealNetns()
    try:
        real = ns.run_in(["sh", str(_write(real_dir))])
    finally:
        ns.close()
    assert emu.returncode == real.returncode == 0
    emu_out, emu_mon = emu.stdout.split("-- monitor\n")
    real_out, real_mon = real.stdout.split("-- monitor\n")
    assert emu_out.split("== ") == real_out.split("== ")
    assert emu.stderr.split("==\n") == real.stderr.split("==\n")
    # the monitor saw what the kernel's saw, in the same order
    assert emu_mon == real_mon
    # and the run covered what it claims to
    assert "Deleted src 10.1.0.0/16" in real_mon and "Flushed state proto 0" in real_mon
    assert "SAD count 3" in real_out and "File exists" in real.stderr
    # -batch stops at the failing line, -force goes on: the count after each tells
    assert "Command failed force.batch:1" in real.stderr
    counts = [l for l in real_out.splitlines() if "SPD IN" in l]
    assert counts[:2] == ["\t SPD IN  0 OUT 1 FWD 0",       # plain -batch stopped at line 1
                          "\t SPD IN  1 OUT 1 FWD 0"]       # -force went on
