"""strongSwan charon 5.9.8 ↔ charon, unmodified, with the shim: IKE over a real veth between
two real namespaces, SAs and policies in xfrmd's emulated kernels ``left`` and ``right``."""
from __future__ import annotations

import os
import signal
import subprocess

import pytest

from xfrmd.xfrm.sadb import sad

from .ike_helpers import Pair, charon5, require_charon, require_root
from .ike_helpers import spis as _spis
from .ike_helpers import wait as _wait


def _require():
    require_root()
    require_charon()


def Peers(tmp_path, **opts) -> Pair:
    """Two host charons (``opts``: :class:`xfrmd.ike.charon.Charon` options) in a kernel
    pair; a red run explains itself with the daemons' logs."""
    return Pair(tmp_path, charon5(**opts), charon5(**opts))


@pytest.mark.parametrize("mode", ["tunnel", "transport"])
def test_child_sa_installed_in_both_emulated_kernels(tmp_path, mode):
    _require()
    with Peers(tmp_path, mode=mode) as p:
        r = p.left.initiate()
        assert "initiate completed successfully" in r.stdout, r.stdout
        assert "INSTALLED, " + mode.upper() in p.left.list_sas()
        left, right = p.kp.sad("left"), p.kp.sad("right")
        assert len(left) == 2 and len(right) == 2
        # the same SAs with the same SPIs and keys on both sides
        assert _spis(left) == _spis(right)
        keys = lambda sas: sorted((s["spi"], s["algs"]["enc"], s["algs"]["auth"]) for s in sas)
        assert keys(left) == keys(right)
        assert all(s["algs"]["enc"][0] == "cbc(aes)" and s["algs"]["auth"][0] == "hmac(sha256)"
                   for s in left)
        assert {s["mode"] for s in left} == {1 if mode == "tunnel" else 0}
        # policies: in, fwd and out on each side (fwd only for tunnel mode)
        dirs = sorted(pol["dir"] for pol in p.kp.spd("left"))
        assert dirs == ([0, 1, 2] if mode == "tunnel" else [0, 1])


def test_terminate_removes_sas_and_policies(tmp_path):
    _require()
    with Peers(tmp_path) as p:
        assert "initiate completed successfully" in p.left.initiate().stdout
        p.left.terminate_ike()
        assert _wait(lambda: not p.kp.sad("left") and not p.kp.sad("right"))
        assert p.kp.spd("left") == [] and p.kp.spd("right") == []


def test_soft_expire_from_the_emulated_clock_makes_charon_rekey(tmp_path):
    _require()
    with Peers(tmp_path, rekey_time=600, life_time=1200) as p:
        assert "initiate completed successfully" in p.left.initiate().stdout
        before = _spis(p.kp.sad("left"))
        lft = p.kp.sad("left")[0]["lft"]
        assert 0 < lft["soft_add_expires_seconds"] <= 600 < lft["hard_add_expires_seconds"] <= 1200
        p.kp.advance(lft["soft_add_expires_seconds"] + 2)     # kernel sends EXPIRE soft
        after = _wait(lambda: (lambda s: s if len(s) == 2 and s != before else None)(
            _spis(p.kp.sad("left"))), timeout=20)
        assert after and set(after).isdisjoint(before), p.left.logtext()[-3000:]
        assert "rekeying" in p.left.logtext() or "rekeying" in p.right.logtext()


