"""ethtool 6.1 through the shim (SIOCETHTOOL: the emulated kernel has no genetlink family,
so ethtool takes its ioctl path): `-k` on a veth prints what a real veth prints; `-K` on each
driver's port follows that driver's rules; `-i` shows driver facts."""
from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from .conftest import require
from .replay.realip import RealNetns, have_tools

XFRMD = [sys.executable, "-m", "xfrmd.cli", "run"]


@pytest.fixture(scope="module")
def tools():
    require(shutil.which("ethtool") is not None, "needs ethtool")
    require(shutil.which("gcc") or shutil.which("cc"), "needs a C compiler for the shim")


def emu(cmd: str, topology: str = "default") -> subprocess.CompletedProcess:
    return subprocess.run(XFRMD + ["--topology", topology, "--", "sh", "-c", cmd],
                          capture_output=True, text=True, timeout=60)


def test_veth_features_equal_the_real_kernel(tools, tmp_path):
    require(have_tools(), "needs root and ip")
    topo = tmp_path / "v.toml"
    topo.write_text('[[netns]]\n[[netns.device]]\nname = "v0"\nkind = "veth"\nup = false\n')
    ours = emu("ethtool -k v0", str(topo))
    ns = RealNetns()
    try:
        subprocess.run(["ip", "-n", ns.name, "link", "add", "v0", "type", "veth", "peer", "name",
                        "v1"], check=True)
        real = ns.run_in(["ethtool", "-k", "v0"])
    finally:
        ns.close()
    assert ours.returncode == real.returncode == 0
    assert ours.stdout == real.stdout


def _esp(out: str) -> dict:
    return {line.split(":")[0].strip(): line.split(":", 1)[1].strip()
            for line in out.splitlines() if "esp" in line}


def test_esp_features_per_driver(tools):
    out = emu("for d in nsim0 eth2 soe2 dummy0; do echo \"== $d\"; ethtool -k $d; done").stdout
    parts = {p.split("\n", 1)[0]: _esp(p) for p in out.split("== ")[1:]}
    assert parts["nsim0"] == {"tx-esp-segmentation": "on [fixed]", "esp-hw-offload": "on [fixed]",
                              "esp-tx-csum-hw-offload": "on [fixed]"}
    assert parts["eth2"]["esp-hw-offload"] == "on [fixed]"
    assert parts["soe2"]["esp-hw-offload"] == "on"
    assert parts["soe2"]["esp-tx-csum-hw-offload"] == "off [fixed]"
    assert parts["dummy0"]["esp-hw-offload"] == "off [fixed]"


def test_toggle_rules(tools):
    p = emu("ethtool -K soe2 esp-hw-offload off; echo rc=$?; ethtool -k soe2 | grep esp-hw; "
            "ethtool -K nsim0 esp-hw-offload off; echo rc=$?")
    assert p.stdout.splitlines() == ["rc=0", "esp-hw-offload: off", "rc=1"]
    assert "Could not change any device features" in p.stderr


def test_soe_refuses_feature_change_while_it_holds_sas(tools):
    sa = ("ip xfrm state add src 203.0.113.129 dst 203.0.113.130 proto esp spi 7 reqid 1 "
          "mode tunnel aead 'rfc4106(gcm(aes))' 0x0102030405060708090a0b0c0d0e0f1011121314 128")
    # ip 6.1 cannot ask for packet offload, so the SA goes in through the replayer
    p = emu(f"echo \"{sa} offload packet dev soe2 dir out\" | xfrmd replay - && "
            "ethtool -K soe2 esp-hw-offload off; echo rc=$?; ethtool -k soe2 | grep esp-hw")
    assert "rc=" in p.stdout, p.stderr
    # __netdev_update_features keeps wanted_features when ndo_set_features fails
    assert p.stdout.splitlines()[-2:] == ["rc=1", "esp-hw-offload: on [requested off]"]


def test_driver_info(tools):
    out = emu("ethtool -i eth0; ethtool -i nsim0").stdout
    assert "driver: mlx5_core\n" in out and "bus-info: 0000:08:00.0\n" in out
    assert "driver: netdevsim\n" in out and "bus-info: netdevsim0\n" in out
