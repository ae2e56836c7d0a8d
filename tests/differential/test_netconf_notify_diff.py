"""Differential: RTM_NEWNETCONF on sysctl writes (and on a device's registration,
RTM_DELNETCONF on its unregistration) — `ip -d monitor netconf` while
/proc/sys/net/{ipv4,ipv6}/conf/*/{forwarding, rp_filter, proxy_arp, proxy_ndp,
ignore_routes_with_linkdown, bc_forwarding} are written (changed, rewritten unchanged,
all/default/device); the raw bytes of the messages a socket in RTNLGRP_IPV4_NETCONF and
RTNLGRP_IPV6_NETCONF receives, and of an RTM_GETNETCONF dump after them — on a fresh real
network namespace and through `xfrmd run` (devinet_conf_proc, devinet_sysctl_forward /
inet_forward_change, addrconf_fixup_forwarding, addrconf_fixup_linkdown,
addrconf_sysctl_proxy_ndp)."""
from __future__ import annotations

import json

from tests.differential.kconfig_host import needs_kernel
from tests.differential.test_rtnl_diff import NL_DUMP, run_monitor_both, run_probe_both

P = "/proc/sys/net"
SETUP = "ip link add d0 type veth peer name d1\n" + "".join(
    f"echo 0 > {P}/{f}\n" for f in ("ipv4/conf/all/forwarding", "ipv4/conf/default/forwarding",
                                    "ipv4/conf/all/rp_filter", "ipv4/conf/default/rp_filter",
                                    "ipv6/conf/all/forwarding", "ipv6/conf/default/forwarding"))
WRITES = [(v, f) for v, f in (
    (1, "ipv4/conf/d0/forwarding"), (1, "ipv4/conf/d0/forwarding"),
    (2, "ipv4/conf/d0/forwarding"),                      # IPv4: any change is announced
    (2, "ipv4/conf/d0/rp_filter"), (2, "ipv4/conf/d0/rp_filter"),
    (1, "ipv4/conf/d0/proxy_arp"), (1, "ipv4/conf/d0/ignore_routes_with_linkdown"),
    (1, "ipv4/conf/d0/bc_forwarding"),                   # no announcement
    (1, "ipv4/conf/default/rp_filter"), (1, "ipv4/conf/all/proxy_arp"),
    (1, "ipv4/conf/default/ignore_routes_with_linkdown"),
    (1, "ipv4/conf/default/forwarding"), (1, "ipv4/conf/all/forwarding"),
    (0, "ipv4/conf/all/forwarding"),
    (1, "ipv6/conf/d0/forwarding"), (2, "ipv6/conf/d0/forwarding"),   # IPv6: 0 ↔ non-zero
    (1, "ipv6/conf/d0/proxy_ndp"), (1, "ipv6/conf/d0/proxy_ndp"),
    (1, "ipv6/conf/d0/ignore_routes_with_linkdown"),
    (2, "ipv6/conf/d0/ignore_routes_with_linkdown"),
    (1, "ipv6/conf/default/ignore_routes_with_linkdown"),
    (1, "ipv6/conf/all/ignore_routes_with_linkdown"), (3, "ipv6/conf/all/proxy_ndp"),
    (2, "ipv6/conf/all/forwarding"), (0, "ipv6/conf/default/forwarding"),
    (0, "ipv6/conf/all/forwarding"))]


def test_ip_monitor_netconf_prints_what_the_kernel_announces(tmp_path):
    needs_kernel("VETH")
    # the emulated monitor subscribes and reads through the server: time for both
    lines = (["sleep 0.5"] + SETUP.splitlines() + [f"echo {v} > {P}/{f}" for v, f in WRITES]
             + ["ip link del d0"])                      # RTM_DELNETCONF of d0 and d1
    real, emu = run_monitor_both(tmp_path, "ip -d monitor netconf", lines)
    assert real.count("\n") >= 30 and "inet6 d0 ignore_routes_with_linkdown off" not in real
    assert "inet6 d1 forwarding off proxy_neigh off ignore_routes_with_linkdown off" in real
    assert emu == real


_PROBE = NL_DUMP + r'''
import sys
s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)
s.bind((0, (1 << 23) | (1 << 24)))                   # RTNLGRP_IPV4_NETCONF, IPV6_NETCONF
for w in json.loads(sys.argv[1]):
    with open("/proc/sys/net/" + w[1], "w") as f:
        f.write(str(w[0]) + "\n")
import time
time.sleep(1)                                        # xfrmd's arrive through its server
s.setblocking(False)
out = []
while True:
    try:
        out.append(s.recv(65536).hex())
    except BlockingIOError:
        break
d = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)       # RTM_GETNETCONF dump after
d.bind((0, 0))
out += nl_dump(d, struct.pack("=IHHII", 20, 82, 0x301, 1, 0) + struct.pack("=Bxxx", 0))
print(json.dumps(out))
'''


def test_netconf_notification_bytes_match_the_kernel(tmp_path):
    needs_kernel("VETH")
    real, emu = run_probe_both(tmp_path, SETUP, _PROBE, "'" + json.dumps(WRITES) + "'")
    real, emu = json.loads(real.stdout), json.loads(emu.stdout)
    assert len(real) >= 40 and emu == real
