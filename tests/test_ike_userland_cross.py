"""Cross-version pairs past the first negotiation: charon 5.9.8 (the host's) ↔ charon 6.0.1 and
pluto 4.10 (the extracted .deb) ↔ pluto 5.2 (the trixie userlands), each way round, rekeyed
on the clock and on traffic and restarted after a crash — what the same-version tests
(test_ike_strongswan.py, test_ike_rekey.py, test_ike_libreswan.py, test_ike_userland.py) show
for one version at a time."""
from __future__ import annotations

import glob
import os
import signal
import time

import pytest

from .conftest import require_userland
from .ike_helpers import (Pair, charon5, charon6, pluto4, pluto5, require_charon, require_pluto,
                          require_root, spis, wait)

pytestmark = pytest.mark.userland

CHARON_UP = "initiate completed successfully"
PLUTO_UP = "initiator established Child SA"
PAYLOAD, WIRE = 1000, 1028      # curlft.bytes per packet in software: IPv4 + UDP + payload

# name → (left, right) makers; the left one initiates
CHARONS = {"charon5-to-charon6": (charon5, charon6), "charon6-to-charon5": (charon6, charon5)}
PLUTOS = {"pluto4-to-pluto5": (pluto4, pluto5), "pluto5-to-pluto4": (pluto5, pluto4)}


def _require(name: str) -> None:
    require_root()
    if "charon" in name:
        require_charon()
        require_userland("trixie-strongswan")
    else:
        require_pluto()
        require_userland("trixie-libreswan")


def _new(kp, old, side="left") -> set:
    return set(spis(kp.sad(side))) - set(old)


def _both_rekeyed(kp, old) -> bool:
    """Each side holds one new pair, the same SPIs on both, and none of the old SAs."""
    sl, sr = spis(kp.sad("left")), spis(kp.sad("right"))
    return len(sl) == 2 and sl == sr and set(sl).isdisjoint(old)


def _peer(side: str) -> str:
    return "right" if side == "left" else "left"


def _up(p) -> list[tuple]:
    r = p.left.initiate()
    p.t_up = time.monotonic()           # the initiator's Child SA is up when initiate returns
    assert (CHARON_UP if hasattr(p.left, "swanctl") else PLUTO_UP) in r.stdout, r.stdout
    assert wait(lambda: len(p.kp.sad("right")) == 2 and
                spis(p.kp.sad("left")) == spis(p.kp.sad("right")), timeout=10)
    return spis(p.kp.sad("left"))


# ---- charon 5.9.8 ↔ 6.0.1 ----

@pytest.mark.parametrize("name", list(CHARONS))
def test_cross_charons_rekey_on_the_kernels_soft_time_expire(tmp_path, name):
    """Both versions give the kernel rekey_time as the soft add-time lifetime: the emulated
    clock moved past it makes both kernels send a soft EXPIRE, the charons rekey (one
    CREATE_CHILD_SA, or two colliding, which they resolve) and agree on one new pair; the old
    one is deleted."""
    _require(name)
    left, right = CHARONS[name]
    kw = {"rekey_time": 60, "life_time": 120, "limits": {"rand_time": 0}}
    with Pair(tmp_path, left(**kw), right(**kw)) as p:
        old = _up(p)
        inbound = {}
        for side in ("left", "right"):
            # both versions put the soft lifetime on the inbound SA only (0 on the outbound)
            lft = {sa["dst"]: sa["lft"]["soft_add_expires_seconds"] for sa in p.kp.sad(side)}
            assert lft == {p.kp.real.addr[side]: 60, p.kp.real.addr[_peer(side)]: 0}, lft
            [inbound[side]] = [sa["spi"] for sa in p.kp.sad(side)
                               if sa["dst"] == p.kp.real.addr[side]]
        p.kp.advance(61)
        assert wait(lambda: _both_rekeyed(p.kp, old), timeout=20), (
            p.kp.sad("left"), p.kp.sad("right"))
        for side in ("left", "right"):            # each kernel told its charon
            assert (inbound[side], False) in [(e["spi"], e["hard"]) for e in p.kp.expires(side)]
        assert "CHILD_REKEY" in p.left.logtext() + p.right.logtext()


