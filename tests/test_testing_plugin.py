"""The pytest plugin's kernel_pair: argument shapes checked, the SAD readable at a glance,
assert helpers that cannot pass on an empty SAD, a clean skip where namespaces cannot be made
(docs/tutorial.md)."""
from __future__ import annotations

import os
import subprocess

import pytest

from xfrmd.ike.pair import KernelPair, pair_shape
from xfrmd.testing import assert_not_offloaded, assert_offloaded

from .conftest import require, require_shim

pytest_plugins = ["pytester"]

KEY = "0x" + "11" * 20


@pytest.mark.parametrize("kw, error", [
    ({"device_kind": "bond"}, "a bond needs slaves: slaves=['mlx5', 'mlx5']"),
    ({"extra": {"mode": "802.3ad"}}, "extra (per side): unknown key 'mode'; allowed keys: "
                                     "left, right"),
    ({"extra": {"left": {"lag": "shared"}}}, "extra['left']: unknown key 'lag'; allowed keys: "
                                             "ad_select, capabilities, carrier, esp_hw_offload"),
    ({"lower": {"left": {"name": "p0"}}}, "lower['left'] must be a list of device dicts"),
    ({"lower": {"left": [{"name": "p0"}]}}, "lower['left'][0] needs a name and a kind"),
    ({"device_kind": "mlx5", "lag_model": "shared"}, "lag_model= needs device_kind='bond'"),
    ({"device_kind": "bond", "slaves": [{"kind": "mlx5", "speed": 1}]},
     "slaves[0]: unknown key 'speed'; allowed keys: capabilities, carrier, esp_hw_offload"),
    ({"device_kind": "ixgbe"}, "device_kind 'ixgbe' is not one of loopback, dummy, veth"),
])
def test_a_wrong_shape_is_an_error_naming_what_is_allowed(kw, error):
    with pytest.raises((ValueError, TypeError)) as e:
        KernelPair(**kw)
    assert str(e.value).startswith(error)


def test_bond_arguments_build_the_bond_and_its_slaves():
    extra, lower = pair_shape("bond", slaves=["mlx5", "mlx5"], lag_model="replicated",
                              esp_hw_offload=True)
    assert extra["left"] == {"mode": "802.3ad", "xmit_hash_policy": "layer3+4",
                             "lag_model": "replicated", "esp_hw_offload": True}
    assert lower["right"] == [{"name": f"p{i}", "nic": "right-nic", "kind": "mlx5",
                               "master": "@"} for i in range(2)]


def _ip(kp, side, *args):
    return subprocess.run(["ip", *args], env=dict(os.environ, **kp.env(side)),
                          capture_output=True, text=True, timeout=30)


def _sa_add(kp, side, spi, *offload):
    p = _ip(kp, side, "xfrm", "state", "add", "src", "192.0.2.1", "dst", "192.0.2.2",
            "proto", "esp", "spi", hex(spi), "reqid", "1", "mode", "tunnel", "aead",
            "rfc4106(gcm(aes))", KEY, "128", *offload)
    assert p.returncode == 0, p.stderr


def test_sad_names_the_device_and_assert_helpers_need_sas(kernel_pair):
    require_shim("ip")
    kp = kernel_pair(device_kind="mlx5")
    with pytest.raises(AssertionError, match="left: the SAD is empty"):
        assert_offloaded(kp, "left")
    with pytest.raises(AssertionError, match="left: the SAD is empty"):
        assert_not_offloaded(kp, "left")
    _sa_add(kp, "left", 0x201, "offload", "dev", "veth-l", "dir", "out")
    (sa,) = kp.sad("left")
    assert sa["offload"]["dev"] == "veth-l"
    assert (sa["offload"]["type"], sa["offload"]["dir"]) == ("crypto", "out")
    assert_offloaded(kp, "left", "veth-l", "crypto")
    with pytest.raises(AssertionError) as e:
        assert_offloaded(kp, "left", "veth-l", "packet")
    assert str(e.value) == ("left: not every SA is packet-offloaded to veth-l:\n"
                            "  spi 0x00000201 192.0.2.1 → 192.0.2.2 reqid 1: crypto offload "
                            "on veth-l (out)")
    _sa_add(kp, "right", 0x202)
    assert_not_offloaded(kp, "right")
    with pytest.raises(AssertionError, match="spi 0x00000202 .*: software"):
        assert_offloaded(kp, "right")


INNER = '''
import xfrmd.ike.pair

def test_pair(kernel_pair, monkeypatch):
    monkeypatch.setattr(xfrmd.ike.pair.os, "geteuid", lambda: 1000)
    kernel_pair(device_kind="mlx5")
'''


@pytest.mark.parametrize("ci", [False, True])
def test_no_namespaces_is_a_skip_with_the_reason_but_not_in_ci(pytester, monkeypatch, ci):
    require(os.path.exists("/usr/bin/ip") or os.path.exists("/sbin/ip"), "needs iproute2")
    if ci:
        monkeypatch.setenv("CI", "true")
    else:
        monkeypatch.delenv("CI", raising=False)
    pytester.makepyfile(test_inner=INNER)
    pytester.makeconftest('pytest_plugins = ["xfrmd.testing"]\n')
    res = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-rsf")
    out = res.stdout.str()
    if ci:
        res.assert_outcomes(failed=1)
        assert "required under CI=true: cannot make network namespaces: needs root" in out
    else:
        res.assert_outcomes(skipped=1)
        assert "cannot make network namespaces: needs root" in out
