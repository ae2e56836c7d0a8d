"""Differential: a working directory in sysfs (`cd /sys/class/net/DEV; cat mtu`) on a fresh
real network namespace and through `xfrmd run --topology bare`: the shell's logical ``pwd``,
``getcwd`` (/bin/pwd, ``pwd -P``, Python's os.getcwd: the device's real directory, the link
resolved), relative reads, writes, stats and listings from there, ``cd ..`` and a path that
leaves sysfs by ``..``, in sh, in bash and in a child process."""
from __future__ import annotations

from tests.differential.test_rtnl_diff import line_tests

CASES = [
    "ip link add v0 type veth peer name v1",
    "cd /sys/class/net/v0 && pwd && /bin/pwd && cat mtu && ls | grep -x -e mtu -e ifindex",
    "cat ./address | wc -c; stat -c '%F %s' mtu .; readlink -f mtu; [ -r carrier ] && echo readable",
    "cd .. && pwd && /bin/pwd && ls",
    "cd v1 && /bin/pwd && cat ifindex; cd ../lo; cat ifindex",
    "python3 -c \"import os; print(os.getcwd(), open('mtu').read().strip()); os.chdir('../v0'); "
    "print(os.getcwd(), open('mtu').read().strip())\"",
    "bash -c 'cd /sys/class/net/lo; pwd; pwd -P; cat mtu; echo 1400 > mtu; echo rc=$?; cd /tmp; pwd'",
    "cd /sys/class/net/v0; echo 1300 > mtu; cat mtu; ip link show v0 | grep -o 'mtu [0-9]*'",
    "cat nosuch; cd mtu; echo rc=$?; cd nosuch; echo rc=$?",
    "cd ../../../../etc && /bin/pwd && ls hostname",
]

outputs, test_sysfs_cwd_line_matches_the_kernel = line_tests(CASES, "sysfs_cwd")
