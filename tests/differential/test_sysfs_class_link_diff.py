"""Differential: /sys/class/net/DEV is a symbolic link to the device's directory
(``device_add_class_symlinks``: ``../../devices/virtual/net/DEV`` for a device without a
parent, get_device_parent), on a fresh real network namespace and through
`xfrmd run --topology bare`: what ``ls -l``, ``readlink``, ``stat`` without and with ``-L``,
``realpath`` and a listing of /sys/devices/virtual/net print, and the attributes reached
through either path. Times and link counts (kernfs counts every namespace's devices) are
left out."""
from __future__ import annotations

from tests.differential.test_rtnl_diff import line_tests

# ls -l without the link count and the time
LS = "| awk '{print $1, $3, $4, $5, $9, $10, $11}'"
CASES = [
    "ip link add v0 type veth peer name v1",
    "ls -l /sys/class/net " + LS,
    "readlink /sys/class/net/lo /sys/class/net/v0; readlink -f /sys/class/net/v1",
    "readlink /sys/class/net/v0/mtu; echo rc=$?; readlink /sys/class/net/nosuch; echo rc=$?",
    "stat -c '%F %a %s %N' /sys/class/net/v0 /sys/devices/virtual/net/v0",
    "stat -L -c '%F %a %s' /sys/class/net/v0; [ -L /sys/class/net/v0 ] && [ -d /sys/class/net/v0 ] && echo link-to-dir",
    "ls -la /sys/devices/virtual/net/ " + LS,
    "ls /sys/devices/virtual/net/v0 | grep -x -e mtu -e address -e ifindex",
    "cat /sys/devices/virtual/net/v0/mtu /sys/class/net/v0/../v1/ifindex /sys/class/net/v0/ifindex",
    "echo 1400 > /sys/devices/virtual/net/v0/mtu; cat /sys/class/net/v0/mtu",
    "stat -c '%F %s %a' /sys/devices/virtual/net/v1/mtu /sys/class/net/v0/..",
    "python3 -c \"import os; print(os.path.realpath('/sys/class/net/v1/mtu'), "
    "os.path.islink('/sys/class/net/v1'), os.path.isdir('/sys/class/net/v1'), "
    "sorted((e.name, e.is_symlink()) for e in os.scandir('/sys/class/net')))\"",
    "ip link del v0; ls /sys/class/net; readlink /sys/class/net/v1; echo rc=$?",
]

outputs, test_sysfs_class_link_line_matches_the_kernel = line_tests(CASES, "sysfs_class_link")
