"""libreswan pluto 4.10 (extracted .deb) ↔ pluto, and strongSwan charon ↔ pluto, unmodified,
through the shim and xfrmd."""
from __future__ import annotations

import os
import time

import pytest

from xfrmd.ike import charon, pluto
from xfrmd.ike.pair import KernelPair

from .conftest import require


def _require(need_charon=False):
    require(os.geteuid() == 0, "needs root for network namespaces")
    require(pluto.available(), "needs the extracted libreswan (tools/test-all.sh)")
    if need_charon:
        require(charon.available(), "needs strongswan-charon and strongswan-swanctl")


def _spis(sas):
    return sorted((s["src"], s["dst"], s["spi"]) for s in sas)


def _wait(cond, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(0.1)
    return cond()


def _stop_all(daemons, failed):
    for d in daemons:
        if d is not None:
            d.stop()
    if failed:
        for d in daemons:
            if d is not None:
                print(f"---- {type(d).__name__} {d.side} log ----\n{d.logtext()[-6000:]}")


@pytest.mark.parametrize("conn_type", ["tunnel", "transport"])
def test_pluto_pair_installs_child_sa_in_xfrmd(tmp_path, conn_type):
    _require()
    with KernelPair() as kp:
        left = right = None
        ok = False
        try:
            left = pluto.Pluto(kp.real, "left", str(tmp_path), kp.env("left"), type=conn_type)
            right = pluto.Pluto(kp.real, "right", str(tmp_path), kp.env("right"), type=conn_type)
            left.start()
            right.start()
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
            ok = True
        finally:
            _stop_all((left, right), not ok)


def test_charon_initiates_to_pluto(tmp_path):
    _require(need_charon=True)
    with KernelPair() as kp:
        left = right = None
        ok = False
        try:
            left = charon.Charon(kp.real, "left", str(tmp_path), kp.env("left"))
            right = pluto.Pluto(kp.real, "right", str(tmp_path), kp.env("right"))
            right.start()
            left.start()
            r = left.initiate()
            assert "initiate completed successfully" in r.stdout, r.stdout
            assert _spis(kp.sad("left")) == _spis(kp.sad("right"))
            assert len(kp.sad("left")) == 2
            ok = True
        finally:
            _stop_all((left, right), not ok)


def test_pluto_initiates_to_charon(tmp_path):
    _require(need_charon=True)
    with KernelPair() as kp:
        left = right = None
        ok = False
        try:
            left = pluto.Pluto(kp.real, "left", str(tmp_path), kp.env("left"))
            right = charon.Charon(kp.real, "right", str(tmp_path), kp.env("right"))
            right.start()
            left.start()
            r = left.initiate()
            assert "initiator established Child SA" in r.stdout, r.stdout
            assert _wait(lambda: len(kp.sad("right")) == 2)
            assert _spis(kp.sad("left")) == _spis(kp.sad("right"))
            ok = True
        finally:
            _stop_all((left, right), not ok)


def test_pluto_restart_after_a_crash_finds_the_old_state(tmp_path):
    """pluto 4.10 killed with SIGKILL and started again does not flush what it left in the
    kernel either: the emulated kernel keeps the old SAs and policies, as Linux does; a new
    initiate installs a second pair of SAs beside the stale ones and replaces its policies
    (still one set)."""
    import glob
    import signal
    _require()
    with KernelPair() as kp:
        left = right = None
        ok = False
        try:
            left = pluto.Pluto(kp.real, "left", str(tmp_path), kp.env("left"), conn_type="tunnel")
            right = pluto.Pluto(kp.real, "right", str(tmp_path), kp.env("right"), conn_type="tunnel")
            left.start()
            right.start()
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
            ok = True
        finally:
            _stop_all((left, right), not ok)


def test_pluto_ipsec_interface_creates_an_xfrm_interface_and_if_id_sas(tmp_path):
    """``ipsec-interface=1``: pluto creates ipsec1 (link kind xfrm, if_id 1, on the device
    of its address) through xfrmd and installs SAs and policies with XFRMA_IF_ID 1; traffic
    routed through ipsec1 uses them and leaves through the veth."""
    import subprocess
    from xfrmd.xfrm.sadb import sad
    _require()
    with KernelPair() as kp:
        left = right = None
        ok = False
        try:
            left = pluto.Pluto(kp.real, "left", str(tmp_path), kp.env("left"),
                               extra="\tipsec-interface=1\n")
            right = pluto.Pluto(kp.real, "right", str(tmp_path), kp.env("right"),
                                extra="\tipsec-interface=1\n")
            left.start()
            right.start()
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
            ok = True
        finally:
            _stop_all((left, right), not ok)
