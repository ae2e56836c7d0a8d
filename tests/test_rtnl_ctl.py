"""`xfrmd ctl` verbs through `xfrmd run` with real `ip`: carrier off/on, unplug
and replug, a namespace added, a port moved into it and back when it is deleted, the device
table — each with the RTM_NEWLINK / RTM_DELLINK notifications Linux sends, as `ip monitor
link` prints them in both namespaces (default topology, whose MACs are fixed)."""
from __future__ import annotations

import os
import sys

from .conftest import require_shim, xfrmd_run

SCRIPT = r'''
C="$PY -m xfrmd.cli ctl"
ip monitor link > "$OUT/mon" 2>&1 & M=$!
sleep 1
$C link eth2 carrier off; echo "== $?"
ip -o link show eth2
$C link eth2 carrier on; echo "== $?"
$C link soe2 unplug; echo "== $?"
ip link show soe2; echo "== $?"
$C link soe2 replug; echo "== $?"
$C netns add c; echo "== $?"
$C netns add c; echo "== $?"
$C netns list
XFRMD_NETNS=c ip monitor link > "$OUT/monc" 2>&1 & MC=$!
sleep 1
$C link nsim0 netns c; echo "== $?"
XFRMD_NETNS=c ip -o link
$C link dummy0 netns c name d9; echo "== $?"
$C link lo netns c; echo "== $?"
$C link bond0 netns c; echo "== $?"
$C link eth2 netns nosuch; echo "== $?"
kill $MC
$C netns del c; echo "== $?"
$C netns list
$C links
sleep 1
kill $M
echo "== mon"; cat "$OUT/mon"
echo "== monc"; cat "$OUT/monc"
'''

EXPECTED = """\
== 0
5: eth2: <NO-CARRIER,BROADCAST,MULTICAST,UP> mtu 1500 qdisc mq state DOWN mode DEFAULT \
group default qlen 1000\\    link/ether 02:00:00:01:00:04 brd ff:ff:ff:ff:ff:ff
== 0
== 0
== 1
== 0
== 0
== 1
c
default
== 0
1: lo: <LOOPBACK> mtu 65536 qdisc noop state DOWN mode DEFAULT group default qlen 1000\\    \
link/loopback 00:00:00:00:00:00 brd 00:00:00:00:00:00
7: nsim0: <BROADCAST,MULTICAST> mtu 1500 qdisc noop state DOWN mode DEFAULT group default \
qlen 1000\\    link/ether 02:00:00:01:00:06 brd ff:ff:ff:ff:ff:ff
== 0
== 1
== 1
== 1
== 0
default
  1 lo         loopback    up    carrier=on
  3 eth0       mlx5        up    carrier=on master=bond0
  4 eth1       mlx5        up    carrier=on master=bond0
  5 eth2       mlx5        up    carrier=on
  6 bond0      bond        up    carrier=on
  7 nsim0      netdevsim   down  carrier=on
  8 soe0       airoha-soe  up    carrier=on master=bond1
  9 soe1       airoha-soe  up    carrier=on master=bond1
 11 bond1      bond        up    carrier=on
 12 soe2       airoha-soe  down  carrier=on
== mon
5: eth2: <NO-CARRIER,BROADCAST,MULTICAST,UP> mtu 1500 qdisc mq state DOWN group default 
    link/ether 02:00:00:01:00:04 brd ff:ff:ff:ff:ff:ff
5: eth2: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc mq state UP group default 
    link/ether 02:00:00:01:00:04 brd ff:ff:ff:ff:ff:ff
10: soe2: <BROADCAST,MULTICAST> mtu 1500 qdisc mq state DOWN group default 
    link/ether 02:00:00:01:00:09 brd ff:ff:ff:ff:ff:ff
Deleted 10: soe2: <BROADCAST,MULTICAST> mtu 1500 qdisc noop state DOWN group default 
    link/ether 02:00:00:01:00:09 brd ff:ff:ff:ff:ff:ff
12: soe2: <BROADCAST,MULTICAST> mtu 1500 qdisc noop state DOWN group default 
    link/ether 02:00:00:01:00:09 brd ff:ff:ff:ff:ff:ff
7: nsim0: <BROADCAST,MULTICAST> mtu 1500 qdisc mq state DOWN group default 
    link/ether 02:00:00:01:00:06 brd ff:ff:ff:ff:ff:ff
Deleted 7: nsim0: <BROADCAST,MULTICAST> mtu 1500 qdisc noop state DOWN group default 
    link/ether 02:00:00:01:00:06 brd ff:ff:ff:ff:ff:ff new-netnsid 0 new-ifindex 7
2: dummy0: <BROADCAST,NOARP> mtu 1500 qdisc noqueue state DOWN group default 
    link/ether 02:00:00:01:00:01 brd ff:ff:ff:ff:ff:ff
Deleted 2: dummy0: <BROADCAST,NOARP> mtu 1500 qdisc noop state DOWN group default 
    link/ether 02:00:00:01:00:01 brd ff:ff:ff:ff:ff:ff new-netnsid 0 new-ifindex 2
7: nsim0: <BROADCAST,MULTICAST> mtu 1500 qdisc noop state DOWN group default 
    link/ether 02:00:00:01:00:06 brd ff:ff:ff:ff:ff:ff
== monc
7: nsim0: <BROADCAST,MULTICAST> mtu 1500 qdisc noop state DOWN group default 
    link/ether 02:00:00:01:00:06 brd ff:ff:ff:ff:ff:ff
2: dummy0: <BROADCAST,NOARP> mtu 1500 qdisc noop state DOWN group default 
    link/ether 02:00:00:01:00:01 brd ff:ff:ff:ff:ff:ff
2: d9: <BROADCAST,NOARP> mtu 1500 qdisc noop state DOWN group default 
    link/ether 02:00:00:01:00:01 brd ff:ff:ff:ff:ff:ff
"""

