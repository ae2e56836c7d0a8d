"""Differential: addresses with a point-to-point peer and with finite lifetimes, on a fresh
real network namespace and through `xfrmd run --topology bare` — `ip addr` / `ip route`
lines identical (devinet.c ``rtm_to_ifaddr``, ``set_ifa_lifetime``, ``find_matching_ifa``,
``fib_add_ifaddr`` for a peer; addrconf.c for IPv6); and, with both running at once, the
`ip monitor address` record of lifetimes running out (deprecated, then deleted)."""
from __future__ import annotations

import re
import subprocess

from tests.differential.kconfig_host import host_topology
from tests.differential.test_rtnl_diff import RealNetns, XFRMD, _need_tools, _norm, line_tests


CASES = [
    "ip link add v0 type veth peer name v1",
    "ip addr add 10.0.0.1 peer 10.0.1.1 dev v0",         # a /32 peer
    "ip addr add 10.0.0.1 peer 10.0.2.1 dev v0",         # another peer: not a duplicate
    "ip addr add 10.0.0.1 peer 10.0.1.1 dev v0",         # EEXIST
    "ip addr add 10.9.0.1 peer 10.0.3.1/24 dev v0",
    "ip addr add 10.9.0.2 peer 10.0.3.9/24 dev v0",      # the peer's subnet: a secondary
    "ip addr show dev v0",
    "ip link set v0 up",
    "ip route show table all",
    "ip addr del 10.0.0.1 peer 10.0.2.1 dev v0",
    "ip route show",
    "ip addr add 192.0.2.1/24 dev v0 valid_lft 100 preferred_lft 50",
    "ip addr add 192.0.2.2/24 dev v0 valid_lft 100 preferred_lft 0",   # deprecated at once
    "ip addr add 198.51.100.1/24 dev v0 valid_lft forever preferred_lft 20",
    "ip addr show dev v0",
    "ip addr change 192.0.2.1/24 dev v0 valid_lft 300 preferred_lft 300",
    "ip addr replace 192.0.2.2/24 dev v0",                # permanent again
    "ip addr change 203.0.113.1/24 dev v0 valid_lft 30",  # ENOENT-free: a new address
    "ip -4 addr show dev v0",
    "ip link set v1 down",
    "ip -6 addr add 2001:db8:1::1 peer 2001:db8:2::1/64 dev v1",
    "ip -6 addr add 2001:db8::1/64 dev v1 valid_lft 100 preferred_lft 50",
    "ip -6 addr add 2001:db8::2/64 dev v1",               # a global address goes first
    "ip -6 addr show dev v1",
    "ip -6 addr del 2001:db8:1::1 peer 2001:db8:2::1/64 dev v1",
    "ip -6 addr show dev v1",
]

outputs, test_ip_addr_line_matches_the_kernel = line_tests(CASES, "addr")


_EXPIRE = """ip link add v0 type veth peer name v1
ip monitor address > "$1" & M=$!
sleep 0.3
ip addr add 192.0.2.1/24 dev v0 valid_lft 2 preferred_lft 1
ip addr add 192.0.2.2/24 dev v0 valid_lft 2 preferred_lft 1
ip addr add 198.51.100.1/24 dev v0 valid_lft 2 preferred_lft 2
ip -6 addr add 2001:db8::1/64 dev v0 valid_lft 2 preferred_lft 1
sleep 3.6
kill $M
ip addr show dev v0
ip route show table all
"""
_LFT = re.compile(r"(valid|preferred)_lft \d+sec")


def _messages(text: str) -> list[str]:
    """The monitor's messages (a line and its continuation), lifetimes left out (the
    kernels' timers fire a fraction of a second apart), sorted: the real kernel walks its
    address hash, whose order depends on a per-namespace random seed."""
    msgs = re.split(r"\n(?=\S)", _LFT.sub(r"\1_lft N", _norm(text)).strip())
    return sorted(msgs)


def test_lifetimes_run_out_like_the_kernels(tmp_path):
    """valid_lft 2 preferred_lft 1: deprecated after a second (RTM_NEWADDR), deleted after
    two (RTM_DELADDR) — on both kernels, run side by side so the test waits only once."""
    _need_tools()
    script = tmp_path / "expire.sh"
    script.write_text(_EXPIRE)
    ns = RealNetns()
    try:
        real = subprocess.Popen(["ip", "netns", "exec", ns.name, "sh", str(script),
                                 str(tmp_path / "real.txt")], stdout=subprocess.PIPE, text=True)
        emu = subprocess.run(XFRMD + ["run", "--topology", host_topology(), "--", "sh", str(script),
                                      str(tmp_path / "emu.txt")],
                             capture_output=True, text=True, timeout=60)
        real_out, _ = real.communicate(timeout=60)
    finally:
        ns.close()
    assert _norm(emu.stdout) == _norm(real_out), emu.stderr
    assert "192.0.2.1" not in real_out and "inet6 2001:db8::1" not in real_out
    real_mon = _messages((tmp_path / "real.txt").read_text())
    emu_mon = _messages((tmp_path / "emu.txt").read_text())
    assert emu_mon == real_mon
    assert sum(m.startswith("Deleted") for m in real_mon) == 4
