"""A drop in the data path names its cause in words a user can act on:
packet-offloaded SAs and software policies do not mix, and the drop says so; the counters
that moved are shown alone. Run in-process (the CLI's own functions, one server thread)."""
from __future__ import annotations

import pytest

from xfrmd.cli import main as xfrmd

SA = ("xfrm state add src 203.0.113.129 dst 203.0.113.130 proto esp spi 0x201 reqid 2 "
      "mode tunnel aead 'rfc4106(gcm(aes))' 0x" + "11" * 20 + " 128{sa_off}\n")
POL = ("xfrm policy add src 203.0.113.129/32 dst 203.0.113.131/32 dir out tmpl "
       "src 203.0.113.129 dst 203.0.113.130 proto esp reqid 2 mode tunnel{pol_off}\n")
SA_PACKET = " offload packet dev soe2 dir out"
POL_PACKET = " offload packet dev soe2"


def _setup(server, tmp_path, capsys, sa_off, pol_off):
    script = tmp_path / "s.ip"
    script.write_text(SA.format(sa_off=sa_off) + POL.format(pol_off=pol_off))
    assert xfrmd(["replay", str(script), "--socket", server.path]) == 0
    capsys.readouterr()


def _ctl(server, capsys, *verb) -> str:
    assert xfrmd(["ctl", "--socket", server.path, "--netns", "default", *verb]) == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("sa_off, pol_off, why", [
    (SA_PACKET, "", "SA 0x201 is packet-offloaded on soe2, but the matching policy is a "
                    "software policy: the kernel only uses packet-offloaded SAs through "
                    "packet-offloaded policies (add the policy with `offload packet dev soe2`)"),
    ("", POL_PACKET, "the matching policy is packet-offloaded on soe2, but SA 0x201 is not: a "
                     "packet-offloaded policy only uses SAs packet-offloaded on its device"),
], ids=["packet-SA-software-policy", "packet-policy-software-SA"])
def test_an_offload_mismatch_drop_says_why(xfrmd_server, tmp_path, capsys, sa_off, pol_off, why):
    _setup(xfrmd_server, tmp_path, capsys, sa_off, pol_off)
    out = _ctl(xfrmd_server, capsys, "xmit", "203.0.113.129", "203.0.113.131")
    assert f"no usable SA for reqid 2: {why}" in out, out
    assert out.rstrip().endswith("sent 0 dropped 1")


def test_xfrm_stat_nonzero_shows_the_counters_that_moved(xfrmd_server, tmp_path, capsys):
    assert _ctl(xfrmd_server, capsys, "xfrm-stat", "--nonzero") == ""
    assert len(_ctl(xfrmd_server, capsys, "xfrm-stat").splitlines()) > 20
    _setup(xfrmd_server, tmp_path, capsys, SA_PACKET, "")
    _ctl(xfrmd_server, capsys, "xmit", "203.0.113.129", "203.0.113.131")
    out = _ctl(xfrmd_server, capsys, "xfrm-stat", "--nonzero")
    assert [ln.split() for ln in out.splitlines()] == [["XfrmOutPolError", "1"]]
