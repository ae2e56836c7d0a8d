"""Differential: `ethtool -k` of a bridge and a veth on a fresh real network namespace and
through `xfrmd run --topology bare` (the masks register_netdevice and the driver leave:
GSO and GRO on at registration, veth turning GRO off again); and, where this kernel cannot
make the kind (dummy, bond, netdevsim, the mlx5-like and SOE ports), GRO on as registration
leaves it."""
from __future__ import annotations

from tests.conftest import require_shim, xfrmd_run
from tests.differential.test_rtnl_diff import line_tests

CASES = [
    "ip link add br0 type bridge",
    "ip link add v0 type veth peer name v1",
    "ethtool -k br0",
    "ethtool -k v0",
    "ip link set v0 master br0",
    "ethtool -k br0",
    "ethtool -K br0 gro off",
    "ethtool -k br0 | grep receive-offload",
]

outputs, test_ethtool_k_line_matches_the_kernel = line_tests(CASES, "features")


def test_gro_is_on_for_every_registered_kind():
    require_shim("ethtool")
    devs = ["dummy0", "bond0", "nsim0", "eth0", "eth2", "soe0", "soe2", "bond1"]
    p = xfrmd_run("; ".join(f"ethtool -k {d} | grep '^generic-receive-offload'" for d in devs))
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines() == ["generic-receive-offload: on"] * len(devs)