def test_hard_expire_removes_the_sa(tmp_path):
    """life_time=300 is the SAs' hard add-time lifetime: the emulated clock moved past it
    makes each kernel delete its SAs and send the hard EXPIRE, and charon closes the CHILD_SA
    (no rekey: rekey_time=0). Both sides are waited for first — the responder installs its
    outbound SA after its IKE_AUTH answer left — so that every SA was added before the clock
    moved, whatever the machine's load. charon 5.9.8 then schedules "CHILD_SA recreate
    after hard expire", so new SAs (new SPIs) may already be in the kernels when we look:
    what must be gone is the expired ones."""
    _require()
    with Peers(tmp_path, rekey_time=0, life_time=300) as p:
        assert "initiate completed successfully" in p.left.initiate().stdout
        assert _wait(lambda: len(p.kp.sad("left")) == 2 and
                     _spis(p.kp.sad("left")) == _spis(p.kp.sad("right")), timeout=30), (
            p.kp.sad("left"), p.kp.sad("right"))
        old = {s for _, _, s in _spis(p.kp.sad("left"))}
        p.kp.advance(400)
        live = lambda side: {s for _, _, s in _spis(p.kp.sad(side))}
        for side in ("left", "right"):
            assert _wait(lambda: not live(side) & old, timeout=30), p.kp.sad(side)
            # each kernel sent the hard EXPIRE of both its SAs
            assert {e["spi"] for e in p.kp.expires(side) if e["hard"]} == old
        assert _wait(lambda: "CHILD_SA closed" in p.left.logtext(), timeout=30)
        assert "scheduling CHILD_SA recreate after hard expire" in p.left.logtext()


def test_restart_after_a_crash_finds_the_old_state(tmp_path):
    """charon 5.9.8 killed with SIGKILL and started again does not flush what it left in the
    kernel: the emulated kernel keeps the old SAs and policies, as Linux does. A new
    initiate installs a second pair of SAs beside the stale ones; charon meets its own
    policies again ("policy already exists, try to update it": EEXIST, then UPDPOLICY). The
    peer replaces the old IKE_SA, so it keeps only the new pair."""
    _require()
    with Peers(tmp_path, mode="tunnel") as p:
        assert "initiate completed successfully" in p.left.initiate().stdout
        old = _spis(p.kp.sad("left"))
        assert len(old) == 2 and len(p.kp.spd("left")) == 3
        p.left.proc.send_signal(signal.SIGKILL)
        p.left.proc.wait(10)
        os.unlink(p.left.vici)                   # left behind by the killed daemon
        p.left.start()
        assert _spis(p.kp.sad("left")) == old and len(p.kp.spd("left")) == 3
        assert "initiate completed successfully" in p.left.initiate().stdout
        assert _wait(lambda: len(p.kp.sad("left")) == 4 and len(p.kp.sad("right")) == 2)
        new = _spis(p.kp.sad("right"))
        assert set(old) <= set(_spis(p.kp.sad("left"))) and not set(old) & set(new)
        assert len(p.kp.spd("left")) == 3
        assert p.left.logtext().count("policy already exists, try to update it") == 3


def test_if_id_in_out_install_sas_and_policies_for_an_xfrm_interface(tmp_path):
    """Route-based VPN: an xfrm interface with if_id 42 on each side (``ip link add ipsec0
    type xfrm dev VETH if_id 42`` through the shim) and ``if_id_in = if_id_out = 42`` in the
    child: charon installs SAs and policies with XFRMA_IF_ID 42, and traffic routed through
    ipsec0 is protected by them."""
    _require()
    children = {"ch": {"mode": "tunnel", "hw_offload": "no",
                       "options": {"if_id_in": 42, "if_id_out": 42}}}
    with Peers(tmp_path, children=children) as p:
        for side in ("left", "right"):
            env = {**os.environ, **p.kp.env(side)}
            r = subprocess.run(["sh", "-c", f"ip link add ipsec0 type xfrm dev "
                                f"{p.kp.real.dev[side]} if_id 42 && ip link set ipsec0 up"],
                               env=env, capture_output=True, text=True)
            assert r.returncode == 0, r.stderr
        r = p.left.initiate()
        assert "initiate completed successfully" in r.stdout, r.stdout
        for side in ("left", "right"):
            ns = p.kp.kernel.netns(side)
            states = list(sad(ns.xfrm).all.values())
            assert len(states) == 2 and {s.if_id for s in states} == {42}
            assert {pol.if_id for pol in ns.xfrm.policy_all.values()} == {42}
        env = {**os.environ, **p.kp.env("left")}
        r = subprocess.run(["ip", "route", "add", p.kp.real.addr["right"] + "/32", "dev",
                            "ipsec0"], env=env, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        [b] = p.kp.xmit("left", count=2)["batches"]
        assert b["result"] == "sent" and b["xfrm_dev"] == "ipsec0", b
        assert b["out_dev"] == p.kp.real.dev["left"]
