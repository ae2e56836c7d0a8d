"""Differential: the same `ip link/addr/route` lines on a fresh real network namespace and
through `xfrmd run` of `bare` built like the running kernel (tests/differential/kconfig_host.py)
— stdout, stderr and exit status must be identical, with MAC addresses normalised (both
kernels pick random ones). The lines run in order in one namespace, so later lines see what
earlier ones left behind (ifindexes must match too). The link kinds the running kernel may
lack (dummy, bond, netdevsim) come last: both kernels make them or refuse them alike.

A second test compares the raw RTM_NEWLINK attributes (types, order, and the values that are
not random) of a dump on both kernels. tests/test_rtnl.py covers bonding and dummy against
the kernel source too."""
from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
import sys
import uuid

import pytest

from tests.differential.kconfig_host import host_topology, needs_kernel

XFRMD = [sys.executable, "-m", "xfrmd.cli"]

CASES = [
    "ip link show",
    "ip -d link show lo",
    "ip link add v0 type veth peer name v1",
    "ip -d link show",
    "ip link add v0 type veth",                        # duplicate name: EEXIST, no extack
    "ip link add v2 type veth peer name v1",           # duplicate peer name
    "ip link add x0 type nosuchkind",                  # unknown kind
    "ip link show dev v0",
    "ip link set v0 mtu 70000",                        # above max_mtu
    "ip link set v0 mtu 60",                           # below min_mtu
    "ip link set v0 mtu 9000",
    "ip link show v0",
    "ip link set v0 address 00:11:22:33:44:55",
    "ip link set v0 address 01:11:22:33:44:55",        # multicast: EADDRNOTAVAIL
    "ip link show v0",
    "ip link set v0 name w0",
    "ip link show w0",
    "ip link set nosuch up",
    "ip link del nosuch",
    "ip link del lo",                                  # no rtnl_link_ops: EOPNOTSUPP
    "ip link add br0 type bridge",
    "ip -d link show br0",
    "ip link set w0 master br0",
    "ip link show w0",
    "ip link show br0",
    "ip link set w0 nomaster",
    "ip link show",
    "ip link set w0 up",
    "ip link show w0",
    "ip link set w0 name v1",                          # rename onto an existing name: EEXIST
    "ip link set w0 name w1",                          # live rename is allowed (6.x)
    "ip link set w1 name w0",
    "ip link set w0 down",
    "ip link set lo up",
    "ip addr show",
    "ip addr add 192.0.2.1/24 dev w0",
    "ip addr add 192.0.2.1/24 dev w0",                 # EEXIST
    "ip addr add 198.51.100.1/24 brd + dev w0",
    "ip -6 addr add 2001:db8::1/64 dev w0",
    "ip addr show dev w0",
    "ip -4 addr show",
    "ip addr del 198.51.100.1/24 dev w0",
    "ip addr del 203.0.113.9/24 dev w0",               # not there: EADDRNOTAVAIL
    "ip addr add 192.0.2.9/24 dev nosuch",
    "ip addr show dev w0",
    "ip route show",
    "ip route get 192.0.2.7",                          # w0 is down: no route
    "ip -6 addr add 2001:db8::1/64 dev w0",            # EEXIST with the ipv6 text
    "ip -6 addr del 2001:db8::2/64 dev w0",
    "ip link add v3 type veth peer name v4",
    "ip link set v3 up",
    "ip -o link show",
    "ip link del v4",                                  # takes its peer v3 along
    "ip link show",
    "ip link del w0",
    "ip addr show",
    "ip link del br0",
    "ip link add name v5 type veth peer name v6",      # ifindexes keep counting up
    "ip -br link show",
    "ip link show",
    "ip link add d0 type dummy",                       # CONFIG_DUMMY or "Unknown device type"
    "ip link del d0",
    "ip link add b0 type bond",                        # CONFIG_BONDING
    "ip link del b0",
    "ip link add n0 type netdevsim",                   # nsim_validate, or no such kind
]
assert len(CASES) >= 40

_MAC = re.compile(r"\b(?!(?:ff:){5}ff\b)(?!(?:00:){5}00\b)[0-9a-f]{2}(?::[0-9a-f]{2}){5}\b")
_BRID = re.compile(r"8000\.[0-9a-f:]+")


