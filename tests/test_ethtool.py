"""ethtool 6.1 through the shim, over the ethtool genetlink family and (with `xfrmd ctl
genetlink off`) over its SIOCETHTOOL fallback: `-k` on a veth prints what a real veth
prints; `-K` on each driver's port follows that driver's rules, alike on both paths; a bond's
ESP features follow its slaves under the LAG models; `-i` shows driver facts."""
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
    # FEATURES_SET_REPLY: the requested bit that did not become active
    assert p.stdout.splitlines() == ["rc=0", "esp-hw-offload: off", "Actual changes:",
                                     "esp-hw-offload: on [requested off]", "rc=1"]
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


def test_genetlink_is_used_and_can_be_refused(tools):
    p = emu("ethtool --debug 0x1c -k nsim0 | grep -c 'sending genetlink packet'; "
            "xfrmd ctl genetlink off; ethtool --debug 0x1c -k nsim0 | grep -c 'sending genetlink'; "
            "ethtool -k nsim0 | head -1")
    counts = p.stdout.splitlines()
    assert int(counts[0]) >= 2 and counts[1] == "0", p.stdout + p.stderr
    assert counts[2] == "Features for nsim0:"


_SCRIPT = ("for d in {devs}; do echo \"== $d\"; ethtool -k $d; ethtool -K $d esp-hw-offload {v} "
           ">/dev/null 2>&1; echo rc=$?; ethtool -k $d | grep esp; done")


@pytest.mark.parametrize("value", ["on", "off"])
def test_both_paths_alike_on_every_driver(tools, value, tmp_path):
    """-k and -K esp-hw-offload on|off on each driver's port, dummy, veth and the bonds give
    the same answers over genetlink and over SIOCETHTOOL."""
    topo = tmp_path / "t.toml"
    text = open("xfrmd/topologies/default.toml").read()
    topo.write_text(text + '\n[[netns.device]]\nname = "v0"\nkind = "veth"\n'
                    if "[[netns.device]]" in text else text)
    devs = "nsim0 eth2 soe2 dummy0 bond0 bond1 v0"
    genl = emu(_SCRIPT.format(devs=devs, v=value), str(topo))
    ioctl = emu("xfrmd ctl genetlink off && " + _SCRIPT.format(devs=devs, v=value), str(topo))
    assert genl.returncode == ioctl.returncode == 0, genl.stderr + ioctl.stderr
    assert genl.stdout == ioctl.stdout
    parts = {p.split("\n", 1)[0]: p for p in genl.stdout.split("== ")[1:]}
    rc = {d: [ln for ln in parts[d].splitlines() if ln.startswith("rc=")][0] for d in parts}
    # fixed features cannot change: netdevsim and mlx5's HW_ESP, dummy/veth without it
    if value == "off":
        assert rc["nsim0"] == rc["eth2"] == "rc=1" and rc["soe2"] == "rc=0"
        assert parts["soe2"].endswith("esp-hw-offload: off\nesp-tx-csum-hw-offload: off [fixed]\n")
    else:
        assert rc["dummy0"] == rc["v0"] == "rc=1" and rc["soe2"] == rc["nsim0"] == "rc=0"


def test_bond_esp_follows_slaves_under_shared_model(tools):
    """P39 (docs/bonding.md): under `shared` a LAG-eligible bond keeps esp-hw-offload
    while every running slave is capable (HW_ESP in features | hw_features: a slave that
    merely has it switched off still counts); TX_CSUM/GSO_ESP are ANDed over the slaves'
    features, which the SOE lacks; the mlx5 ports of bond0 are not LAG-capable (no shared
    state flag), so bond0 refuses."""
    p = emu("xfrmd ctl lag-model bond1 shared; ethtool -K bond1 esp-hw-offload on; echo rc=$?; "
            "ethtool -k bond1 | grep esp-hw; ethtool -K soe0 esp-hw-offload off; "
            "ethtool -k bond1 | grep esp-hw; ethtool -k bond1 | grep esp-tx-csum; "
            "xfrmd ctl lag-model bond0 shared; ethtool -K bond0 esp-hw-offload on >/dev/null 2>&1; "
            "echo rc=$?; ethtool -k bond0 | grep esp-hw")
    assert p.stdout.splitlines() == [
        "rc=0", "esp-hw-offload: on", "esp-hw-offload: on",
        "esp-tx-csum-hw-offload: off [requested on]", "rc=1",
        "esp-hw-offload: off [requested on]"], p.stdout + p.stderr


def test_bond_change_a_slave_refuses_is_rolled_back(tools):
    """Enabling on the bond pushes HW_ESP to each running slave; soe0 holds an SA, so the
    SOE refuses (EBUSY): the bond stays off and soe1, already switched on, is switched back."""
    sa = ("ip xfrm state add src 203.0.113.129 dst 203.0.113.130 proto esp spi 7 reqid 1 "
          "mode tunnel aead 'rfc4106(gcm(aes))' 0x0102030405060708090a0b0c0d0e0f1011121314 128")
    p = emu("xfrmd ctl lag-model bond1 shared; ethtool -K bond1 esp-hw-offload off; "
            "ethtool -K soe0 esp-hw-offload off; ethtool -K soe1 esp-hw-offload off; "
            f"echo \"{sa} offload packet dev soe0 dir out\" | xfrmd replay - >/dev/null && "
            "ethtool -K bond1 esp-hw-offload on >/dev/null 2>&1; echo rc=$?; "
            "for d in bond1 soe0 soe1; do ethtool -k $d | grep esp-hw; done")
    assert p.stdout.splitlines() == ["rc=1", "esp-hw-offload: off [requested on]",
                                     "esp-hw-offload: off", "esp-hw-offload: off"], p.stdout + p.stderr
