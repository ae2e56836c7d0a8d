"""Differential: more read-only attributes of /sys/class/net/DEV (net/core/net-sysfs.c) on a
fresh real network namespace and through `xfrmd run --topology bare`: ``name_assign_type``
(NET_NAME_PREDICTABLE for lo, USER for a given name, ENUM for veth%d, RENAMED after
``ip link set … name``), ``speed``/``duplex`` (EINVAL unless running with a driver's
``get_link_ksettings``), ``uevent`` (DEVTYPE where a driver set a device type, INTERFACE,
IFINDEX; a write names a kobject action) and ``statistics/`` (``netstat_show``: the device's
rtnl_link_stats64, as /proc/net/dev)."""
from __future__ import annotations

from tests.differential.test_rtnl_diff import line_tests

ATTRS = ("for d in lo v0 vv1 veth0 n0 b0; do for a in name_assign_type speed duplex uevent; do "
         "echo \"$d $a: $(cat /sys/class/net/$d/$a 2>&1 | tr '\\n' '|')\"; done; done")
CASES = [
    "ip link add v0 type veth peer name v1; ip link add n0 type veth; ip link set v1 name vv1; "
    "ip link add b0 type bridge",
    ATTRS,
    "ip link add vx0 type vxlan id 5 dstport 4789; cat /sys/class/net/vx0/uevent",
    "ip link set v0 up; ip link set vv1 up; ip link set lo up; ip link set b0 up",
    "for d in lo v0 b0; do for a in speed duplex; do "
    "echo \"$d $a: $(cat /sys/class/net/$d/$a 2>&1)\"; done; done",
    "stat -c '%a %s %F %n' /sys/class/net/v0/uevent /sys/class/net/v0/speed "
    "/sys/class/net/v0/name_assign_type /sys/class/net/v0/statistics "
    "/sys/class/net/v0/statistics/rx_packets",
    "echo change > /sys/class/net/v0/uevent; echo rc=$?; "
    "bash -c 'echo bogus > /sys/class/net/v0/uevent' 2>&1; echo rc=$?",
    "ls /sys/class/net/v0/statistics | tr '\\n' ' '; echo",
    "ls /sys/class/net/v0 | grep -x -e statistics -e uevent -e speed -e duplex -e name_assign_type",
    # the emulated kernel carries a ping's packets only in a process marked for it
    "XFRMD_INET=1 ping -c1 -q 127.0.0.1 >/dev/null; cd /sys/class/net/lo/statistics && "
    "cat rx_packets tx_bytes rx_errors /sys/devices/virtual/net/lo/statistics/tx_packets",
    # n0 stays down: no neighbour discovery of its own counts on it
    "cat /sys/class/net/n0/statistics/nosuch; cat /sys/class/net/n0/statistics/tx_packets",
]

outputs, test_sysfs_attrs_line_matches_the_kernel = line_tests(CASES, "sysfs_attrs")