def _norm(text: str) -> str:
    return _BRID.sub("8000.BRID", _MAC.sub("MAC", text))


def _need_tools():
    ok = shutil.which("ip") and os.geteuid() == 0 and (shutil.which("gcc") or shutil.which("cc"))
    if not ok:
        if os.environ.get("CI"):
            pytest.fail("the rtnl differential needs root, ip and a C compiler under CI")
        pytest.skip("needs root, ip and a C compiler")


# The real kernel applies a carrier change in two steps: the carrier bit (LOWER_UP,
# NO-CARRIER) at once, then linkwatch (net/core/link_watch.c, linkwatch_do_dev) from a
# workqueue — the operstate (rfc2863_policy) and, in the same rtnl section, NETDEV_CHANGE:
# the routes' linkdown flag (fib_sync_down_dev, fib_sync_up, rt6_sync_down_dev) and the
# RTM_NEWLINK a monitor prints. Under load that work comes late, after the next line has
# already read the state (link and route dumps take no lock, only RCU); xfrmd does both
# steps at once. `settle [prefix...]` waits, on the real side only (XFRMD_DIFF_REAL set),
# until no up device shows a carrier its operstate has not caught up with, then until the
# rtnl section that wrote the operstate has ended: linkwatch has nothing left to do. After
# 10 s it says so on stderr (which the comparisons then show). Its argument runs `ip` and
# `ethtool` elsewhere (e.g. `nsenter -t PID -n`). Its own ip's stderr is dropped: printing
# a link-netnsid, ip looks up the names in /run/netns, where another process's `ip netns
# add` may have left a file not yet mounted ("Peer netns reference is invalid", from
# rtnl_net_getid).
SETTLE_SH = r'''
settle() {
  [ -n "$XFRMD_DIFF_REAL" ] || return 0
  _settle_n=0
  while :; do
    _settle_p=$("$@" ip -o link show 2>/dev/null | awk '{
        f = $0; sub(/^[^<]*</, "", f); sub(/>.*/, "", f); n = split(f, a, ",")
        up = 0; lower = 0
        for (i = 1; i <= n; i++) {
          if (a[i] == "UP") up = 1; else if (a[i] == "LOWER_UP") lower = 1
        }
        # LOWER_UP is the carrier; NO-CARRIER, as ip prints it, is !IFF_RUNNING (operstate)
        st = ""; for (i = 1; i < NF; i++) if ($i == "state") st = $(i + 1)
        if (up && lower && (st == "DOWN" || st == "LOWERLAYERDOWN")) print $2, st
        if (up && !lower && (st == "UP" || st == "UNKNOWN")) print $2, st
      }')
    if [ -z "$_settle_p" ]; then
      # the operstate is written first; the rest of linkwatch_do_dev (dev_deactivate's
      # synchronize_net, NETDEV_CHANGE) follows under rtnl_lock, which ethtool's netlink
      # request takes too (ethnl_default_doit): when it answers, linkwatch is done
      "$@" ethtool lo >/dev/null 2>&1
      return 0
    fi
    _settle_n=$((_settle_n + 1))
    if [ $_settle_n -ge 200 ]; then
      echo "settle: linkwatch left pending after 10 s: $_settle_p" >&2; return 0
    fi
    sleep 0.05
  done
}
'''


class RealNetns:
    def __init__(self):
        self.name = f"xfrmd-rtnl-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        subprocess.run(["ip", "netns", "add", self.name], check=True)

    def run(self, argv, **kw):
        """argv in the namespace; XFRMD_DIFF_REAL tells SETTLE_SH it is the real kernel."""
        kw.setdefault("env", dict(os.environ, XFRMD_DIFF_REAL="1"))
        return subprocess.run(["ip", "netns", "exec", self.name] + argv, capture_output=True,
                              text=True, timeout=120, **kw)

    def close(self):
        subprocess.run(["ip", "netns", "del", self.name], check=False)


def _script(tmp_path, cases) -> str:
    """Each case, then its status; on the real kernel linkwatch settles before the next."""
    path = tmp_path / "cases.sh"
    path.write_text(SETTLE_SH + "".join(f"{c}; echo \"== $?\"; settle; echo '==' >&2\n"
                                        for c in cases))
    return str(path)


