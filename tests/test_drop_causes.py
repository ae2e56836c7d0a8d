"""A drop in the data path names its cause in words a user can act on (issue 21, deliver 5):
packet-offloaded SAs and software policies do not mix, and the drop says so."""
from __future__ import annotations

import subprocess

import pytest

from .conftest import XFRMD, require_shim

SA = ("xfrm state add src 203.0.113.129 dst 203.0.113.130 proto esp spi 0x201 reqid 2 "
      "mode tunnel aead 'rfc4106(gcm(aes))' 0x" + "11" * 20 + " 128{sa_off}\n")
POL = ("xfrm policy add src 203.0.113.129/32 dst 203.0.113.131/32 dir out tmpl "
       "src 203.0.113.129 dst 203.0.113.130 proto esp reqid 2 mode tunnel{pol_off}\n")
PACKET = " offload packet dev soe2 dir out"


@pytest.mark.parametrize("sa_off, pol_off, why", [
    (PACKET, "", "SA 0x201 is packet-offloaded on soe2, but the matching policy is a software "
                 "policy: the kernel only uses packet-offloaded SAs through packet-offloaded "
                 "policies (add the policy with `offload packet dev soe2`)"),
    ("", " offload packet dev soe2", "the matching policy is packet-offloaded on soe2, but SA 0x201 is not: a "
                 "packet-offloaded policy only uses SAs packet-offloaded on its device"),
])
def test_an_offload_mismatch_drop_says_why(tmp_path, sa_off, pol_off, why):
    require_shim("sh")
    script = tmp_path / "s.ip"
    script.write_text(SA.format(sa_off=sa_off) + POL.format(pol_off=pol_off))
    xfrmd = " ".join(XFRMD)
    p = subprocess.run(XFRMD + ["run", "--", "sh", "-c",
                                f"{xfrmd} replay {script} && "
                                f"{xfrmd} ctl xmit 203.0.113.129 203.0.113.131"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert f"no usable SA for reqid 2: {why}" in p.stdout, p.stdout
    assert p.stdout.rstrip().endswith("sent 0 dropped 1")


def test_xfrm_stat_nonzero_shows_the_counters_that_moved(tmp_path):
    require_shim("sh")
    script = tmp_path / "s.ip"
    script.write_text(SA.format(sa_off=PACKET) + POL.format(pol_off=""))
    xfrmd = " ".join(XFRMD)
    p = subprocess.run(XFRMD + ["run", "--", "sh", "-c",
                                f"{xfrmd} ctl xfrm-stat --nonzero; echo --; {xfrmd} replay "
                                f"{script} && {xfrmd} ctl xmit 203.0.113.129 203.0.113.131 "
                                f">/dev/null && {xfrmd} ctl xfrm-stat --nonzero"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    before, after = p.stdout.split("--\n")
    assert before == ""                                 # nothing moved yet
    assert [ln.split() for ln in after.splitlines()] == [["XfrmOutPolError", "1"]]
