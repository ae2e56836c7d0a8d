"""libreswan pluto 4.10 (extracted .deb) ↔ pluto, and strongSwan charon ↔ pluto, unmodified,
through the shim and xfrmd."""
from __future__ import annotations

import glob
import os
import signal
import subprocess

import pytest

from xfrmd.xfrm.sadb import sad

from .ike_helpers import Pair, charon5, pluto4, require_charon, require_pluto, require_root
from .ike_helpers import spis as _spis
from .ike_helpers import wait as _wait


def _require(need_charon=False):
    require_root()
    require_pluto()
    if need_charon:
        require_charon()


@pytest.mark.parametrize("conn_type", ["tunnel", "transport"])
def test_pluto_pair_installs_child_sa_in_xfrmd(tmp_path, conn_type):
    _require()
    make = pluto4(type=conn_type)
    with Pair(tmp_path, make, make) as p:
        kp, left = p.kp, p.left
        r = left.initiate()
        assert "initiator established Child SA" in r.stdout, r.stdout
        assert ("IPsec tunnel" if conn_type == "tunnel" else "IPsec transport") in r.stdout
        sl, sr = kp.sad("left"), kp.sad("right")
        assert len(sl) == 2 and _spis(sl) == _spis(sr)
        assert sorted(s["algs"]["enc"] for s in sl) == sorted(s["algs"]["enc"] for s in sr)
        assert {s["mode"] for s in sl} == {1 if conn_type == "tunnel" else 0}
        # pluto's policies for the pair (out, in, and fwd in tunnel mode) besides its
        # ICMPv6 neighbour-discovery holes
        mine = [p for p in kp.spd("left") if p["src"].startswith("192.0.2.")]
        assert sorted(p["dir"] for p in mine) == ([0, 1, 2] if conn_type == "tunnel" else [0, 1])


def test_charon_initiates_to_pluto(tmp_path):
    _require(need_charon=True)
    with Pair(tmp_path, charon5(), pluto4()) as p:
        kp, left = p.kp, p.left
        r = left.initiate()
        assert "initiate completed successfully" in r.stdout, r.stdout
        assert _spis(kp.sad("left")) == _spis(kp.sad("right"))
        assert len(kp.sad("left")) == 2


def test_pluto_initiates_to_charon(tmp_path):
    _require(need_charon=True)
    with Pair(tmp_path, pluto4(), charon5()) as p:
        kp, left = p.kp, p.left
        r = left.initiate()
        assert "initiator established Child SA" in r.stdout, r.stdout
        assert _wait(lambda: len(kp.sad("right")) == 2)
        assert _spis(kp.sad("left")) == _spis(kp.sad("right"))


def test_pluto_restart_after_a_crash_finds_the_old_state(tmp_path):
    """pluto 4.10 killed with SIGKILL and started again does not flush what it left in the
    kernel either: the emulated kernel keeps the old SAs and policies, as Linux does; a new
    initiate installs a second pair of SAs beside the stale ones and replaces its policies
    (still one set)."""
    _require()
    make = pluto4(type="tunnel")
    with Pair(tmp_path, make, make) as p:
        kp, left = p.kp, p.left
        assert "initiator established Child SA" in left.initiate().stdout
        mine = lambda: sorted(p["dir"] for p in kp.spd("left") if p["src"].startswith("192.0.2."))
        old = _spis(kp.sad("left"))
        assert len(old) == 2 and mine() == [0, 1, 2]
        spd_size = len(kp.spd("left"))
        left.proc.send_signal(signal.SIGKILL)
        left.proc.wait(10)
        for f in glob.glob(os.path.join(left.run, "*")):      # pid file and control socket
            os.unlink(f)
        left.start()
        assert _spis(kp.sad("left")) == old and len(kp.spd("left")) == spd_size
        assert "initiator established Child SA" in left.initiate().stdout
        assert _wait(lambda: len(kp.sad("left")) == 4)
        assert set(old) <= set(_spis(kp.sad("left")))
        assert mine() == [0, 1, 2] and len(kp.spd("left")) == spd_size


def test_pluto_ipsec_interface_creates_an_xfrm_interface_and_if_id_sas(tmp_path):
    """``ipsec-interface=1``: pluto creates ipsec1 (link kind xfrm, if_id 1, on the device
    of its address) through xfrmd and installs SAs and policies with XFRMA_IF_ID 1; traffic
    routed through ipsec1 uses them and leaves through the veth."""
    _require()
    make = pluto4(extra="\tipsec-interface=1\n")
    with Pair(tmp_path, make, make) as p:
        kp, left = p.kp, p.left
        r = left.initiate()
        assert "initiator established Child SA" in r.stdout, r.stdout
        for side in ("left", "right"):
            ns = kp.kernel.netns(side)
            x = ns.links.by_name("ipsec1")
            assert x is not None and x.kind == "xfrm" and x.xfrmi.if_id == 1
            assert x.xfrmi.link == ns.links.by_name(kp.real.dev[side]).ifindex
            states = list(sad(ns.xfrm).all.values())
            assert len(states) == 2 and {s.if_id for s in states} == {1}
            assert any(p.if_id == 1 for p in ns.xfrm.policy_all.values())
        env = {**os.environ, **kp.env("left")}
        p = subprocess.run(["ip", "route", "add", kp.real.addr["right"] + "/32", "dev",
                            "ipsec1"], env=env, capture_output=True, text=True)
        assert p.returncode == 0, p.stderr
        res = kp.xmit("left", count=3)
        [b] = res["batches"]
        assert b["result"] == "sent" and b["xfrm_dev"] == "ipsec1", b
        assert b["out_dev"] == kp.real.dev["left"]