def _split(p):
    return p.stdout.split("== "), p.stderr.split("==\n")


def run_in_both(argv):
    """argv on a fresh real netns and through `xfrmd run` of `bare` built like the running
    kernel: (real, emu) CompletedProcess, text mode."""
    topology = host_topology()
    ns = RealNetns()
    try:
        real = ns.run(argv)
    finally:
        ns.close()
    emu = subprocess.run(XFRMD + ["run", "--topology", topology, "--"] + argv,
                         capture_output=True, text=True, timeout=120)
    return real, emu


def run_client_in_both(tmp_path, client: str, *args: str):
    """The python program ``client`` (it prints JSON) with ``args`` in both (see
    :func:`run_in_both`), where it must exit 0: (the kernel's JSON, xfrmd's JSON, xfrmd's
    CompletedProcess)."""
    _need_tools()
    prog = tmp_path / "client.py"
    prog.write_text(client)
    real, emu = run_in_both([sys.executable, str(prog), *args])
    assert real.returncode == 0, real.stderr
    assert emu.returncode == 0, emu.stderr
    return json.loads(real.stdout), json.loads(emu.stdout), emu


def run_both(tmp_path_factory, cases, name: str):
    """The lines as one script on a fresh real netns and through `xfrmd run` (`bare`, the running kernel's options);
    (stdout chunks, stderr chunks) of each, split per line."""
    _need_tools()
    script = _script(tmp_path_factory.mktemp(name), cases)
    real, emu = run_in_both(["sh", script])
    return _split(real), _split(emu)


def outputs_fixture(cases, name: str):
    """A module-scoped fixture holding run_both's outputs for cases."""
    def outputs(tmp_path_factory):
        return run_both(tmp_path_factory, cases, name)
    return pytest.fixture(scope="module")(outputs)


def line_ids(cases) -> list[str]:
    return [f"{i:02d}" for i in range(len(cases))]


def check_line(outputs, cases, i, norm=_norm) -> None:
    """Line i's stdout (normalised by norm: MACs), stderr and exit status are the kernel's."""
    (rout, rerr), (eout, eerr) = outputs
    assert len(rout) == len(cases) + 1 and len(eout) == len(cases) + 1, eerr
    # stdout chunk i ends with "<status>\n" of line i-1 then line i's output
    real = norm(rout[i].split("\n", 1)[-1] if i else rout[0]) + rout[i + 1].split("\n", 1)[0]
    emu = norm(eout[i].split("\n", 1)[-1] if i else eout[0]) + eout[i + 1].split("\n", 1)[0]
    assert emu == real, f"{cases[i]!r}\n--- kernel\n{real}\n--- xfrmd\n{emu}"
    assert eerr[i] == rerr[i], f"{cases[i]!r}: stderr"


def line_tests(cases, name: str, norm=_norm):
    """``outputs, test_x_line_matches_the_kernel = line_tests(CASES, "x")``: the module's
    ``outputs`` fixture (:func:`outputs_fixture`) and the test, one per line of ``cases``,
    that checks that line against the kernel (:func:`check_line`)."""
    outputs = outputs_fixture(cases, name)

    @pytest.mark.parametrize("i", range(len(cases)), ids=line_ids(cases))
    def test_line(outputs, i):
        check_line(outputs, cases, i, norm=norm)
    return outputs, test_line


def run_probe_both(tmp_path, setup: str, probe: str, args: str = ""):
    """The shell text setup, then the python program probe (with args), as one script on a
    fresh real netns and through `xfrmd run` (`bare`, the running kernel's options): (real, emu) CompletedProcess."""
    _need_tools()
    py = tmp_path / "probe.py"
    py.write_text(probe)
    script = tmp_path / "s.sh"
    script.write_text(SETTLE_SH + setup + "\nsettle\n"
                      + f"{sys.executable} {py} {args}".rstrip() + "\n")
    return run_in_both(["sh", str(script)])


# the monitor's output file ($1) has not grown for 0.2 s (at most 5 s): xfrmd's messages
# reach an emulated monitor through the server, a moment after the command that caused them
DRAIN_SH = r'''
drain() {
  _drain_n=0; _drain_q=0; _drain_s=-1
  while [ $_drain_q -lt 4 ] && [ $_drain_n -lt 100 ]; do
    _drain_c=$(wc -c < "$1")
    if [ "$_drain_c" = "$_drain_s" ]; then _drain_q=$((_drain_q + 1))
    else _drain_q=0; _drain_s=$_drain_c; fi
    _drain_n=$((_drain_n + 1)); sleep 0.05
  done
}
'''


