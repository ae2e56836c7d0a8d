"""The kernel selftest flow of tools/testing/selftests/net/rtnetlink.sh
``kci_test_ipsec_offload``, as the same shell commands through
`xfrmd run`: create a netdevsim device through sysfs, address it, add offloaded SAs and
policies with the real `ip`, read the debugfs file. The emulator sends no packets: where the
selftest pings three times, `xfrmd ctl offload-traffic` passes three packets through the
port's SAs, and the file shows tx=3 as the selftest expects."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from .conftest import require, xfrmd_run

SCRIPT = r'''
set -e
sysfsd=/sys/kernel/debug/netdevsim/netdevsim0/ports/0/
echo "0" > /sys/bus/netdevsim/new_device
dev=eni0np1
srcip=192.168.123.3
dstip=192.168.123.4
ip addr add $srcip dev $dev
ip link set $dev up
# (the selftest checks the file exists first: stat() of virtual files is not emulated)
ip x s flush ; ip x p flush
algo="aead rfc4106(gcm(aes)) 0x3132333435363738393031323334353664636261 128"
ip x p add dir out src $srcip/24 dst $dstip/24 tmpl proto esp src $srcip dst $dstip spi 9 mode transport reqid 42
ip x p add dir in src $dstip/24 dst $srcip/24 tmpl proto esp src $dstip dst $srcip spi 9 mode transport reqid 42
ip x s add proto esp src $srcip dst $dstip spi 9 mode transport reqid 42 $algo sel src $srcip/24 dst $dstip/24 offload dev $dev dir out
ip x s add proto esp src $dstip dst $srcip spi 9 mode transport reqid 42 $algo sel src $dstip/24 dst $srcip/24 offload dev $dev dir in
echo "lines=$(ip x s list | grep -c "crypto offload parameters: dev $dev dir")"
xfrmd ctl offload-traffic $dev 9 3
cat ${sysfsd}ipsec
ip x s flush ; ip x p flush
cat ${sysfsd}ipsec
echo "0" > /sys/bus/netdevsim/del_device
ip link show $dev 2>&1 || true
'''

EXPECTED = """lines=2
3 packets (0 bytes) through the hardware SA spi 0x9 on eni0np1
SA count=2 tx=3
sa[0] tx ipaddr=192.168.123.4
sa[0]    spi=0x00000009 proto=0x32 salt=0x61626364 crypt=1
sa[0]    key=0x34333231 38373635 32313039 36353433
sa[1] rx ipaddr=192.168.123.3
sa[1]    spi=0x00000009 proto=0x32 salt=0x61626364 crypt=1
sa[1]    key=0x34333231 38373635 32313039 36353433
SA count=0 tx=3
Device "eni0np1" does not exist.
"""


@pytest.fixture
def env(xfrmd_command):
    """PATH with no `xfrmd` but the session's (conftest.xfrmd_command, this interpreter's):
    these scripts pass whether or not a venv's bin is on PATH (they once failed with
    "sh: xfrmd: not found" where it was not)."""
    mine = os.path.dirname(xfrmd_command)
    return {**os.environ, "PATH": os.pathsep.join(
        d for d in os.environ["PATH"].split(os.pathsep)
        if d == mine or not os.path.exists(os.path.join(d, "xfrmd"))
        or os.path.exists(os.path.join(d, "sh")))}


def test_rtnetlink_sh_ipsec_offload_flow(env):
    require(shutil.which("ip") is not None, "needs iproute2")
    require(shutil.which("gcc") or shutil.which("cc"), "needs a C compiler for the shim")
    p = subprocess.run([sys.executable, "-m", "xfrmd.cli", "run", "--topology", "bare", "--",
                        "sh", "-c", SCRIPT], capture_output=True, text=True, timeout=60,
                       env=env)
    assert p.returncode == 0, p.stderr
    assert p.stdout + p.stderr == EXPECTED


def test_show_offload_verb(env):
    require(shutil.which("ip") is not None, "needs iproute2")
    script = ("ip xfrm state add src 203.0.113.1 dst 203.0.113.2 proto esp spi 0x300 reqid 4 "
              "mode transport aead 'rfc4106(gcm(aes))' 0x0102030405060708090a0b0c0d0e0f1011121314 "
              "128 offload dev nsim0 dir out && xfrmd ctl show-offload nsim0 && "
              "xfrmd ctl show-offload --json soe2")
    p = xfrmd_run(script, env=env)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[:2] == ["nsim0: driver netdevsim, esp-hw-offload on",
                         "  handle=0x80000000 spi=0x300 dir=tx port=nsim0"]
    assert json.loads("\n".join(lines[2:])) == {
        "soe2": {"driver": "airoha-soe", "flags": 3, "flag_names": "LOWER_HANDLE|LAG_SHARED_STATE",
                 "sas": [], "esp-hw-offload": True}}


def test_mlx5_hardware_counters_reach_ip_xfrm_state(env):
    """Packets through the mlx5-like hardware SA show in the real `ip -s xfrm state list`
    (update_stats on readback). ip 6.1 cannot parse `offload packet`: xfrmd replay adds it."""
    require(shutil.which("ip") is not None, "needs iproute2")
    script = (
        "echo \"xfrm state add src 198.51.100.1 dst 198.51.100.2 proto esp spi 0x500 reqid 5 "
        "mode tunnel aead 'rfc4106(gcm(aes))' 0x0102030405060708090a0b0c0d0e0f1011121314 128 "
        "offload packet dev eth2 dir out\" | xfrmd replay - >/dev/null && "
        "xfrmd ctl offload-traffic eth2 0x500 5 3500 --json && "
        "ip -s xfrm state list | grep -A1 'lifetime current' && "
        "ip -s xfrm state list | grep -A1 'lifetime current'")
    p = xfrmd_run(script, env=env)
    assert p.returncode == 0, p.stderr
    # 5 frames, 3500 bytes on the wire, less (14 + 20) header bytes each; read twice, no doubling
    lines = p.stdout.splitlines()
    assert lines[0] == '{"dev": "eth2", "spi": 1280, "packets": 5, "bytes": 3500}'
    assert [ln.split() for ln in lines[1:]] == [
        ["lifetime", "current:"], ["3330(bytes),", "5(packets)"]] * 2
