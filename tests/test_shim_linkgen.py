"""The shim keeps its answers to if_nametoindex and SIOCETHTOOL ETHTOOL_GFEATURES while the
link generation page (docs/protocol.md "The link generation page") stands: one long-lived
program (a charon stand-in) asks again and again; every change that can alter an answer —
a rename, a delete, a move to another namespace, an `ethtool -K` including one that only
changes what is requested — is seen at once, in every namespace, and repeated questions no
longer reach the server."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from xfrmd import server as server_mod
from xfrmd import shim
from xfrmd.testing import make_kernel, running_server

from .conftest import require_shim

# a program that answers one line per command: "n NAME" → if_nametoindex, "f NAME" →
# ETHTOOL_GFEATURES (requested, active) as word0:word1 or the errno, "s NS" → setns to NS
REPL = r'''
import ctypes, os, socket, struct, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.if_nametoindex.argtypes = [ctypes.c_char_p]
libc.if_nametoindex.restype = ctypes.c_uint
libc.ioctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p]
fd = os.open("/dev/null", os.O_RDONLY)
for line in sys.stdin:
    cmd, arg = line.split()
    if cmd == "n":
        out = str(libc.if_nametoindex(arg.encode()))
    elif cmd == "f":
        buf = ctypes.create_string_buffer(struct.pack("=II", 0x3A, 2) + bytes(32))
        ifr = ctypes.create_string_buffer(40)
        ifr[:16] = arg.encode().ljust(16, b"\0")
        struct.pack_into("P", ifr, 16, ctypes.addressof(buf))
        if libc.ioctl(fd, 0x8946, ifr) < 0:
            out = "errno %d" % ctypes.get_errno()
        else:
            w = struct.unpack_from("=II8I", buf.raw)
            out = "%x:%x %x:%x" % (w[3], w[7], w[4], w[8])
    else:
        nfd = os.open("/run/netns/" + arg, os.O_RDONLY)
        out = str(libc.setns(nfd, 0x40000000))
        os.close(nfd)
    print(out, flush=True)
'''


@pytest.fixture
def srv():
    require_shim("ip", "ethtool")
    with running_server(make_kernel("bare")) as h:
        yield h


class Program:
    def __init__(self, env: dict[str, str]):
        self.p = subprocess.Popen([sys.executable, "-c", REPL], env=env, text=True,
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def ask(self, cmd: str) -> str:
        assert self.p.stdin and self.p.stdout
        self.p.stdin.write(cmd + "\n")
        self.p.stdin.flush()
        return self.p.stdout.readline().strip()

    def close(self) -> None:
        assert self.p.stdin
        self.p.stdin.close()
        self.p.wait(10)


def shim_env(srv, **extra: str) -> dict[str, str]:
    return dict(os.environ, XFRMD_SOCKET=srv.path, LD_PRELOAD=shim.path(), **extra)


def sh(srv, *cmds: str, status: int = 0) -> subprocess.CompletedProcess:
    for c in cmds:
        p = subprocess.run(c.split(), env=shim_env(srv), capture_output=True, text=True, timeout=30)
        assert p.returncode == status, (c, p.stderr)
    return p


@pytest.fixture
def counted(monkeypatch):
    """The service ops the server answers, by name."""
    seen: list[str] = []
    real = server_mod.services.handle

    def handle(kernel, netns, request, *a, **kw):
        seen.append(request.get("op", ""))
        return real(kernel, netns, request, *a, **kw)

    monkeypatch.setattr(server_mod.services, "handle", handle)
    return seen


def test_the_page_is_next_to_the_socket_and_goes_with_the_server():
    with running_server(make_kernel("bare")) as h:
        page = h.path + ".linkgen"
        st = os.stat(page)
        assert st.st_size == 4096 and st.st_mode & 0o777 == 0o644
    assert not os.path.exists(page)


def test_rename_delete_and_move_are_seen_by_a_kept_answer(srv):
    sh(srv, "ip link add d0 type veth peer name e0", "ip netns add blue")
    prog = Program(shim_env(srv))
    try:
        idx = prog.ask("n d0")
        assert idx != "0" and prog.ask("n d0") == idx          # asked, then kept
        sh(srv, "ip link set d0 name d1")
        assert prog.ask("n d0") == "0" and prog.ask("n d1") == idx
        sh(srv, "ip link set d1 netns blue")
        assert prog.ask("n d1") == "0"
        assert prog.ask("s blue") == "0"                        # setns: blue's answers
        assert prog.ask("n d1") == idx and prog.ask("n e0") == "0"
        sh(srv, "ip netns exec blue ip link del d1")
        assert prog.ask("n d1") == "0"
        assert prog.ask("s default") != ""
    finally:
        prog.close()


def test_the_namespace_is_part_of_the_key(srv):
    sh(srv, "ip netns add blue", "ip link add d0 type veth peer name e0",
       "ip link set e0 netns blue")
    prog = Program(shim_env(srv))
    try:
        e0 = prog.ask("n e0")
        assert e0 == "0"                                        # kept: not here
        assert prog.ask("s blue") == "0"
        assert prog.ask("n e0") != "0"
        assert prog.ask("n d0") == "0"
    finally:
        prog.close()


def test_ethtool_changes_are_seen_wanted_only_ones_too(srv):
    sh(srv, "ip link add d0 type veth peer name e0",
       "ip link add b0 type bond mode balance-xor")
    prog = Program(shim_env(srv))
    try:
        before = prog.ask("f d0")
        assert prog.ask("f d0") == before
        sh(srv, "ethtool -K d0 tx off")
        after = prog.ask("f d0")
        assert after != before
        # esp-tx-csum-hw-offload without esp-hw-offload is dropped (bond_fix_features):
        # only the requested word changes, and no notification says so
        req0, act0 = prog.ask("f b0").split()
        p = sh(srv, "ethtool -K b0 esp-tx-csum-hw-offload on", status=1)
        assert "esp-tx-csum-hw-offload: off [requested on]" in p.stdout
        req1, act1 = prog.ask("f b0").split()
        assert act1 == act0 and req1 != req0
    finally:
        prog.close()


def test_repeated_questions_do_not_reach_the_server(srv, counted):
    """What charon does for each Child SA: if_nametoindex and GFEATURES of the same links."""
    sh(srv, "ip link add d0 type veth peer name e0")
    prog = Program(shim_env(srv))
    try:
        answers = {prog.ask("n d0"), prog.ask("f d0")}
        del counted[:]
        for _ in range(50):
            assert {prog.ask("n d0"), prog.ask("f d0")} == answers
        assert counted.count("if_nametoindex") == 0 and counted.count("ioctl") == 0
        sh(srv, "ip link set d0 mtu 1400")                     # any link event: asked again
        del counted[:]
        prog.ask("n d0")
        assert counted.count("if_nametoindex") == 1
    finally:
        prog.close()


def test_a_bonds_features_are_asked_every_time(srv, counted):
    """bond_compute_features runs when GFEATURES is asked: that answer is not kept."""
    sh(srv, "ip link add b0 type bond mode balance-xor")
    prog = Program(shim_env(srv))
    try:
        first = prog.ask("f b0")
        del counted[:]
        assert prog.ask("f b0") == first and prog.ask("f b0") == first
        assert counted.count("ioctl") == 2
    finally:
        prog.close()


def test_without_a_page_every_question_is_asked(srv, counted):
    os.unlink(srv.path + ".linkgen")
    sh(srv, "ip link add d0 type veth peer name e0")
    prog = Program(shim_env(srv))
    try:
        del counted[:]
        for _ in range(5):
            assert prog.ask("n d0") != "0"
        assert counted.count("if_nametoindex") == 5
    finally:
        prog.close()
