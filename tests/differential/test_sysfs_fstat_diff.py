"""Differential: ``fstat`` of an open sysfs or procfs file on a fresh real network namespace
and through `xfrmd run --topology bare`. A sysfs attribute's inode has size PAGE_SIZE
whatever its text (sysfs_add_file_mode_ns), a procfs file's 0 (proc_sys_make_inode,
proc_create): the shim's fd answers what ``stat`` of its path answers, for a file opened
to read and one opened to write, not the length of the text it holds."""
from __future__ import annotations

from tests.differential.test_rtnl_diff import line_tests

FSTAT = ("python3 -c \"import os, stat, sys\n"
         "for p in sys.argv[1:]:\n"
         "    fd = os.open(p, os.O_RDONLY); a = os.fstat(fd); os.close(fd)\n"
         "    print(p, a.st_size, stat.filemode(a.st_mode), a.st_nlink, a.st_uid)\n"
         "\" ")
CASES = [
    "ip link add v0 type veth peer name v1",
    FSTAT + "/sys/class/net/v0/mtu /sys/class/net/v0/address /sys/class/net/lo/ifindex "
    "/sys/class/net/v0/carrier_changes",
    FSTAT + "/proc/net/dev /proc/net/if_inet6 /proc/sys/net/ipv4/conf/v0/forwarding",
    # fstat and stat of the same path agree (ino aside: the shim's is its own)
    "python3 -c \"import os; p = '/sys/class/net/v0/mtu'; fd = os.open(p, os.O_WRONLY); "
    "a = os.fstat(fd); b = os.stat(p); os.close(fd); "
    "print(a.st_size, oct(a.st_mode), (a.st_size, a.st_mode) == (b.st_size, b.st_mode))\"",
    # a buffered read of the whole file is not cut at the inode size
    "python3 -c \"print(repr(open('/sys/class/net/v0/mtu').read()), "
    "len(open('/proc/net/dev').read()) > 200)\"",
    "wc -c /sys/class/net/v0/mtu /sys/class/net/v0/address | head -2",
]

outputs, test_sysfs_fstat_line_matches_the_kernel = line_tests(CASES, "sysfs_fstat")
