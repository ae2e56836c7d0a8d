"""Writes to emulated /proc/sys files fail as Linux's do: the handler's errno comes back from
write() (or from fclose()/close() for buffered writers such as procps ``sysctl -w``) and the
value is left unchanged; a file without a write bit refuses open() for writing with EACCES
(proc_sys_call_handler, proc_sys_permission). tests/differential/test_sysctl_write_diff.py
compares the same script with the host kernel."""
from __future__ import annotations

from .conftest import require_shim, xfrmd_run

# one key per case: a valid write, an out-of-range value, a number below the minimum, a
# non-number (two handlers), then the values read back; and the raw calls: write() of a bad
# MTU and open(O_WRONLY) of a 0444 file
SYSCTL_SCRIPT = r"""
for kv in 'net.ipv4.ping_group_range=0 2147483647' 'net.ipv4.ping_group_range=0 4294967295' \
          net.ipv6.conf.lo.mtu=5 net.ipv6.conf.lo.mtu=abc net.ipv4.conf.lo.forwarding=abc \
          net.ipv6.conf.lo.mtu=1280; do
  sysctl -w "$kv" 2>&1; echo "rc=$?"
done
sysctl net.ipv4.ping_group_range net.ipv6.conf.lo.mtu net.ipv4.conf.lo.forwarding
python3 -c "
import errno, os
fd = os.open('/proc/sys/net/ipv6/conf/lo/mtu', os.O_WRONLY)
try:
    os.write(fd, b'5\n')
except OSError as e:
    print('write', errno.errorcode[e.errno])
os.close(fd)
try:
    os.open('/proc/sys/net/ipv4/conf/lo/mc_forwarding', os.O_WRONLY)
except OSError as e:
    print('open', errno.errorcode[e.errno])
"
echo 1 > /proc/sys/net/ipv4/conf/lo/forwarding; echo "rc=$?"
cat /proc/sys/net/ipv4/conf/lo/forwarding /proc/sys/net/ipv6/conf/lo/mtu
"""

SYSCTL_TEXT = """\
net.ipv4.ping_group_range = 0 2147483647
rc=0
sysctl: setting key "net.ipv4.ping_group_range": Invalid argument
rc=1
sysctl: setting key "net.ipv6.conf.lo.mtu": Invalid argument
rc=1
sysctl: setting key "net.ipv6.conf.lo.mtu": Invalid argument
rc=1
sysctl: setting key "net.ipv4.conf.lo.forwarding": Invalid argument
rc=1
net.ipv6.conf.lo.mtu = 1280
rc=0
net.ipv4.ping_group_range = 0\t2147483647
net.ipv6.conf.lo.mtu = 1280
net.ipv4.conf.lo.forwarding = 0
write EINVAL
open EACCES
rc=0
1
1280
"""


def test_sysctl_writes_fail_with_the_handlers_errno():
    require_shim("sh", "sysctl", "python3", "cat")
    p = xfrmd_run(SYSCTL_SCRIPT, "bare")
    assert p.returncode == 0, p.stderr
    assert p.stdout == SYSCTL_TEXT
