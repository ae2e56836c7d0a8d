"""Differential: a device's alias (IFLA_IFALIAS, ``dev_set_alias``) set by `ip link set …
alias` and through ``/sys/class/net/DEV/ifalias`` (net-sysfs.c ``ifalias_show`` /
``ifalias_store``: one trailing newline dropped, an empty write clears it, nothing to read
while there is none), on a fresh real network namespace and through `xfrmd run --topology
bare`; and the RTM_NEWLINK that a change of an up device's alias sends."""
from __future__ import annotations

from tests.differential.test_rtnl_diff import line_tests, run_monitor_both

CASES = [
    "ip link add v0 type veth peer name v1",
    "cat /sys/class/net/v0/ifalias | od -c",
    "ip link set dev v0 alias first-alias",
    "ip link show v0 | grep alias",
    "cat /sys/class/net/v0/ifalias",
    "echo second-alias > /sys/class/net/v0/ifalias",
    "ip link show v0 | grep alias",
    "printf 'no-newline' > /sys/class/net/v0/ifalias; cat /sys/class/net/v0/ifalias",
    "echo '' > /sys/class/net/v0/ifalias",
    "ip link show v0 | grep -c alias",
    "cat /sys/class/net/v0/ifalias | wc -c",
    "ip link set dev v0 alias third",
    "ip link set dev v0 alias ''",
    "ip link show v0",
    "ls /sys/class/net/v0/ifalias",
    "cat /sys/class/net/v0/operstate",
    "ip link set v0 up",
    "cat /sys/class/net/v0/operstate /sys/class/net/v0/carrier",     # lowerlayerdown
]

outputs, test_ifalias_line_matches_the_kernel = line_tests(CASES, "ifalias")


def test_an_alias_written_in_sysfs_is_announced(tmp_path):
    """``netdev_state_change``: RTM_NEWLINK for an up device, none for a down one (the
    monitor prints no alias: only the number of messages tells)."""
    real, emu = run_monitor_both(tmp_path, "ip -o monitor link", [
        "ip link add v0 type veth peer name v1",
        "echo down-alias > /sys/class/net/v0/ifalias",
        "ip link set v0 up",
        "echo up-alias > /sys/class/net/v0/ifalias",
        "cat /sys/class/net/v0/ifalias > /dev/null",     # the write has been applied
    ])
    strip = [ln.split("link/ether")[0] for ln in real.splitlines()]
    assert len(strip) == 4 and strip[3] == strip[2]
    assert [ln.split("link/ether")[0] for ln in emu.splitlines()] == strip
