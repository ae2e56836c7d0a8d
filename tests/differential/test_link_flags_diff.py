"""Differential: `ip link set DEV alias X` (dev_set_alias, IFLA_IFALIAS in rtnl_fill_ifinfo)
and `arp off|on` / `multicast off|on` (the plain flags of __dev_change_flags, announced by
__dev_notify_flags) on a fresh real network namespace and through
`xfrmd run --topology bare`: ip's lines, the `ip monitor link` record and the dump's
attributes identical."""
from __future__ import annotations

import json

from tests.differential.test_rtnl_diff import (_DUMP, _links, _norm, line_tests, run_monitor_both,
                                               run_probe_both)

CASES = [
    "ip link add v0 type veth peer name v1",
    "ip link set v0 alias 'uplink to the lab'",
    "ip link show v0",
    "ip link set v0 arp off",
    "ip link show v0",
    "ip link set v0 up arp on",                         # one request, both flags
    "ip link show v0",
    "ip link set v0 alias ''",                          # an empty alias clears it
    "ip link show v0",
    "ip link set v0 down arp off multicast off",
    "ip -d link show v0",
    "ip link set v0 arp on multicast on alias again",
    "ip -o link show",
]

outputs, test_ip_link_set_line_matches_the_kernel = line_tests(CASES, "linkflags")


def test_alias_and_flag_notifications_match_the_kernel(tmp_path):
    """A flag change is announced even on a down device (change = the flags that moved); an
    alias only while the device is up (netdev_state_change)."""
    real, emu = run_monitor_both(tmp_path, "ip monitor link", [
        "ip link add v0 type veth peer name v1", "ip link set v0 alias down-alias",
        "ip link set v0 arp off", "ip link set v0 up", "ip link set v0 alias up-alias",
        "ip link set v0 arp on multicast off", "ip link set v0 down multicast on"])
    assert "NOARP" in real
    assert _norm(emu) == _norm(real)


def test_alias_attribute_is_where_the_kernel_puts_it(tmp_path):
    setup = "ip link add v0 type veth peer name v1 && ip link set v0 alias hello && "
    real, emu = run_probe_both(tmp_path, setup, _DUMP)
    assert real.returncode == 0 and emu.returncode == 0, (real.stderr, emu.stderr)
    r, e = _links(json.loads(real.stdout)), _links(json.loads(emu.stdout))
    assert (20, b"hello\0") in r["v0"][1]
    assert [t for t, _ in e["v0"][1]] == [t for t, _ in r["v0"][1]]
    assert e["v0"][1] == r["v0"][1]
