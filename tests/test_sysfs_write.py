"""Writes to /sys/class/net/DEV attributes through the shim (net-sysfs.c ``netdev_store``):
each write() is applied at once and fails with the change function's errno, which a shell's
`echo` reports; ``stat`` shows 0644 for the attributes with a store and size 0 for procfs
files. A dummy's carrier follows ``echo 0|1 > carrier`` (``dummy_change_carrier``, linkwatch:
NO-CARRIER, operstate DOWN then UP), as it does to `ip link set DEV carrier off`
(IFLA_CARRIER, ``dev_change_carrier``). tests/differential/test_sysfs_write_diff.py compares
the veth part with the host kernel."""
from __future__ import annotations

from .conftest import require_shim, xfrmd_run

SCRIPT = r"""
ip link add v0 type veth peer name v1
stat -c '%s %A %n' /proc/sys/net/ipv4/conf/lo/forwarding /proc/net/dev \
  /sys/class/net/v0/mtu /sys/class/net/v0/carrier /sys/class/net/v0/operstate
bash -c '
d=/sys/class/net/v0
echo 1400 > $d/mtu; echo "mtu rc=$?"
echo 70000 > $d/mtu; echo "mtu rc=$?"
echo 0 > $d/carrier; echo "carrier rc=$?"
echo 1 > $d/proto_down; echo "proto_down rc=$?"
echo 4294967296 > $d/tx_queue_len; echo "txq rc=$?"
echo 5 > $d/netdev_group; echo 0x1003 > $d/flags
echo 2147483648 > $d/napi_defer_hard_irqs; echo "napi rc=$?"
echo x > $d/operstate; echo "operstate rc=$?"
ip link add d0 type dummy; ip link set d0 up
echo 0 > /sys/class/net/d0/carrier; echo "d0 carrier $(cat /sys/class/net/d0/carrier)"
ip -o link show d0
echo 1 > /sys/class/net/d0/carrier; ip -o link show d0
ip link set d0 down; echo 0 > /sys/class/net/d0/carrier; echo "down rc=$?"
' 2>&1 | sed 's/link\/ether.*//'
ip link show v0 | head -1
ip link set d0 up; ip link set d0 carrier off; ip -o link show d0 | sed 's/link\/ether.*//'
ip link set v0 carrier on 2>&1; echo "rc=$?"
"""

TEXT = """\
0 -rw-r--r-- /proc/sys/net/ipv4/conf/lo/forwarding
0 -r--r--r-- /proc/net/dev
4096 -rw-r--r-- /sys/class/net/v0/mtu
4096 -rw-r--r-- /sys/class/net/v0/carrier
4096 -r--r--r-- /sys/class/net/v0/operstate
mtu rc=0
bash: line 4: echo: write error: Invalid argument
mtu rc=1
bash: line 5: echo: write error: Operation not supported
carrier rc=1
bash: line 6: echo: write error: Operation not supported
proto_down rc=1
bash: line 7: echo: write error: Numerical result out of range
txq rc=1
bash: line 9: echo: write error: Numerical result out of range
napi rc=1
bash: line 10: /sys/class/net/v0/operstate: Permission denied
operstate rc=1
d0 carrier 0
4: d0: <NO-CARRIER,BROADCAST,NOARP,UP> mtu 1500 qdisc noqueue state DOWN mode DEFAULT group default qlen 1000\\    
4: d0: <BROADCAST,NOARP,UP,LOWER_UP> mtu 1500 qdisc noqueue state UP mode DEFAULT group default qlen 1000\\    
bash: line 15: echo: write error: Invalid argument
down rc=1
3: v0@v1: <NO-CARRIER,BROADCAST,MULTICAST,UP,M-DOWN> mtu 1400 qdisc noqueue state LOWERLAYERDOWN mode DEFAULT group 5 qlen 1000
4: d0: <NO-CARRIER,BROADCAST,NOARP,UP> mtu 1500 qdisc noqueue state DOWN mode DEFAULT group default qlen 1000\\    
RTNETLINK answers: Operation not supported
rc=2
"""


def test_sysfs_writes_fail_with_the_stores_errno():
    require_shim("sh", "bash", "stat", "cat", "sed", "head")
    p = xfrmd_run(SCRIPT, "bare")
    assert p.returncode == 0, p.stderr
    assert p.stdout == TEXT
