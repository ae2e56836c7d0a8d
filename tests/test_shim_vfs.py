"""stat(), access() and opendir() of the virtual files through the shim: the sysfs, debugfs
and procfs trees the emulated kernel serves look to a program as they would on Linux, so
the kernel selftests' existence checks and `ls` of sysfs directories work unchanged."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

from .conftest import require

XFRMD = [sys.executable, "-m", "xfrmd.cli"]


def run(script: str, topology: str = "default", env: dict | None = None) -> subprocess.CompletedProcess:
    require(shutil.which("gcc") or shutil.which("cc"), "needs a C compiler for the shim")
    return subprocess.run(XFRMD + ["run", "--topology", topology, "--", "sh", "-c", script],
                          capture_output=True, text=True, timeout=60, env=env)


# the start of tools/testing/selftests/net/rtnetlink.sh kci_test_ipsec_offload, as written
# there: it checks the sysfs file is writable, waits for the device's directory, finds the
# port with ls, and checks the debugfs directory and file exist
SELFTEST = r'''
sysfsd=/sys/kernel/debug/netdevsim/netdevsim0/ports/0/
sysfsf=$sysfsd/ipsec
sysfsnet=/sys/bus/netdevsim/devices/netdevsim0/net/
if [ ! -w /sys/bus/netdevsim/new_device ] ; then
    echo "SKIP: netdevsim not writable"; exit 4
fi
echo "0" > /sys/bus/netdevsim/new_device
n=0
while [ ! -d $sysfsnet ] ; do n=$((n+1)); [ $n -lt 1000 ] || { echo "FAIL: no $sysfsnet"; exit 1; }; done
dev=`ls $sysfsnet`
ip addr add 192.168.123.3/24 dev $dev
ip link set $dev up
if [ ! -d $sysfsd ] ; then echo "FAIL: ipsec_offload can't access $sysfsd"; exit 1; fi
if [ ! -e $sysfsf ] ; then echo "FAIL: ipsec_offload can't access $sysfsf"; exit 1; fi
echo "dev=$dev"
cat $sysfsf
echo "0" > /sys/bus/netdevsim/del_device
[ -d $sysfsnet ] || echo "gone"
'''


def test_selftest_existence_checks_and_ls():
    p = run(SELFTEST, topology="bare")
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout == "dev=eni0np1\nSA count=0 tx=0\ngone\n"


def test_stat_shows_sysfs_modes_and_sizes():
    p = run("stat -c '%F %a %s %U' /sys/bus/netdevsim/new_device /sys/class/net/eth0/mtu "
            "/sys/class/net /sys/kernel/debug/netdevsim/netdevsim0/ports/0/ipsec /proc/net/bonding/bond0; "
            "stat /sys/class/net/nosuch 2>&1; "
            "[ -x /sys/class/net/eth0/mtu ] || echo 'mtu: not executable'; "
            "[ -x /sys/class/net ] && echo 'class/net: searchable'; "
            "[ -f /sys/class/net/eth0 ] || echo 'eth0: not a file'")
    assert p.stdout.splitlines() == [
        "regular file 200 4096 root",
        "regular file 644 4096 root",               # mtu_store: writable
        "directory 755 0 root",
        "regular empty file 400 0 root",            # debugfs_create_file("ipsec", 0400)
        "regular empty file 444 0 root",            # procfs files have no size
        "stat: cannot statx '/sys/class/net/nosuch': No such file or directory",
        "mtu: not executable",
        "class/net: searchable",
        "eth0: not a file",
    ], p.stdout + p.stderr


def test_directory_listings_follow_the_model(tmp_path):
    """ls, the shell's glob and Python's os.listdir see the namespace's devices, bonds and
    netdevsim ports; a device made with `ip link add` appears; nothing is left in TMPDIR."""
    env = dict(os.environ, TMPDIR=str(tmp_path))
    p = run("ls /sys/class/net | tr '\\n' ' '; echo; "
            "ip link add extra0 type dummy; ls /sys/class/net/extra0 | tr '\\n' ' '; echo; "
            "for b in /proc/net/bonding/*; do echo $b; done; "
            "ls /sys/kernel/debug/netdevsim/netdevsim0/ports; "
            + sys.executable + " -c \"import os; print(sorted(os.listdir('/sys/bus/netdevsim')), "
            "os.path.isdir('/sys/class/net/lo'), os.path.exists('/sys/class/net/nosuch'))\"; "
            "ls /sys/class/net/nosuch 2>&1 | sed 's/^ls: //'",
            env=env)
    assert p.stdout.splitlines() == [
        "bond0 bond1 dummy0 eth0 eth1 eth2 lo nsim0 soe0 soe1 soe2 ",
        "addr_assign_type addr_len address broadcast carrier carrier_changes carrier_down_count "
        "carrier_up_count dev_id dev_port dormant duplex flags gro_flush_timeout ifalias ifindex "
        "iflink link_mode mtu name_assign_type napi_defer_hard_irqs netdev_group operstate "
        "proto_down speed statistics testing tx_queue_len type uevent ",
        "/proc/net/bonding/bond0",
        "/proc/net/bonding/bond1",
        "0",
        "['del_device', 'devices', 'new_device'] True False",
        "cannot access '/sys/class/net/nosuch': No such file or directory",
    ], p.stdout + p.stderr
    assert list(tmp_path.iterdir()) == []        # the listing's temporary directories went


def test_debugfs_is_one_tree_for_every_namespace():
    """bond_ipsec_offload.sh's way: the ports are made from inside a namespace
    (`ip netns exec NS tee new_device`), their sysfs `net` directory is seen there only, and
    their debugfs files are read from the initial namespace (debugfs is not per namespace:
    nsim_dev_port_debugfs_init); after del_device they are gone everywhere."""
    p = run("ip netns add nsa; "
            "echo '3 2' | ip netns exec nsa tee /sys/bus/netdevsim/new_device >/dev/null; "
            "ip netns exec nsa ls /sys/bus/netdevsim/devices/netdevsim3/net | tr '\\n' ' '; echo; "
            "ls /sys/bus/netdevsim/devices/netdevsim3/net 2>&1 | sed 's/^ls: //'; "
            "ls /sys/kernel/debug/netdevsim/netdevsim3/ports | tr '\\n' ' '; echo; "
            "cat /sys/kernel/debug/netdevsim/netdevsim3/ports/1/ipsec; "
            "echo 3 | ip netns exec nsa tee /sys/bus/netdevsim/del_device >/dev/null; "
            "cat /sys/kernel/debug/netdevsim/netdevsim3/ports/1/ipsec 2>&1 | sed 's/^cat: //'; "
            "ip netns del nsa", topology="bare")
    assert p.stdout.splitlines() == [
        "eni3np1 eni3np2 ",
        "cannot access '/sys/bus/netdevsim/devices/netdevsim3/net': No such file or directory",
        "0 1 ",
        "SA count=0 tx=0",
        "/sys/kernel/debug/netdevsim/netdevsim3/ports/1/ipsec: No such file or directory",
    ], p.stdout + p.stderr


def test_netdevsim_port_links_into_its_bus_device():
    """A netdevsim port's /sys/class/net entry points into its bus device's directory
    (``nsim_dev_port_add``: the port's netdev has the netdevsim device as parent), not into
    /sys/devices/virtual/net; its attributes are there too."""
    p = run("echo 3 > /sys/bus/netdevsim/new_device; readlink /sys/class/net/eni3np1; "
            "readlink -f /sys/class/net/eni3np1; ls /sys/devices/netdevsim3 /sys/devices/netdevsim3/net; "
            "cat /sys/devices/netdevsim3/net/eni3np1/ifindex; ls /sys/devices/virtual/net; "
            "ls /sys/devices/netdevsim4 2>&1 | sed 's/.*: //'", topology="bare")
    assert p.stdout.splitlines() == [
        "../../devices/netdevsim3/net/eni3np1", "/sys/devices/netdevsim3/net/eni3np1",
        "/sys/devices/netdevsim3:", "net", "", "/sys/devices/netdevsim3/net:", "eni3np1",
        "2", "lo", "No such file or directory"], p.stdout + p.stderr


def test_a_virtual_directory_is_no_fd():
    """open() of a virtual directory fails with EOPNOTSUPP (the kernel has no inode to give
    an fd; docs/protocol.md), so `find`/fdopendir fail loudly instead of listing a stand-in;
    opening one to write is EISDIR as on Linux (may_open), and fchdir to a real directory
    ends a virtual cwd."""
    p = run("python3 -c \"import os\n"
            "for fl in (os.O_RDONLY, os.O_RDONLY | os.O_DIRECTORY):\n"
            "    try: os.open('/sys/class/net/lo', fl)\n"
            "    except OSError as e: print(e.errno)\n"
            "os.chdir('/sys/class/net/lo'); print(os.getcwd()); fd = os.open('/tmp', os.O_RDONLY)\n"
            "os.fchdir(fd); print(os.getcwd())\"; "
            "echo x > /sys/class/net/lo; echo rc=$?", topology="bare")
    assert p.stdout.splitlines() == ["95", "95", "/sys/devices/virtual/net/lo", "/tmp", "rc=2"]
    assert "Is a directory" in p.stderr
