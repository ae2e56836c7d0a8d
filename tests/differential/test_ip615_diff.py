"""The replayer against its oracle, the real `ip` 6.15: every line of
tests/replay/ip615_offload.ip (SA and policy add/update/list/get/delete/deleteall/flush/count
with crypto and packet offload, SA `dir`, allocspi, parse errors and kernel refusals) runs as
its own `ip` command inside the trixie-strongswan userland against xfrmd, and through
`xfrmd replay --iproute2 6.15` against another xfrmd with the same topology. stdout, stderr
and exit status of every line must be identical, and so must every NETLINK_XFRM request
(bytes, sequence number and port id aside)."""
from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys

import pytest

from xfrmd.replay.runner import read_script

from tests.conftest import XFRMD, require_userland

pytestmark = pytest.mark.userland

SCRIPT = os.path.join(os.path.dirname(os.path.dirname(__file__)), "replay",
                      "ip615_offload.ip")
_TIME = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")
_SPI = re.compile(r"spi 0x[0-9a-f]{8}")


def _norm(text: str, command: str) -> str:
    """Add times differ between the runs, and so does the SPI ALLOCSPI picks at random."""
    text = _TIME.sub("TIME", text)
    return _SPI.sub("spi RANDOM", text) if "allocspi" in command else text


def _requests(trace: str) -> list[bytes]:
    out = []
    with open(trace) as f:
        for line in f:
            rec = json.loads(line)
            if rec["dir"] == "tx" and rec["proto"] == 6:       # NETLINK_XFRM, client → kernel
                data = bytearray.fromhex(rec["data"])
                data[8:16] = bytes(8)                           # seq (ip: the time) and pid
                out.append(bytes(data))
    return out


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    require_userland("trixie-strongswan")
    tmp = tmp_path_factory.mktemp("ip615")
    commands = [words for _, words, _ in read_script(open(SCRIPT).read())]
    assert len(commands) >= 60
    # real ip 6.15: one shell inside the userland runs each line as its own ip process
    lines = []
    for i, words in enumerate(commands):
        opts = [w for w in words[:3] if w.startswith("-")]
        lines.append(f"ip {' '.join(opts)} {shlex.join(words[len(opts):])} "
                     f">{tmp}/{i}.out 2>{tmp}/{i}.err; echo $? >{tmp}/{i}.rc")
    (tmp / "run.sh").write_text("\n".join(lines) + "\n")
    subprocess.run(XFRMD + ["run", "--trace", str(tmp / "ip.trace"), "--userland",
                            "trixie-strongswan", "--", "sh", str(tmp / "run.sh")],
                   timeout=120, capture_output=True)
    real = [((tmp / f"{i}.out").read_text(), (tmp / f"{i}.err").read_text(),
             int((tmp / f"{i}.rc").read_text())) for i in range(len(commands))]
    p = subprocess.run(XFRMD + ["run", "--trace", str(tmp / "replay.trace"), "--"] + XFRMD
                       + ["replay", "--iproute2", "6.15", "--json", SCRIPT],
                       capture_output=True, text=True, timeout=120)
    replayed = json.loads(p.stdout)
    return commands, real, replayed, tmp


def test_every_line_prints_what_ip_6_15_prints(both):
    commands, real, replayed, _ = both
    assert len(replayed) == len(real)
    for words, (out, err, rc), r in zip(commands, real, replayed):
        cmd = " ".join(words)
        assert (_norm(r["stdout"], cmd), r["stderr"], r["status"]) == \
            (_norm(out, cmd), err, rc), cmd
    # the script exercises what it claims to
    text = "".join(o for o, _, _ in real)
    assert "crypto offload parameters: dev eth2 dir out mode packet" in text
    assert "crypto offload parameters: dev nsim0 dir in mode crypto" in text
    assert "crypto offload parameters: dev eth2 mode packet" in text      # a policy
    errors = "".join(e for _, e, _ in real)
    for msg in ('Error: argument "nosuchdev" is wrong: Invalid device name',
                'Error: argument "sideways" is wrong: DIR value is not "in" or "out"',
                'Error: argument "reqid" is wrong: Missing DIR keyword',
                'Error: argument "crypto" is wrong: Invalid offload mode',
                'Error: argument "pcpu-num" is wrong: unknown',
                "Error: netdevsim: Unsupported ipsec offload type.",
                "RTNETLINK answers: File exists"):
        assert msg in errors


def test_every_request_is_the_one_ip_6_15_sends(both):
    _, _, _, tmp = both
    real, replayed = _requests(tmp / "ip.trace"), _requests(tmp / "replay.trace")
    assert len(real) > 40
    assert [r.hex() for r in replayed] == [r.hex() for r in real]
