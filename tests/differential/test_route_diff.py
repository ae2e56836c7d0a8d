"""Differential: `ip route` add / replace / change / del / show / get lines on a fresh real
network namespace and through `xfrmd run --topology bare` — stdout, stderr and exit status
identical line by line (inet_rtm_newroute / fib_table_insert / fib_table_delete, the routes a
device takes along when it goes down, RTNH_F_LINKDOWN without carrier). A second test
compares the RTM_NEWROUTE / RTM_DELROUTE notifications `ip monitor route` prints."""
from __future__ import annotations

from tests.differential.kconfig_host import needs_kernel
from tests.differential.test_rtnl_diff import line_tests, run_monitor_both

CASES = [
    "ip link add v0 type veth peer name v1",
    "ip link set v0 up",
    "ip link set v1 up",
    "ip addr add 192.0.2.1/24 dev v0",
    "ip route add 10.9.0.0/16 dev v0",
    "ip route add 10.9.0.0/16 dev v0",                 # EEXIST (ip route add is EXCL)
    "ip route add 10.10.0.0/16 via 192.0.2.2",
    "ip route add 10.11.0.0/16 via 203.0.113.1",       # unreachable gateway
    "ip route add default via 192.0.2.254",
    "ip route add 10.12.0.0/16 via 192.0.2.3 metric 50",
    "ip route add 10.12.0.0/16 via 192.0.2.4 metric 60",
    "ip route add 10.13.0.0/16 dev nosuch",            # ip's own error
    "ip route add 10.14.0.0/16",                       # no device, no gateway: ENODEV
    "ip route add 10.15.0.1/16 dev v0",                # host bits under the prefix
    "ip route add 10.16.0.0/16 dev v0 src 192.0.2.1",
    "ip route add 10.17.0.0/16 dev v0 src 198.51.100.1",   # not a local address
    "ip route add 10.18.0.0/16 via 192.0.2.7 dev v0",
    "ip route add 10.19.0.0/16 via 192.0.2.7 dev lo",  # gateway not on that device
    "ip route show",
    "ip route replace 10.9.0.0/16 via 192.0.2.5",
    "ip route replace 10.20.0.0/16 via 192.0.2.5",     # replace creates
    "ip route change 10.99.0.0/16 via 192.0.2.5",      # change needs an existing route
    "ip route show 10.9.0.0/16",
    "ip route get 10.10.1.1",
    "ip route get 10.12.1.1",                          # the lower metric wins
    "ip route get 8.8.8.8",
    "ip route del 10.9.0.0/16",
    "ip route del 10.9.0.0/16",                        # ESRCH
    "ip route del 10.12.0.0/16 metric 40",             # no such metric: ESRCH
    "ip route del 10.12.0.0/16 metric 60",
    "ip route del 10.7.0.1/16",                        # host bits
    "ip route show",
    "ip route del default",
    "ip link set v0 down",
    "ip route show",                                   # the device took its routes along
    "ip link set v0 up",
    "ip route show",
    "ip route add 10.21.0.0/16 via 192.0.2.9",
    "ip link set v1 down",
    "ip route show",                                   # no carrier: linkdown
    "ip route add 10.22.0.0/16 dev v0",
    "ip route show",
    "ip link del v0",
    "ip route show",
]
assert len(CASES) >= 40


outputs, test_ip_route_line_matches_the_kernel = line_tests(CASES, "route")


MONITORED = [
    "ip link add v0 type veth peer name v1", "ip link set v0 up", "ip link set v1 up",
    "ip addr add 192.0.2.1/24 dev v0",
    "sleep 0.3",
    "ip route add 10.9.0.0/16 dev v0",
    "ip route add 10.10.0.0/16 via 192.0.2.2 metric 7",
    "ip route replace 10.9.0.0/16 via 192.0.2.5",
    "ip route del 10.10.0.0/16",
    "ip route del 10.9.0.0/16",
    "sleep 0.3",
]


def test_ip_monitor_route_prints_what_the_kernel_prints(tmp_path):
    needs_kernel("VETH")
    real, emu = run_monitor_both(tmp_path, "ip monitor route", MONITORED)
    real = [ln for ln in real.splitlines() if "10." in ln]
    emu = [ln for ln in emu.splitlines() if "10." in ln]
    assert real and emu == real, f"--- kernel\n{real}\n--- xfrmd\n{emu}"
