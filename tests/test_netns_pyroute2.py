"""pyroute2's namespaces under the shim: ``pyroute2.netns.create/remove/listnetns``,
``NetNS(NAME)``, ``IPRoute(netns=NAME)``, ``NSPopen`` and ``pushns/popns`` act on the emulated kernel's namespaces.

pyroute2 calls libc through ``ctypes.CDLL("libc.so.6")`` (``mount``, ``unshare``,
``syscall(__NR_setns)``), which the shim sees through its dlsym(); ``IPRoute(netns=…)`` opens
its socket in a forked child that setns()es and passes the socket back by SCM_RIGHTS, which
the shim adopts as the same emulated socket. Nothing reaches the host."""
from __future__ import annotations

import os
import subprocess
import sys

from .conftest import require, require_shim, xfrmd_run

_SCRIPT = r'''
import errno, os, subprocess
from pyroute2 import IPRoute, NetNS, NSPopen, netns
netns.create("xfrmd-p2-red")
print("list", sorted(netns.listnetns()))
with NetNS("xfrmd-p2-red") as ns:
    ns.link("add", ifname="v0", kind="dummy")
    idx = ns.link_lookup(ifname="v0")[0]
    ns.link("set", index=idx, state="up")
    ns.addr("add", index=idx, address="10.9.0.1", prefixlen=24)
    ns.route("add", dst="10.10.0.0/16", gateway="10.9.0.2")
    print("links", [l.get("ifname") for l in ns.get_links()])
    print("addrs", [(a.get("address"), a["prefixlen"]) for a in ns.get_addr(family=2)])
    print("routes", sorted(r.get("dst") for r in ns.get_routes(family=2, table=254)))
    print("netns", ns.status["netns"])
with IPRoute() as ipr:
    print("default", [l.get("ifname") for l in ipr.get_links()])
with IPRoute(netns="xfrmd-p2-red") as ipr:
    ipr.bind()
    os.system("ip -n xfrmd-p2-red link add v9 type dummy")
    events = [m.get("ifname") for m in ipr.get() if m["event"] == "RTM_NEWLINK"]
    print("event", events)
    print("again", [l.get("ifname") for l in ipr.get_links()])
p = NSPopen("xfrmd-p2-red", ["ip", "-br", "link", "show", "v9"], stdout=subprocess.PIPE)
print("nspopen", p.communicate()[0].decode().split()[0])
p.wait()
p.release()
netns.pushns("xfrmd-p2-red")
with IPRoute() as ipr:
    print("pushns", [l.get("ifname") for l in ipr.get_links()])
netns.popns()
with IPRoute() as ipr:
    print("popns", [l.get("ifname") for l in ipr.get_links()])
netns.remove("xfrmd-p2-red")
print("removed", netns.listnetns())
try:
    NetNS("xfrmd-p2-red", flags=0)
except FileNotFoundError as e:
    print("flags=0", errno.errorcode[e.args[0]])
with NetNS("xfrmd-p2-new") as ns:          # NetNS makes a namespace that does not exist
    print("new", [l.get("ifname") for l in ns.get_links()])
    ns.remove()
print("end", netns.listnetns())
'''


def test_pyroute2_netns_netns_and_iproute_netns(tmp_path):
    require_shim("ip")
    script = tmp_path / "p2.py"
    script.write_text(_SCRIPT)
    p = xfrmd_run(f"{sys.executable} {script}; ip netns list | wc -l", "bare", timeout=90)
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines() == [
        "list ['xfrmd-p2-red']",
        "links ['lo', 'v0']",
        "addrs [('10.9.0.1', 24)]",
        "routes ['10.10.0.0', '10.9.0.0']",
        "netns xfrmd-p2-red",
        "default ['lo']",
        "event ['v9']",
        "again ['lo', 'v0', 'v9']",
        "nspopen v9",
        "pushns ['lo', 'v0', 'v9']",
        "popns ['lo']",
        "removed []",
        "flags=0 ENOENT",
        "new ['lo']",
        "end []",
        "0"]
    assert "unknown control frame" not in p.stderr
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert "xfrmd-p2" not in out
    assert not os.path.exists("/run/netns/xfrmd-p2-red")


_CTYPES = r'''
import ctypes, ctypes.util, os
NR_UNSHARE, NR_SETNS = {"x86_64": (272, 308), "aarch64": (97, 268)}[os.uname().machine]
libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
real = lambda: os.readlink("/proc/self/ns/net")   # the host namespace: not emulated
before = real()
print("unshare", libc.unshare(0x40000000), real() == before, flush=True)
print("syscall unshare", libc.syscall(NR_UNSHARE, 0x40000000), real() == before, flush=True)
os.system("ip -br link show | cut -d' ' -f1")
fd = os.open("/run/netns/xfrmd-p2-blue", os.O_RDONLY)
print("syscall setns", libc.syscall(NR_SETNS, fd, 0x40000000), real() == before, flush=True)
os.system("ip -br link show | cut -d' ' -f1")
'''


def test_libc_through_ctypes_reaches_the_emulation_not_the_host(tmp_path):
    """ctypes.CDLL("libc.so.6").unshare and .syscall(__NR_unshare / __NR_setns) are the
    shim's: the process's real namespace stays the host's (readlink of /proc/self/ns/net,
    which the shim leaves alone), the emulated one changes."""
    require_shim("ip")
    require(os.uname().machine in ("x86_64", "aarch64"), "needs the setns/unshare numbers")
    script = tmp_path / "c.py"
    script.write_text(_CTYPES)
    p = xfrmd_run(f"ip netns add xfrmd-p2-blue && ip -n xfrmd-p2-blue link add b0 type dummy && "
                  f"{sys.executable} {script}", "bare")
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines() == [
        "unshare 0 True", "syscall unshare 0 True", "lo",
        "syscall setns 0 True", "lo", "b0"]
