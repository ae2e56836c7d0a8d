"""Differential: NLM_F_ECHO (`ip -echo …`) on a fresh real network namespace and through
`xfrmd run --topology bare` — the notification each request causes comes back to the
sender (nlmsg_notify with report set) and ip prints it; requests whose notification the
kernel builds without the request (IPv6 addresses, a link going down) print nothing."""
from __future__ import annotations

from tests.differential.test_rtnl_diff import line_tests

CASES = [
    "ip -echo link add d1 type veth peer name d2",      # rtnl_configure_link
    "ip -echo addr add 192.0.2.9/24 dev d1",
    "ip -echo -6 addr add 2001:db8::9/64 dev d1",       # inet6_ifa_notify: no request
    "ip -echo rule add pref 5 table 5",
    "ip -echo -6 rule add pref 5 table 5",
    "ip link set d1 up",
    "ip link set d2 up",
    "ip -echo route add 198.51.100.0/24 dev d1",
    "ip -echo -6 route add 2001:db8:5::/64 dev d1",
    "ip -echo route del 198.51.100.0/24 dev d1",
    "ip -echo addr del 192.0.2.9/24 dev d1",
    "ip -echo rule del pref 5",
    "ip -echo link set d1 down",                         # dev_change_flags: no request
    "ip -echo link del d1",                              # unregister_netdevice_many_notify
]

outputs, test_ip_echo_line_matches_the_kernel = line_tests(CASES, "echo")
