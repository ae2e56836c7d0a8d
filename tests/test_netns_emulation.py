"""Emulated network namespaces under the shim: `ip netns add|list|exec|del`, `ip -n`, and a
program's own unshare(CLONE_NEWNET) / setns() / /proc/self/ns/net act on the emulated
kernel's namespaces; nothing reaches the host (no namespace, no file, no mount)."""
from __future__ import annotations

import os
import subprocess
import uuid

from .conftest import require_shim, xfrmd_run

# a program's own calls, through libc (what C programs such as the kernel's ipsec.c do)
PY = '''python3 -c "
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWNET = 0x40000000
for step in sys.argv[1:]:
    if step == 'unshare':
        print('unshare', libc.unshare(CLONE_NEWNET))
    elif step.startswith('setns='):
        fd = os.open(step[6:], os.O_RDONLY)
        print('setns', libc.setns(fd, CLONE_NEWNET))
    else:
        sys.stdout.flush(); os.system(step)
" '''


def _host_netns() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def test_ip_netns_add_list_exec_del_stay_in_the_emulated_kernel():
    require_shim("ip")
    p = xfrmd_run("""
ip netns add xfrmd-emu-blue; echo "add $?"
ip netns add xfrmd-emu-blue; echo "again $?"
ip netns list
ip -n xfrmd-emu-blue link add d0 type dummy; echo "ip -n $?"
ip -n xfrmd-emu-blue -br link show | cut -d' ' -f1
echo "default: $(ip -br link show | cut -d' ' -f1 | tr '\\n' ' ')"
ip netns exec xfrmd-emu-blue sh -c 'ip -br link show d0 | cut -d" " -f1; echo "env $XFRMD_NETNS"'
xfrmd ctl netns list | grep -c xfrmd-emu-blue
ip netns del xfrmd-emu-blue; echo "del $?"
ip netns list | wc -l
ip netns exec xfrmd-emu-blue true; echo "exec after del $?"
""", "bare")
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines() == [
        "add 0", "again 1", "xfrmd-emu-blue", "ip -n 0", "lo", "d0", "default: lo ",
        "d0", "env xfrmd-emu-blue", "1", "del 0", "0", "exec after del 255"]
    assert ('Cannot create namespace file "/run/netns/xfrmd-emu-blue": File exists'
            in p.stderr)
    assert ('Cannot open network namespace "xfrmd-emu-blue": No such file or directory'
            in p.stderr)
    # the host saw nothing: no namespace, no bound file
    assert "xfrmd-emu-blue" not in _host_netns()
    assert not os.path.exists("/run/netns/xfrmd-emu-blue")


def test_a_veth_end_moves_into_a_named_namespace():
    require_shim("ip")
    p = xfrmd_run("""
ip netns add red
ip link add v0 type veth peer name v1 netns red
ip -br link show | cut -d' ' -f1
ip -n red -br link show | cut -d' ' -f1
""", "bare")
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["lo", "v0@if2", "lo", "v1@if2"]


def test_a_programs_unshare_and_setns():
    """unshare(CLONE_NEWNET) gives the process a fresh emulated namespace (a device made
    there is not in the first); /proc/self/ns/net stands for it; setns() on /run/netns/NAME
    enters a named one. ip netns list does not show the unnamed namespace."""
    require_shim("ip")
    p = xfrmd_run(PY + """unshare "ip link add dx type dummy" "ip -br link show | cut -d' ' -f1"
echo "first: $(ip -br link show | cut -d' ' -f1 | tr '\\n' ' ')"
echo "named: $(ip netns list | wc -l)"
ip netns add green
ip -n green link add g0 type dummy
""" + PY + """setns=/run/netns/green "ip -br link show | cut -d' ' -f1"
""", "bare")
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines() == ["unshare 0", "lo", "dx", "first: lo ", "named: 0",
                                     "setns 0", "lo", "g0"]