@pytest.mark.parametrize("name", list(CHARONS))
def test_cross_charons_rekey_on_the_kernels_soft_byte_expire(tmp_path, name):
    """rekey_bytes=30000: emulated traffic from the initiator up to it changes nothing, the
    packet past it makes the kernel send a soft EXPIRE for the outbound SA, and the
    initiator (5.9.8 or 6.0.1) rekeys with its peer of the other version."""
    _require(name)
    left, right = CHARONS[name]
    lim = {"limits": {"rekey_bytes": 30000, "life_bytes": 100000, "rand_bytes": 0}}
    with Pair(tmp_path, left(**lim), right(**lim)) as p:
        old = _up(p)
        [out] = [sa for sa in p.kp.sad("left") if sa["src"] == p.kp.real.addr["left"]]
        # xfrm_output_one checks the lifetimes (xfrm_state_check_expire) before it counts
        # the packet: the packet after the one that crosses rekey_bytes raises the EXPIRE
        n = -(-30000 // WIRE)
        assert p.kp.xmit("left", count=n, size=PAYLOAD)["sent"] == n
        assert p.kp.expires("left") == []
        assert p.kp.xmit("left", count=1, size=PAYLOAD)["sent"] == 1
        assert [(e["spi"], e["hard"]) for e in p.kp.expires("left")] == [(out["spi"], False)]
        assert wait(lambda: _both_rekeyed(p.kp, old), timeout=20), (
            p.kp.sad("left"), p.kp.sad("right"))
        assert "activating CHILD_REKEY task" in p.left.logtext()


@pytest.mark.parametrize("name", list(CHARONS))
def test_cross_charons_restart_after_a_crash(tmp_path, name):
    """The initiator killed with SIGKILL and started again: 5.9.8 and 6.0.1 alike leave the
    old SAs in the kernel and negotiate a new pair beside them with the peer of the other
    version, which answers the new IKE_SA (same identities) and installs the new pair."""
    _require(name)
    left, right = CHARONS[name]
    with Pair(tmp_path, left(), right()) as p:
        old = _up(p)
        p.left.proc.send_signal(signal.SIGKILL)
        p.left.proc.wait(10)
        if os.path.exists(p.left.vici):
            os.unlink(p.left.vici)
        assert spis(p.kp.sad("left")) == old              # the kernel kept them
        p.left.start()
        assert CHARON_UP in p.left.initiate().stdout
        assert wait(lambda: len(_new(p.kp, old)) == 2), p.kp.sad("left")
        assert set(old) <= set(spis(p.kp.sad("left")))    # stale beside the new pair
        assert wait(lambda: _new(p.kp, old) <= set(spis(p.kp.sad("right")))), \
            p.kp.sad("right")


# ---- pluto 4.10 ↔ 5.2 ----

@pytest.mark.parametrize("name", list(PLUTOS))
def test_cross_plutos_rekey_on_the_initiators_timer(tmp_path, name):
    """pluto's clock is its own (no add-time lifetimes in the kernel, no EXPIRE):
    salifetime=6s, rekeymargin=3s, rekeyfuzz=0% — the initiator of either version rekeys
    about 3 s after the Child SA is up, the peer of the other version answers, and the
    replaced pair is deleted on both sides."""
    _require(name)
    left, right = PLUTOS[name]
    conf = "\tsalifetime=6s\n\trekeymargin=3s\n\trekeyfuzz=0%\n\tikelifetime=1h\n"
    with Pair(tmp_path, left(extra=conf), right(extra=conf)) as p:
        old = _up(p)
        assert all(sa["lft"]["soft_add_expires_seconds"] == 0 for sa in p.kp.sad("left"))
        assert wait(lambda: len(_new(p.kp, old)) == 2, timeout=15, interval=0.05), \
            p.kp.sad("left")
        assert 1.5 < time.monotonic() - p.t_up < 6.0
        assert wait(lambda: _both_rekeyed(p.kp, old), timeout=10), (
            p.kp.sad("left"), p.kp.sad("right"))
        assert p.kp.expires("left") == [] and p.kp.expires("right") == []
        assert "initiating rekey to replace Child SA #2" in p.left.logtext()


@pytest.mark.parametrize("name", list(PLUTOS))
def test_cross_plutos_rekey_on_the_kernels_soft_byte_expire(tmp_path, name):
    """ipsec-max-bytes=100000: the initiator gives the kernel a randomised soft limit of a
    quarter to three eighths of it; traffic past the soft limit makes the kernel send a soft
    EXPIRE, and the initiator of either version replaces the Child SA with its peer of the
    other version."""
    _require(name)
    left, right = PLUTOS[name]
    conf = "\tipsec-max-bytes=100000\n\tikelifetime=1h\n"
    with Pair(tmp_path, left(extra=conf), right(extra=conf)) as p:
        old = _up(p)
        [out] = [sa for sa in p.kp.sad("left") if sa["src"] == p.kp.real.addr["left"]]
        soft = out["lft"]["soft_byte_limit"]
        assert 25000 <= soft <= 37500 and out["lft"]["hard_byte_limit"] == 100000
        n = -(-soft // WIRE)
        assert p.kp.xmit("left", count=n, size=PAYLOAD)["sent"] == n
        assert p.kp.xmit("left", count=1, size=PAYLOAD)["sent"] == 1
        assert [(e["spi"], e["hard"]) for e in p.kp.expires("left")] == [(out["spi"], False)]
        assert wait(lambda: _both_rekeyed(p.kp, old), timeout=20), (
            p.kp.sad("left"), p.kp.sad("right"))
        log = p.left.logtext()
        assert "received soft EXPIRE for outbound SPI" in log and "replacing" in log


@pytest.mark.parametrize("name", list(PLUTOS))
def test_cross_plutos_restart_after_a_crash(tmp_path, name):
    """The initiator killed with SIGKILL and started again: pluto 4.10 leaves its old SAs in
    the kernel (a second pair comes beside them), pluto 5.2 flushes the kernel's SAs when it
    starts (only the new pair is left); the peer of the other version answers either way."""
    _require(name)
    left, right = PLUTOS[name]
    with Pair(tmp_path, left(), right()) as p:
        old = _up(p)
        p.left.proc.send_signal(signal.SIGKILL)
        p.left.proc.wait(10)
        for f in glob.glob(os.path.join(p.left.run, "*")):      # pid file and control socket
            os.unlink(f)
        assert spis(p.kp.sad("left")) == old
        p.left.start()
        flushes = name.startswith("pluto5")
        assert (p.kp.sad("left") == []) == flushes
        assert PLUTO_UP in p.left.initiate().stdout
        assert wait(lambda: len(_new(p.kp, old)) == 2), p.kp.sad("left")
        stale = set(old) & set(spis(p.kp.sad("left")))
        assert stale == (set() if flushes else set(old))
        assert wait(lambda: _new(p.kp, old) <= set(spis(p.kp.sad("right")))), \
            p.kp.sad("right")
