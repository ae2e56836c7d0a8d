"""``xfrmd ctl`` is a short-lived client that scenario scripts call dozens of times
(tests/test_lag_scenarios_cli.py): a call imports the verb modules (xfrmd/ctl/) and the
service client, never trio, the netlink codec or the kernel model, and its help texts are
those it printed before the verbs moved there (tests/vectors/ctl_help.txt)."""
from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys

from xfrmd.cli import main
from xfrmd.ctl import VERBS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GOLDEN = os.path.join(ROOT, "tests", "vectors", "ctl_help.txt")

# One verb of each verb module, against the default topology (bond0, eth0, nsim0, soe0…).
CALLS = [["ping"], ["netns", "list"], ["kconfig", "show", "XFRM_OFFLOAD"],
         ["show-offload", "eth0", "--json"], ["lag-model", "bond0", "off", "--json"],
         ["link", "soe0", "carrier", "on"], ["genetlink", "on"], ["crypto-alg", "on", "rfc4106(gcm(aes))"],
         ["xmit", "10.0.0.1", "10.1.0.1", "proto", "udp", "dport", "2000", "--json"]]
# what a ctl call must not load: the kernel model, the subsystems' packages, trio, the codec,
# logging (a ctl call logs nothing; the server's xfrmd.stats loads it)
HEAVY = ("xfrmd.kernel", "xfrmd.rtnl", "xfrmd.xfrm", "xfrmd.genl", "xfrmd.datapath", "bonding",
         "devices.netdev", "trio", "netlink_codec", "logging")

_PROBE = """
import json, sys
from xfrmd.cli import main
rcs = [main(["ctl", "--socket", sys.argv[1]] + json.loads(a)) for a in sys.argv[2:]]
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("trio", "netlink_codec", "bonding",
                                                              "logging")
               or m.startswith(("xfrmd.kernel", "xfrmd.rtnl", "xfrmd.xfrm", "xfrmd.genl",
                                "xfrmd.datapath", "devices.netdev")))
print(json.dumps({"rcs": rcs, "heavy": heavy}))
"""


def help_texts() -> str:
    """What ``xfrmd ctl --help``, ``xfrmd ctl help`` and each verb's ``--help`` print."""
    out = []
    calls = [["ctl", "--help"], ["ctl", "help"], ["ctl"], ["ctl", "nosuch", "--help"]]
    for argv in calls + [["ctl", v, "--help"] for v in sorted(VERBS)]:
        so, se = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(so), contextlib.redirect_stderr(se):
            try:
                rc = main(argv)
            except SystemExit as e:
                rc = e.code
        out.append(f"$ {argv}\n{rc}\n{so.getvalue()}{se.getvalue()}")
    return "".join(out)


def test_ctl_help_texts_are_unchanged():
    with open(GOLDEN) as f:
        assert help_texts() == f.read()


def test_a_ctl_call_loads_no_kernel_model_trio_or_codec(xfrmd_server):
    p = subprocess.run([sys.executable, "-c", _PROBE, xfrmd_server.path]
                       + [json.dumps(c) for c in CALLS],
                       capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert p.returncode == 0, p.stderr
    got = json.loads(p.stdout.splitlines()[-1])
    assert got["rcs"] == [0] * len(CALLS), (p.stdout, p.stderr)
    assert got["heavy"] == []
    # the answers came from the server: the bond's model and the packet's verdict
    assert '"lag_model": "off"' in p.stdout or '"model": "off"' in p.stdout, p.stdout


def test_every_verb_module_is_in_the_probe():
    mods = {VERBS[c[0]][0].__module__ for c in CALLS if c[0] in VERBS}
    assert mods == {f.__module__ for f, _ in VERBS.values()}
