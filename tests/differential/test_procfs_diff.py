"""Differential: `/proc/net/dev` and `/proc/sys/net/{ipv4,ipv6}/conf/*` through the shim
(`xfrmd run --topology bare`) and on a fresh real network namespace — the emulated devices
listed in dev_seq_show's format, each sysctl's value for a device, `all`, `default` and lo,
and `all/forwarding` written (inet_forward_change / addrconf_fixup_forwarding), and
`net.ipv4.fib_multipath_hash_policy` read and written. The
devices stay down so that the real kernel's counters stay zero."""
from __future__ import annotations

from tests.differential.test_rtnl_diff import line_tests

_DUMP = ("for d in all default lo v0; do for f in $(ls /proc/sys/net/{p}/conf/$d | sort); do "
         "[ $f = stable_secret ] || echo $d $f=$(cat /proc/sys/net/{p}/conf/$d/$f); done; done")

CASES = [
    "cat /proc/net/dev",
    "ip link add v0 type veth peer name v1",
    "ip link add br0 type bridge",
    "cat /proc/net/dev",
    "ls /proc/sys/net/ipv4/conf /proc/sys/net/ipv6/conf",
    _DUMP.replace("{p}", "ipv4"),
    _DUMP.replace("{p}", "ipv6"),
    "cat /proc/sys/net/ipv6/conf/v0/stable_secret",       # EIO until set
    "ip link set v0 mtu 1400",
    "cat /proc/sys/net/ipv6/conf/v0/mtu",                  # follows the device
    "echo 1300 > /proc/sys/net/ipv6/conf/v0/mtu; cat /proc/sys/net/ipv6/conf/v0/mtu",
    "echo 2 > /proc/sys/net/ipv4/conf/default/rp_filter",
    "ip link add v2 type veth peer name v3",               # takes default's value
    "cat /proc/sys/net/ipv4/conf/v2/rp_filter /proc/sys/net/ipv4/conf/v0/rp_filter",
    "echo 1 > /proc/sys/net/ipv4/conf/all/forwarding",
    "cat /proc/sys/net/ipv4/conf/v0/forwarding /proc/sys/net/ipv4/conf/default/forwarding "
    "/proc/sys/net/ipv4/conf/all/accept_redirects /proc/sys/net/ipv4/conf/v0/accept_redirects",
    "echo 1 > /proc/sys/net/ipv6/conf/all/forwarding",
    "cat /proc/sys/net/ipv6/conf/v2/forwarding /proc/sys/net/ipv6/conf/default/forwarding",
    "sysctl net.ipv4.conf.v0.rp_filter net.ipv6.conf.lo.mtu",
    "sysctl -w net.ipv4.conf.v0.arp_ignore=1",
    "ip link del v0",
    "ls /proc/sys/net/ipv4/conf",
    "cat /proc/net/dev",
    "sysctl net.ipv4.fib_multipath_hash_policy",           # per namespace, 0
    "sysctl -w net.ipv4.fib_multipath_hash_policy=1",
    "cat /proc/sys/net/ipv4/fib_multipath_hash_policy",
]

outputs, test_procfs_line_matches_the_kernel = line_tests(CASES, "procfs")
