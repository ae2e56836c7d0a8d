"""Differential: the writable attributes of /sys/class/net/DEV (net-sysfs.c ``netdev_store``
and the change functions behind it) on a fresh real network namespace and through
`xfrmd run --topology bare`: ``stat`` sizes and modes of sysfs and procfs files, what a
write does (``ip link show``), the errno a refused write gives the shell, and the
RTM_NEWLINK messages the changes send. A dummy's carrier (``dummy_change_carrier``) is in
tests/test_sysfs_write.py: the host kernel may be built without dummy."""
from __future__ import annotations

from tests.differential.test_rtnl_diff import line_tests, run_monitor_both

D = "/sys/class/net/v0"
CASES = [
    "ip link add v0 type veth peer name v1",
    "stat -c '%s %A %n' /proc/sys/net/ipv4/conf/lo/forwarding /proc/net/dev /proc/net/if_inet6",
    "stat -c '%s %A %n' " + " ".join(f"{D}/{a}" for a in (
        "mtu", "flags", "carrier", "tx_queue_len", "proto_down", "ifalias", "gro_flush_timeout",
        "napi_defer_hard_irqs", "netdev_group", "operstate", "address", "ifindex", "type")),
    f"echo 1400 > {D}/mtu; echo rc=$?; ip link show v0 | head -1",
    f"bash -c 'echo 70000 > {D}/mtu' 2>&1; echo rc=$?",                # dev_validate_mtu
    f"bash -c 'echo 10 > {D}/mtu' 2>&1; echo rc=$?",
    f"bash -c 'echo 1400x > {D}/mtu' 2>&1; echo rc=$?",                # kstrtoul
    f"bash -c 'echo 4294968596 > {D}/mtu' 2>&1; cat {D}/mtu",         # (int)new_mtu
    f"bash -c 'echo 0 > {D}/carrier' 2>&1; echo rc=$?",               # no ndo_change_carrier
    f"bash -c 'echo 1 > {D}/proto_down' 2>&1; echo rc=$?",            # no IFF_CHANGE_PROTO_DOWN
    f"bash -c 'echo 1 > {D}/operstate' 2>&1; echo rc=$?",             # no store: EACCES
    f"echo 0x1003 > {D}/flags; echo rc=$?; ip link show v0 | head -1",
    f"echo 500 > {D}/tx_queue_len; bash -c 'echo 4294967296 > {D}/tx_queue_len' 2>&1",
    f"echo 4294967295 > {D}/tx_queue_len; cat {D}/tx_queue_len; echo 1000 > {D}/tx_queue_len",
    f"echo 99999999999 > {D}/netdev_group; cat {D}/netdev_group; ip -d link show v0 | grep -o 'group [0-9]*'",
    f"echo 100 > {D}/gro_flush_timeout; cat {D}/gro_flush_timeout",
    f"bash -c 'echo 2147483648 > {D}/napi_defer_hard_irqs' 2>&1; cat {D}/napi_defer_hard_irqs",
    f"python3 -c \"import os; fd = os.open('{D}/mtu', os.O_WRONLY); print(os.write(fd, b'1300'), "
    f"os.write(fd, b'0x514\\n')); os.close(fd)\"; cat {D}/mtu",
    # the read-only attributes beside them (0444): counters, iflink, EINVAL while not running
    "for d in lo v1; do for a in carrier_changes carrier_up_count carrier_down_count iflink "
    "addr_len broadcast addr_assign_type dev_id dev_port link_mode dormant testing; do "
    "echo \"$d $a $(cat /sys/class/net/$d/$a 2>&1)\"; done; done",
    f"stat -c '%s %A %n' {D}/carrier_changes {D}/iflink {D}/dormant",
    # the same group through rtnetlink (rtnl_create_link, do_setlink: netif_set_group)
    "ip link add w0 group 9 type veth peer name w1 group 4; ip link show group 4",
    f"ip link set v0 group 6; cat {D}/netdev_group; ip link show group 6 | head -1",
]

outputs, test_sysfs_write_line_matches_the_kernel = line_tests(CASES, "sysfs_write")


def test_sysfs_writes_are_announced(tmp_path):
    """``dev_set_mtu``, ``dev_change_tx_queue_len`` and ``dev_change_flags`` send RTM_NEWLINK;
    an unchanged value, ``dev_set_group`` and a refused write send nothing."""
    real, emu = run_monitor_both(tmp_path, "ip -o monitor link", [
        "ip link add v0 type veth peer name v1",
        f"echo 1400 > {D}/mtu",
        f"echo 1400 > {D}/mtu",
        f"echo 70000 > {D}/mtu",
        f"echo 800 > {D}/tx_queue_len",
        f"echo 7 > {D}/netdev_group",
        f"echo 0x1082 > {D}/flags",               # IFF_NOARP (up: a veth's linkwatch races)
        f"echo 0x1002 > {D}/flags",
        "sleep 0.5",                            # the monitor has read the last one
    ])
    strip = [ln.split("link/")[0] for ln in real.splitlines()]
    assert len(strip) >= 4, real
    assert [ln.split("link/")[0] for ln in emu.splitlines()] == strip


def test_a_group_set_by_rtnetlink_is_announced_while_up(tmp_path):
    """do_setlink's IFLA_GROUP: DO_SETLINK_NOTIFY, so ``netdev_state_change`` — a message
    for an up device only."""
    real, emu = run_monitor_both(tmp_path, "ip -o monitor link", [
        "ip link set lo group 5",
        "ip link set lo up",
        "ip link set lo group 6",
        "sleep 0.5",
    ])
    strip = [ln.split("link/")[0] for ln in real.splitlines()]
    assert len(strip) == 2 and "group 5" in strip[0] and "group 6" in strip[1], real
    assert [ln.split("link/")[0] for ln in emu.splitlines()] == strip
