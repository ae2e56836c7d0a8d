"""Topology veth pairs, also across emulated namespaces (`peer`, `peer_netns`): both ends
joined as veth_newlink joins them (IFLA_LINK, IFLA_LINK_NETNSID, carrier only with both ends
up, link-local addresses once running), and the file errors that name the line."""
from __future__ import annotations

import pytest

from xfrmd.topology import from_dict, load_topology
from xfrmd.testing import make_kernel

from .conftest import require_shim, xfrmd_run

PAIR = """\
[[netns]]
name = "default"

[[netns.device]]
name = "v0"
kind = "veth"
peer = "v1"
peer_netns = "b"
addresses = ["192.0.2.1/24"]

[[netns.device]]
name = "v2"
kind = "veth"
peer = "v3"
up = false

[[netns.device]]
name = "v3"
kind = "veth"

[[netns]]
name = "b"

[[netns.device]]
name = "v1"
kind = "veth"
addresses = ["192.0.2.2/24"]
"""


def test_pairs_in_the_model(tmp_path):
    f = tmp_path / "pair.toml"
    f.write_text(PAIR)
    k = make_kernel(str(f))
    a, b = k.netns("default").links, k.netns("b").links
    v0, v1, v2, v3 = a.by_name("v0"), b.by_name("v1"), a.by_name("v2"), a.by_name("v3")
    assert v0.peer is v1 and v1.peer is v0 and v2.peer is v3 and v3.peer is v2
    assert (v0.ifindex, v1.ifindex, v2.ifindex, v3.ifindex) == (2, 2, 3, 4)
    assert v0.carrier and v1.carrier            # both up
    assert not v2.carrier and not v3.carrier    # v2 is down
    assert [x.address for x in v0.addresses] == ["192.0.2.1", "fe80::ff:fe01:1"]
    assert [x.address for x in v3.addresses] == []


def test_ip_shows_the_pair_from_both_namespaces(tmp_path):
    require_shim("ip")
    f = tmp_path / "pair.toml"
    f.write_text(PAIR)
    p = xfrmd_run("ip -o link; XFRMD_NETNS=b ip -o link show v1; ip netns list-id; "
                  "ip route get 192.0.2.2", f)
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines()[1:] == [
        "2: v0@if2: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc noqueue state UP mode "
        "DEFAULT group default qlen 1000\\    link/ether 02:00:00:01:00:01 brd "
        "ff:ff:ff:ff:ff:ff link-netnsid 0",
        "3: v2@v3: <BROADCAST,MULTICAST> mtu 1500 qdisc noop state DOWN mode DEFAULT group "
        "default qlen 1000\\    link/ether 02:00:00:01:00:02 brd ff:ff:ff:ff:ff:ff",
        "4: v3@v2: <NO-CARRIER,BROADCAST,MULTICAST,UP,M-DOWN> mtu 1500 qdisc noqueue state "
        "LOWERLAYERDOWN mode DEFAULT group default qlen 1000\\    link/ether 02:00:00:01:00:03 "
        "brd ff:ff:ff:ff:ff:ff",
        "2: v1@if2: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc noqueue state UP mode "
        "DEFAULT group default qlen 1000\\    link/ether 02:00:00:02:00:01 brd "
        "ff:ff:ff:ff:ff:ff link-netnsid 0",
        "nsid 0 ",
        "192.0.2.2 dev v0 src 192.0.2.1 uid 0 ",
        "    cache ",
    ]


@pytest.mark.parametrize("devices, message", [
    ([{"name": "v0", "kind": "veth", "peer": "nope"}],
     "device 'v0': peer 'nope' is not a veth of namespace 'default'"),
    ([{"name": "v0", "kind": "veth", "peer": "v0"}],
     "device 'v0': a veth cannot be its own peer"),
    ([{"name": "d0", "kind": "dummy", "peer": "v1"}, {"name": "v1", "kind": "veth"}],
     "device 'd0': only a veth has a peer"),
    ([{"name": "v0", "kind": "veth", "peer": "v2"}, {"name": "v1", "kind": "veth", "peer": "v2"},
      {"name": "v2", "kind": "veth"}],
     "device 'v2' is the peer of two veths"),
    ([{"name": "v0", "kind": "veth", "peer": "v1"}, {"name": "v1", "kind": "veth", "peer": "v2"},
      {"name": "v2", "kind": "veth"}],
     "device 'v1': its peer is not 'v0'"),
])
def test_bad_pairs_are_refused(devices, message):
    with pytest.raises(ValueError) as e:
        from_dict({"netns": [{"name": "default", "device": devices}]})
    assert message in str(e.value)


def test_bad_pair_names_the_line(tmp_path):
    f = tmp_path / "t.toml"
    f.write_text('[[netns]]\n[[netns.device]]\nname = "v0"\nkind = "veth"\npeer = "x9"\n'
                 'peer_netns = "b"\n')
    with pytest.raises(ValueError) as e:
        load_topology(str(f))
    assert str(e.value) == f"{f}:5: device 'v0': peer 'x9' is not a veth of namespace 'b'"