EXPECTED_ERR = """\
Device "soe2" does not exist.
xfrmd ctl: network namespace 'c' exists
xfrmd ctl: The interface netns is immutable
xfrmd ctl: The interface netns is immutable
xfrmd ctl: no namespace 'nosuch'
"""


def test_ctl_verbs_and_the_notifications_ip_monitor_prints(tmp_path):
    require_shim("ip")
    p = xfrmd_run(SCRIPT, env=dict(os.environ, OUT=str(tmp_path), PY=sys.executable),
                  timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout == EXPECTED
    assert p.stderr == EXPECTED_ERR


def test_ip_d_monitor_and_netns_list_id_get_their_nsid_answers(tmp_path):
    """ip -d monitor asks RTM_GETNSID for every file in /var/run/netns (NETNSA_FD): a real
    namespace is none of the emulated ones, so the answer is NETNSA_NSID_NOT_ASSIGNED and ip
    goes on; ip netns list-id dumps the ids this namespace gave."""
    require_shim("ip")
    script = ('ip -d monitor link > "$OUT/m" 2>&1 & M=$!; sleep 1; '
              'ip link add v0 type veth peer name v1; sleep 1; kill $M; cat "$OUT/m"; '
              'ip netns list-id; echo "== $?"')
    p = xfrmd_run(script, "bare", env=dict(os.environ, OUT=str(tmp_path)))
    assert p.returncode == 0, p.stderr
    assert "xfrmd:" not in p.stdout and p.stderr == ""
    lines = p.stdout.splitlines()
    assert lines[0].startswith("2: v1@NONE: <BROADCAST,MULTICAST> mtu 1500 qdisc noop state DOWN")
    assert lines[3].startswith("3: v0@v1: <BROADCAST,MULTICAST,M-DOWN> mtu 1500 qdisc noop")
    assert lines[-1] == "== 0" and len(lines) == 7          # no ids given: nothing listed
