"""What the replayer prints equals what real `ip` 6.1 prints for the same lines on the same
kernel: each line is run as its own `ip -netns A …` command and, in a second fresh netns B,
through `xfrmd replay --kernel`; stdout, stderr and exit status are compared line by line.
The same script then runs against xfrmd and must print what the kernel printed."""
from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys

import pytest

from .conftest import require
from .replay.forms import POLICY_FORMS, STATE_FORMS
from .replay.realip import RealNetns, have_tools

SCRIPT = [
    "xfrm policy add src 10.0.0.0/24 dst 10.0.1.0/24 dir out priority 10 "
    "tmpl src 10.1.1.1 dst 10.2.2.2 proto esp mode tunnel reqid 1",
    "xfrm policy add src 10.0.0.0/24 dst 10.0.1.0/24 dir out priority 10",
    "xfrm policy add src 10.0.0.0/24 dst 10.0.1.0/24 dir in action block mark 5 mask 0xf",
    "xfrm policy add src 2001:db8::/64 dst 2001:db8:1::/64 proto tcp sport 443 dir fwd "
    "tmpl src 2001:db8::1 dst 2001:db8:1::1 proto esp mode tunnel level use "
    "tmpl proto comp mode transport",
    "xfrm policy add src 10.0.0.1 dst 10.0.0.2 proto icmp type 8 code 0 dir out if_id 7 "
    "flag localok",
    "xfrm policy add src 10.0.0.1 dst 10.0.0.2 proto gre key 1.2.3.4 dir in ptype sub",
    "xfrm policy add dir out ctx system_u:object_r:ipsec_spd_t:s0 src 10.9.0.0/16",
    "xfrm policy add src 10.3.0.0/16 dst 0.0.0.0/0 dev lo dir out index 0x111",
    "xfrm policy list",
    "xfrm policy list dir in",
    "xfrm policy list src 10.0.0.0/24 nosock",
    "xfrm policy get src 10.0.0.0/24 dst 10.0.1.0/24 dir out",
    "xfrm policy get src 10.0.0.0/24 dst 10.0.1.0/24 dir in",
    "xfrm policy get src 10.0.0.0/24 dst 10.0.1.0/24 dir in mark 5 mask 0xf",
    "xfrm policy get index 0x111 dir out",
    "xfrm policy get src 10.7.0.0/24 dst 10.0.1.0/24 dir out",
    "-s xfrm policy count",
    "xfrm policy count",
    "xfrm policy update src 10.0.0.0/24 dst 10.0.1.0/24 dir out priority 3",
    "xfrm policy update src 10.8.0.0/24 dst 10.0.1.0/24 dir out priority 3",
    "-s xfrm policy list dir out",
    "-o xfrm policy list",
    "xfrm policy delete src 10.0.0.0/24 dst 10.0.1.0/24 dir out",
    "xfrm policy delete src 10.0.0.0/24 dst 10.0.1.0/24 dir out",
    "xfrm policy deleteall dir in",
    "xfrm policy list",
    "xfrm policy set hthresh4 24 16",
    "-s -s xfrm policy count",
    "xfrm policy setdefault out block",
    "xfrm policy getdefault",
    "xfrm policy setdefault out accept",
    "xfrm policy flush ptype sub",
    "xfrm policy flush",
    "xfrm policy list",
    "xfrm state list",
    "xfrm state count",
    "xfrm state get src 10.0.0.1 dst 10.0.0.2 proto esp spi 0x1000",
    "xfrm state delete src 10.0.0.1 dst 10.0.0.2 proto esp spi 0x1000",
    "xfrm state allocspi src 10.0.0.1 dst 10.0.0.2 proto esp",
    "xfrm state flush",
] + [f for f in STATE_FORMS if " add " in f or " update " in f] + [
    f for f in POLICY_FORMS if " add " in f][:6] + ["xfrm policy flush"]

_TIME = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")


_SPI = re.compile(r"spi 0x[0-9a-f]{8}")


def _norm(text: str, line: str = "") -> str:
    """Times differ between runs, and so does the SPI ALLOCSPI picks at random."""
    text = _TIME.sub("TIME", text)
    return _SPI.sub("spi RANDOM", text) if "allocspi" in line else text


def _replay_json(ns: RealNetns, args: list[str], script: str) -> list[dict]:
    p = ns.run_in([sys.executable, "-m", "xfrmd.cli", "replay", "--json"] + args + ["-"],
                  input=script)
    assert p.stdout, p.stderr
    return json.loads(p.stdout)


@pytest.fixture(scope="module")
def real_results():
    require(have_tools(), "needs root and ip")
    ns = RealNetns()
    try:
        out = []
        for line in SCRIPT:
            words = shlex.split(line)
            opts = [w for w in words if w.startswith("-")]
            rest = [w for w in words if not w.startswith("-")]
            _, o, e, rc = ns.ip(" ".join(opts + [shlex.join(rest)]))
            out.append((o, e, rc))
        yield out
    finally:
        ns.close()


def _script_text() -> str:
    return "\n".join(SCRIPT) + "\n"


def test_kernel_mode_prints_what_ip_prints(real_results):
    ns = RealNetns()
    try:
        got = _replay_json(ns, ["--kernel"], _script_text())
    finally:
        ns.close()
    assert len(got) == len(SCRIPT)
    for line, r, (o, e, rc) in zip(SCRIPT, got, real_results):
        assert (_norm(r["stdout"], line), r["stderr"], r["status"]) == \
            (_norm(o, line), e, rc), line