# a NETLINK_XFRM socket shared with another process: by fork, or passed by SCM_RIGHTS
_SHARED = r'''
import os, socket, struct, sys, subprocess
XFRMGRP_SA, XFRM_MSG_GETSA, XFRM_MSG_NEWSA = 4, 18, 16

def dump_sa(s, seq):
    s.send(struct.pack("=IHHII", 16 + 232, XFRM_MSG_GETSA, 0x301, seq, 0) + bytes(232))
    n = 0
    while True:
        d = s.recv(65536)
        off = 0
        while off < len(d):
            ln, ty = struct.unpack_from("=IH", d, off)
            if ty == 3:
                return n
            if ty == 2:
                return -struct.unpack_from("=i", d, off + 16)[0]
            n += 1
            off += (ln + 3) & ~3

if sys.argv[1] == "fork":
    s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 6)
    s.bind((0, XFRMGRP_SA))
    pid = os.fork()
    if pid == 0:
        print("child dump", dump_sa(s, 1), flush=True)
        os._exit(0)
    os.waitpid(pid, 0)
else:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    pid = os.fork()
    if pid == 0:
        c = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 6)
        socket.send_fds(b, [b"x"], [c.fileno()])
        c.close()
        os._exit(0)
    _, fds, _, _ = socket.recv_fds(a, 10, 1)
    os.waitpid(pid, 0)
    s = socket.socket(fileno=fds[0])
    print("received", s.family == socket.AF_NETLINK, s.proto)
    s.bind((0, XFRMGRP_SA))
    print("port is the receiver's pid", s.getsockname()[0] == os.getpid())
    print("parent dump", dump_sa(s, 1))
    a2, b2 = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    socket.send_fds(b2, [b"x"], [s.fileno()])             # to itself: a second fd
    s2 = socket.socket(fileno=socket.recv_fds(a2, 10, 1)[1][0])
    print("self-passed", s2.getsockname() == s.getsockname(), dump_sa(s2, 3))
subprocess.run("ip xfrm state add src 10.0.0.1 dst 10.0.0.2 proto esp spi 0x100 mode tunnel "
               "enc 'cbc(aes)' 0x00112233445566778899aabbccddeeff", shell=True, check=True)
s.settimeout(5)
print("event", struct.unpack_from("=IH", s.recv(65536))[1] == XFRM_MSG_NEWSA)
print("dump", dump_sa(s, 2))
'''


def test_a_netlink_socket_shared_by_fork_or_passed_by_scm_rights(tmp_path):
    """A forked child's request on the parent's NETLINK_XFRM socket is answered to the
    child, and the parent's subscription still gets the event; a socket a child opened
    and passed by SCM_RIGHTS is, in the receiver, the same netlink socket (family, protocol,
    its requests answered, its group joined)."""
    require_shim("ip")
    script = tmp_path / "shared.py"
    script.write_text(_SHARED)
    p = xfrmd_run(f"python3 {script} fork; ip xfrm state flush; python3 {script} scm", "bare")
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines() == [
        "child dump 0", "event True", "dump 1",
        "received True 6", "port is the receiver's pid True", "parent dump 0",
        "self-passed True 0", "event True", "dump 1"]
    assert "unknown control frame" not in p.stderr


_CLONE_C = r'''
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static char stack[1 << 16];
static int child(void *arg)
{
    (void)arg;
    return system("ip link add c0 type dummy && echo \"child: $(ip -br link show | cut -d' ' -f1 | tr '\\n' ' ')\"");
}

static void host_ns(char *buf, size_t n)
{
    ssize_t r = readlink("/proc/self/ns/net", buf, n - 1);
    buf[r < 0 ? 0 : r] = 0;
}

int main(void)
{
    char before[64], after[64];
    host_ns(before, sizeof before);
    pid_t p = clone(child, stack + sizeof stack, CLONE_NEWNET | SIGCHLD, NULL);
    if (p < 0) { perror("clone"); return 1; }
    int st;
    waitpid(p, &st, 0);
    printf("child exit %d\n", WEXITSTATUS(st));
    fflush(stdout);
    system("echo \"parent: $(ip -br link show | cut -d' ' -f1 | tr '\\n' ' ')\"");
    errno = 0;
    int r = clone(child, stack + sizeof stack, CLONE_NEWNET | CLONE_VM | SIGCHLD, NULL);
    printf("clone CLONE_VM %d %s\n", r, strerror(errno));
    struct { uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls; }
        ca = { CLONE_NEWNET, 0, 0, 0, SIGCHLD, 0, 0, 0 };
    errno = 0;
    long r3 = syscall(SYS_clone3, &ca, sizeof ca);
    if (r3 == 0) _exit(0);
    printf("clone3 %ld %s\n", r3, strerror(errno));
    errno = 0;
    r3 = syscall(SYS_clone, CLONE_NEWNET | SIGCHLD, 0, 0, 0, 0);
    if (r3 == 0) _exit(0);
    printf("SYS_clone %ld %s\n", r3, strerror(errno));
    host_ns(after, sizeof after);
    printf("host namespace kept %d\n", strcmp(before, after) == 0);
    return 0;
}
'''


