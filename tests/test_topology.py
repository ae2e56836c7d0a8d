"""Topologies: the built-ins and the TOML format's error messages (line and problem)."""
from __future__ import annotations

import pytest

from xfrmd.testing import make_kernel
from xfrmd.topology import load_topology


def _names(kernel, ns="default"):
    return [(d.ifindex, d.name, d.kind) for d in kernel.netns(ns).links]


def test_bare_is_a_fresh_netns():
    k = make_kernel("bare")
    assert _names(k) == [(1, "lo", "loopback")]
    lo = k.netns("default").links.by_name("lo")
    assert not lo.up and lo.addresses == []


def test_default_topology_is_design_section_4():
    k = make_kernel("default")
    names = [n for _, n, _ in _names(k)]
    assert names == ["lo", "dummy0", "eth0", "eth1", "eth2", "bond0", "nsim0", "soe0", "soe1",
                     "soe2", "bond1"]
    links = k.netns("default").links
    assert links.by_name("eth0").master is links.by_name("bond0")
    assert links.by_name("soe1").master is links.by_name("bond1")
    assert links.by_name("bond0").options["mode"] == "802.3ad"
    assert links.by_name("bond0").options["xmit_hash_policy"] == "layer3+4"
    assert all(d.up for d in links)


@pytest.mark.parametrize("text, message", [
    ("[[netns]]\nname = 'a'\n[[netns.device]]\nname = 'x0'\nkind = 'token-ring'\n",
     ":5: device 'x0': unknown kind 'token-ring'"),
    ("[[netns]]\n[[netns.device]]\nname = 'e0'\nkind = 'dummy'\nmaster = 'bond9'\n",
     ":5: device 'e0': master 'bond9' does not exist"),
    ("[[netns]]\n[[netns.device]]\nname = 'e0'\nkind = 'dummy'\naddresses = ['10.0.0.300/24']\n",
     ":5: device 'e0': bad address '10.0.0.300/24'"),
    ("[[netns]]\n[[netns.device]]\nname = 'e0'\nkind = 'dummy'\ncolour = 'red'\n",
     ":5: device 'e0': unknown key 'colour'"),
    ("[[netns]\n", ":1: "),
])
def test_bad_files_name_line_and_problem(tmp_path, text, message):
    f = tmp_path / "t.toml"
    f.write_text(text)
    with pytest.raises(ValueError) as e:
        load_topology(str(f))
    assert message in str(e.value)
    assert str(f) in str(e.value)


def test_unknown_builtin():
    with pytest.raises(ValueError, match="no such file or built-in topology"):
        load_topology("nope")
