"""Differential: devices moving between namespaces and veth pairs across two namespaces, on a
pair of fresh real namespaces and through `xfrmd run` (`bare`, built like the running kernel:
tests/differential/kconfig_host.py) with a second emulated
namespace — `ip link set DEV netns PID`, `ip link add … peer name B netns PID`, errors
(netns-immutable lo and bridge, no such process, a name taken in the target), ifindexes kept
unless taken, addresses dropped, `link-netnsid`, `ip netns list-id`, and what `ip monitor
link` prints in both namespaces (RTM_DELLINK with new-netnsid/new-ifindex in the old one,
RTM_NEWLINK in the new one).

The second namespace is named by the pid of a process living in it (dev_change_net_namespace
through IFLA_NET_NS_PID): on Linux `unshare -n ip monitor link`, in xfrmd a process with
XFRMD_NETNS=b. Both namespaces are unnamed on the real side (`unshare -n`), so `ip` prints
`link-netnsid N` on both sides."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.differential.kconfig_host import host_topology, needs_kernel
from tests.differential.test_rtnl_diff import (_DUMP, SETTLE_SH, XFRMD, _links, _need_tools,
                                              _norm)

SCRIPT = r'''
# xfrmd: namespace b is made by the owner (a HELLO cannot make one)
if [ -z "$REAL" ]; then "$PY" -m xfrmd.cli ctl netns add b; fi
inb() { if [ -n "$REAL" ]; then nsenter -t $M -n "$@"; else XFRMD_NETNS=b "$@"; fi; }
# on the real kernel, linkwatch settles in both namespaces before the next line (SETTLE_SH)
line() { "$@"; echo "== $?"; settle; if [ -n "$REAL" ]; then settle nsenter -t $M -n; fi; }
ip link add v0 type veth peer name v1
ip link add x0 type veth peer name x1
ip addr add 198.51.100.1/24 dev x0
ip link set x0 up
# the background job itself must be the process in namespace b (no subshell)
if [ -n "$REAL" ]; then unshare -n ip monitor link > "$OUT/monb" 2>&1 &
else XFRMD_NETNS=b ip monitor link > "$OUT/monb" 2>&1 & fi
M=$!
ip monitor link > "$OUT/mona" 2>&1 & A=$!
sleep 1
line ip link set v1 netns $M
line ip -o link show
line inb ip -o link show
line ip link set v0 up
line inb ip link set v1 up
line ip link show v0
line inb ip -d link show v1
line ip link set lo netns $M
line ip link add br0 type bridge
line ip link set br0 netns $M
line ip link set v0 netns 999999
line inb ip link add x0 type veth peer name x9
line ip link set x0 netns $M
line ip link set x0 netns $M name x5
line inb ip -o addr show dev x5
line inb ip -o link show
line ip link add v2 type veth peer name v3 netns $M
line ip -o link show v2
line inb ip -o link show v3
line inb ip link set v1 netns $A
line ip -o link show
line ip netns list-id
line inb ip netns list-id
line ip link del v2
line inb ip -o link show
line ip link add w0 type veth peer name w1
line ip -br link show
line ip link set w0 up
line ip link set w1 up
line ip link del w0
sleep 1
kill $M $A
echo "== mona"; cat "$OUT/mona"
echo "== monb"; cat "$OUT/monb"
'''


def _run(tmp_path):
    _need_tools()
    needs_kernel("VETH")
    script = tmp_path / "netns.sh"
    script.write_text(SETTLE_SH + SCRIPT)
    outs = []
    for real in (True, False):
        d = tmp_path / ("real" if real else "emu")
        d.mkdir()
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "OUT": str(d)}
        if real:
            env["REAL"] = env["XFRMD_DIFF_REAL"] = "1"
            cmd = ["unshare", "-n", "sh", str(script)]
        else:
            cmd = XFRMD + ["run", "--topology", host_topology(), "--", "sh", str(script)]
            import os
            env["PYTHONPATH"] = os.getcwd()
            env["PYTHONDONTWRITEBYTECODE"] = "1"
            env["PY"] = sys.executable
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
        outs.append(p)
    return outs


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    return _run(tmp_path_factory.mktemp("netns"))


def _chunks(p) -> list[str]:
    return [_norm(c) for c in p.stdout.split("== ")]


def test_the_whole_script_matches_the_kernel(outputs):
    real, emu = outputs
    assert emu.returncode == real.returncode == 0, emu.stderr
    assert _norm(emu.stderr) == _norm(real.stderr)
    r, e = _chunks(real), _chunks(emu)
    assert len(r) == len(e)
    for i, (rc, ec) in enumerate(zip(r, e)):
        assert ec == rc, f"chunk {i}\n--- kernel\n{rc}\n--- xfrmd\n{ec}"


def test_what_the_monitors_saw(outputs):
    """Not trivially empty: the moves were seen on both sides."""
    emu = outputs[1].stdout
    mona = emu.split("== mona", 1)[1].split("== monb", 1)[0]
    monb = emu.split("== monb", 1)[1]
    assert "Deleted 2: v1@v0: " in mona and "new-netnsid 0 new-ifindex 2" in mona
    assert "2: v1@if3: <BROADCAST,MULTICAST> mtu 1500 qdisc noop state DOWN" in monb
    assert "link-netnsid 0" in monb


def test_errors_are_the_kernels(outputs):
    err = outputs[1].stderr
    assert err.count("Error: The interface netns is immutable.") == 2
    assert "RTNETLINK answers: No such process" in err
    assert "Error: An interface with the same name exists in the target netns." in err


def test_raw_attributes_of_a_veth_across_namespaces(tmp_path):
    """IFLA_LINK (the peer's index in the other namespace) and IFLA_LINK_NETNSID, in the
    kernel's order, in a link dump."""
    _need_tools()
    needs_kernel("VETH")
    prog = tmp_path / "dump.py"
    prog.write_text(_DUMP)
    script = tmp_path / "s.sh"
    script.write_text(
        'if [ -n "$REAL" ]; then unshare -n sleep 5 >/dev/null 2>&1 &\n'
        f'else {sys.executable} -m xfrmd.cli ctl netns add b\n'     # a HELLO cannot make it
        'XFRMD_NETNS=b ip monitor link > /dev/null 2>&1 & fi\n'
        "M=$!; sleep 1\n"
        "ip link add v0 type veth peer name v1 netns $M && ip link set v0 mtu 1400 && "
        f"{sys.executable} {prog}\nkill $M\n")
    res = []
    for real in (True, False):
        import os
        env = dict(os.environ, REAL="1") if real else {k: v for k, v in os.environ.items()
                                                      if k != "REAL"}
        cmd = (["unshare", "-n", "sh", str(script)] if real else
               XFRMD + ["run", "--topology", host_topology(), "--", "sh", str(script)])
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
        assert p.returncode == 0, p.stderr
        res.append(_links(json.loads(p.stdout.strip().splitlines()[-1])))
    r, e = res
    assert sorted(r) == sorted(e) == ["lo", "v0"]
    types = [t for t, _ in e["v0"][1]]
    assert 37 in types                                   # IFLA_LINK_NETNSID
    for name in r:
        assert e[name][0] == r[name][0], name
        assert [t for t, _ in e[name][1]] == [t for t, _ in r[name][1]], name
        for (t, rv), (_, ev) in zip(r[name][1], e[name][1]):
            assert ev == rv, f"{name}: attribute {t}: kernel {rv.hex()} xfrmd {ev.hex()}"