def test_clone_newnet_gives_the_child_an_emulated_namespace_or_fails(tmp_path):
    """glibc's clone(CLONE_NEWNET) without CLONE_VM: the child is in a fresh emulated
    namespace (its device is not the parent's); with CLONE_VM, and the raw clone/clone3
    system calls, EOPNOTSUPP with the reason on stderr; the host's namespace never
    changes."""
    require_shim("ip")
    src, exe = tmp_path / "clone.c", tmp_path / "clone"
    src.write_text(_CLONE_C)
    cc = subprocess.run(["gcc", "-O1", "-o", str(exe), str(src)], capture_output=True, text=True)
    assert cc.returncode == 0, cc.stderr
    p = xfrmd_run(str(exe), "bare")
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines() == [
        "child: lo c0 ", "child exit 0", "parent: lo ",
        "clone CLONE_VM -1 Operation not supported",
        "clone3 -1 Operation not supported", "SYS_clone -1 Operation not supported",
        "host namespace kept 1"]
    assert "xfrmd: clone() with CLONE_NEWNET and CLONE_VM is not emulated" in p.stderr
    assert "xfrmd: clone3() with CLONE_NEWNET is not emulated" in p.stderr
    assert "xfrmd: the clone system call with CLONE_NEWNET is not emulated" in p.stderr


def test_ip_netns_identify_pids_set_and_attach():
    """`ip netns identify [PID]` names the emulated namespace a process is in (nothing for
    the unnamed root one); `ip netns pids NAME` lists the processes in it (not those of
    another xfrmd server with a namespace of that name: cleanup scripts kill them); `ip netns set`
    gives ids as rtnl_net_newid does (differential expectations from a 6.x kernel); a
    second name for a named namespace and `ip netns monitor` fail with the reason."""
    require_shim("ip")
    p = xfrmd_run("""
ip netns add a; ip netns add b
echo "self [$(ip netns identify)]"
ip netns exec a ip netns identify
XFRMD_SOCKET=./another-server.sock XFRMD_NETNS=b sleep 3 & other=$!
ip netns exec b sh -c "sleep 3; true" & sleep 1
echo "pids $(ip netns pids b | wc -l)"  # sh and its sleep, not another server's process
ip netns identify $!
echo "other server's [$(ip netns identify $other)]"
ip netns identify 999999; echo "gone $?"
kill $! $other; wait
ip netns set a 7; echo "set $?"
ip netns set b auto; echo "auto $?"
ip netns set a 9; echo "again $?"
ip netns add c; ip netns set c 7; echo "used $?"
ip netns list-id
ip netns exec a sh -c 'ip netns attach second $$'; echo "attach $?"
ip netns list | sort
timeout 5 ip netns monitor; echo "monitor $?"
""", "bare")
    assert p.stdout.splitlines() == [
        "self []", "a", "pids 2", "b", "other server's []", "gone 1",
        "set 0", "auto 0", "again 2", "used 2",
        "nsid 0 (iproute2 netns name: b)", "nsid 7 (iproute2 netns name: a)",
        "attach 1", "a (id: 7)", "b (id: 0)", "c", "monitor 1"], p.stderr
    assert "Cannot open network namespace: No such file or directory" in p.stderr
    assert "Error: Peer netns already has a nsid assigned." in p.stderr
    assert "Error: The specified nsid is already used." in p.stderr
    assert ("network namespace 'a' has a name already; a second name for it is not emulated"
            in p.stderr)
    # the host's /run/netns is never watched in their place
    assert "xfrmd: watching /run/netns (ip netns monitor) is not emulated" in p.stderr


