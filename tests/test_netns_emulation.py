"""Emulated network namespaces under the shim: `ip netns add|list|exec|del`, `ip -n`, and a
program's own unshare(CLONE_NEWNET) / setns() / /proc/self/ns/net act on the emulated
kernel's namespaces; nothing reaches the host (no namespace, no file, no mount)."""
from __future__ import annotations

import os
import subprocess

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
    print("parent dump", dump_sa(s, 1))
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
        "received True 6", "parent dump 0", "event True", "dump 1"]
    assert "unknown control frame" not in p.stderr