def run_monitor_both(tmp_path, monitor: str, lines) -> tuple[str, str]:
    """monitor (e.g. `ip monitor route`) in the background while the shell lines run, on a
    fresh real netns and through `xfrmd run` (`bare`, the running kernel's options): what it
    printed, (real, emu). The monitor is stopped once its output stopped growing (DRAIN_SH),
    so the lines need no trailing sleep for the last message to arrive."""
    _need_tools()
    script = tmp_path / "mon.sh"
    script.write_text(SETTLE_SH + DRAIN_SH + f"{monitor} > \"$1\" & M=$!; sleep 0.3\n"
                      + "".join(f"{ln}\nsettle\n" for ln in lines)
                      + "drain \"$1\"; kill $M; wait $M 2>/dev/null; true\n")
    real_out, emu_out = tmp_path / "real.txt", tmp_path / "emu.txt"
    ns = RealNetns()
    try:
        ns.run(["sh", str(script), str(real_out)])
    finally:
        ns.close()
    subprocess.run(XFRMD + ["run", "--topology", host_topology(), "--", "sh", str(script),
                            str(emu_out)],
                   capture_output=True, text=True, timeout=120)
    return real_out.read_text(), emu_out.read_text()


outputs, test_ip_line_matches_the_kernel = line_tests(CASES, "rtnl")


# ---------------------------------------------------------------------------------------
# raw attributes of a link dump

# a python probe's helper: the payloads (after the nlmsghdr) of a dump's answers, in hex
NL_DUMP = r'''
import socket, struct, json
def nl_dump(s, msg):
    s.send(msg)
    out = []
    while True:
        d = s.recv(65536); off = 0
        while off < len(d):
            L, T = struct.unpack_from("=IH", d, off)
            if T in (2, 3):
                return out
            out.append(d[off + 16:off + L].hex()); off += L
'''

_DUMP = NL_DUMP + r'''
s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)
s.bind((0, 0))
body = struct.pack("=BxHiII", 17, 0, 0, 0, 0) + struct.pack("=HHI", 8, 29, 1)
print(json.dumps(nl_dump(s, struct.pack("=IHHII", 16 + len(body), 18, 0x301, 1, 0) + body)))
'''


def _attrs(buf: bytes, off: int, end: int) -> list:
    out = []
    while off + 4 <= end:
        ln, t = struct.unpack_from("=HH", buf, off)
        out.append((t, buf[off + 4:off + ln]))
        off += (ln + 3) & ~3
    return out


# values that differ between any two kernels (random MACs; AF_INET6 cacheinfo timestamps)
_VOLATILE = {1, 26}


def _links(hexes) -> dict:
    res = {}
    for h in hexes:
        b = bytes.fromhex(h)
        hdr = struct.unpack_from("=BxHiII", b, 0)
        attrs = _attrs(b, 16, len(b))
        name = dict(attrs)[3].rstrip(b"\0").decode()
        res[name] = (hdr, [(t, None if t in _VOLATILE else v) for t, v in attrs])
    return res


def test_link_dump_attributes_match_the_kernel(tmp_path):
    needs_kernel("VETH", "BRIDGE")
    setup = ("ip link add v0 type veth peer name v1 && ip link add br0 type bridge && "
             "ip link set lo up && ip link set v0 mtu 1400 && ip link set v1 up && ")
    real, emu = run_probe_both(tmp_path, setup, _DUMP)
    assert real.returncode == 0 and emu.returncode == 0, (real.stderr, emu.stderr)
    r, e = _links(json.loads(real.stdout)), _links(json.loads(emu.stdout))
    assert sorted(r) == sorted(e)
    for name in r:
        assert e[name][0] == r[name][0], name
        assert [t for t, _ in e[name][1]] == [t for t, _ in r[name][1]], name
        for (t, rv), (_, ev) in zip(r[name][1], e[name][1]):
            assert ev == rv, f"{name}: attribute {t}: kernel {rv.hex()} xfrmd {ev.hex()}"