def test_a_namespace_only_the_host_has_is_refused_under_xfrmd_run():
    """XFRMD_HOST_NETNS=refuse (set by `xfrmd run`): `ip netns exec` and `ip netns del` of a
    host-only name fail with ENOENT — ip's own line is the one Linux prints for a name without a namespace —
    after one line saying why; XFRMD_HOST_NETNS=enter (the IKE harness) enters it."""
    require_shim("ip", "sh", "true")
    name = "xfrmd-hostonly-" + uuid.uuid4().hex[:6]
    missing = "xfrmd-missing-" + uuid.uuid4().hex[:6]
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        p = xfrmd_run(f"ip netns exec {name} true", "bare")
        lines = p.stderr.splitlines()
        assert p.returncode != 0
        assert lines[0] == (f'xfrmd shim: network namespace "{name}" exists only on the host, '
                            "not in the emulated kernel: refused (XFRMD_HOST_NETNS=refuse; "
                            "docs/protocol.md)")
        assert lines[1] == f'Cannot open network namespace "{name}": No such file or directory'
        # a name that exists nowhere: exactly the host ip's answer, no shim line
        host = subprocess.run(["ip", "netns", "exec", missing, "true"], capture_output=True,
                              text=True)
        emu = xfrmd_run(f"ip netns exec {missing} true", "bare")
        assert (emu.returncode, emu.stderr) == (host.returncode, host.stderr) != (0, "")
        enter = xfrmd_run(f"ip netns exec {name} true", "bare",
                          env=dict(os.environ, XFRMD_HOST_NETNS="enter"))
        assert (enter.returncode, enter.stderr) == (0, "")
        # `ip netns del` of it is refused the same way, and the host keeps it
        p = xfrmd_run(f"ip netns del {name}", "bare")
        assert p.returncode == 1
        assert p.stderr.splitlines() == [
            lines[0], f'Cannot remove namespace file "/run/netns/{name}": '
            "No such file or directory"]
        assert name in _host_netns()
        # a name that exists nowhere: the host ip's answer
        host = subprocess.run(["ip", "netns", "del", missing], capture_output=True, text=True)
        emu = xfrmd_run(f"ip netns del {missing}", "bare")
        assert (emu.returncode, emu.stderr) == (host.returncode, host.stderr) != (0, "")
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def test_ip_netns_del_removes_the_name_and_the_last_process_the_namespace(tmp_path):
    """`ip netns del` unmounts the name only: a process still in the namespace keeps it (its
    veth end stays, the peer in `default` with it, and a command it runs afterwards still
    lands there); when that process exits the namespace is destroyed (cleanup_net) and the
    veth peer in `default` goes with it. The name can be taken again at once."""
    require_shim("ip", "sh", "sleep")
    go, ready = tmp_path / "go", tmp_path / "ready"
    p = xfrmd_run(f"""
ip netns add xfrmd-emu-red
ip link add v0 type veth peer name v1 netns xfrmd-emu-red
ip netns exec xfrmd-emu-red sh -c 'touch {ready}; while [ ! -e {go} ]; do sleep 0.05; done
  echo "inside: $(ip -br link | cut -d" " -f1 | tr "\\n" " ")"' &
while [ ! -e {ready} ]; do sleep 0.05; done
ip netns del xfrmd-emu-red; echo "del $?"
echo "list: $(ip netns list)"
echo "while held: $(ip -br link | cut -d' ' -f1 | tr '\\n' ' ')"
touch {go}; wait
echo "after exit: $(ip -br link | cut -d' ' -f1 | tr '\\n' ' ')"
ip netns add xfrmd-emu-red; echo "again: $(ip -n xfrmd-emu-red -br link | cut -d' ' -f1)"
""", "bare")
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines() == [
        "del 0", "list: ", "while held: lo v0@if2 ", "inside: lo v1@if2 ",
        "after exit: lo ", "again: lo"], p.stderr


def test_an_unshared_namespace_goes_with_its_last_process():
    """unshare(CLONE_NEWNET) without a name: when the process exits the namespace is
    destroyed, and the veth end it moved into `default` goes with its peer."""
    require_shim("ip", "python3")
    p = xfrmd_run(PY + """unshare 'ip link add u0 type veth peer name u1 netns default'
echo "default: $(ip -br link | cut -d' ' -f1 | tr '\\n' ' ')"
echo "namespaces: $(xfrmd ctl netns list | tr '\\n' ' ')"
""", "bare")
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines() == ["unshare 0", "default: lo ", "namespaces: default "]


def test_a_child_started_in_the_namespace_holds_it_after_its_parent_exits(tmp_path):
    """`ip netns exec NS sh -c 'sleep … &'`: sh ends at once, the sleep it started in NS
    (never talking to the server) keeps the namespace after `ip netns del`; it goes when the
    sleep ends."""
    require_shim("ip", "sh", "sleep")
    go = tmp_path / "go"
    p = xfrmd_run(f"""
ip netns add xfrmd-emu-green
ip link add v0 type veth peer name v1 netns xfrmd-emu-green
ip netns exec xfrmd-emu-green sh -c 'sh -c "while [ ! -e {go} ]; do sleep 0.05; done" &'
ip netns del xfrmd-emu-green
echo "held: $(ip -br link | cut -d' ' -f1 | tr '\\n' ' ')"
touch {go}
for i in $(seq 50); do ip link show v0 >/dev/null 2>&1 || break; sleep 0.1; done
echo "gone: $(ip -br link | cut -d' ' -f1 | tr '\\n' ' ')"
""", "bare")
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines() == ["held: lo v0@if2 ", "gone: lo "], p.stderr
