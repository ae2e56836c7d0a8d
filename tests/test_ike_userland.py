"""Daemons from a userland or from the user's own build (xfrmd.ike.install), and the daemon
pairs on the versions that have packet offload: charon 6.0.1 and pluto 5.2 (trixie
userlands), against each other and against the host's charon 5.9.8 and pluto 4.10."""
from __future__ import annotations

import json
import os
import signal
import time

import pytest

from xfrmd.ike import pluto
from xfrmd.ike.charon import Charon
from xfrmd.ike.install import DaemonError, charon_install, pluto_install
from xfrmd.ike.pair import KernelPair
from xfrmd.ike.pluto import Pluto

from .conftest import require_userland
from .ike_helpers import (GCM_CHARON, GCM_PLUTO, INBOUND, PACKET, Pair, charon5, charon6,
                          pluto4, pluto5, require_charon, require_pluto, stuck_initiation)
from .ike_helpers import require_root as _root
from .ike_helpers import spis as _spis
from .ike_helpers import wait as _wait


# ---- a bad daemon path is one clear error, before anything starts ----

def _script(path, text: str) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n" + text + "\n")
    path.chmod(0o755)
    return str(path)


def test_bad_charon_paths(tmp_path):
    with pytest.raises(DaemonError, match=r"charon=/no/such: no such file$"):
        charon_install("/no/such")
    with pytest.raises(DaemonError, match=r"charon=/bin/true is not strongSwan's charon "
                                          r"\(`--version` said: true \(GNU coreutils\)"):
        charon_install("/bin/true")
    silent = _script(tmp_path / "bin" / "charon", "exit 3")
    with pytest.raises(DaemonError, match=r"is not strongSwan's charon \(`--version` said: "
                                          r"exit status 3, no output\)"):
        charon_install(silent)
    with pytest.raises(DaemonError, match=r"no charon in it \(looked for"):
        charon_install(str(tmp_path / "bin" / ".."))
    # a prefix whose charon was built without the kernel-netlink plugin
    prefix = tmp_path / "prefix"
    _script(prefix / "lib/ipsec/charon", 'echo "strongSwan 6.1.0"')
    _script(prefix / "sbin/swanctl", "true")
    with pytest.raises(DaemonError, match=r"strongSwan 6.1.0 has no kernel-netlink plugin "
                                          r"\(libstrongswan-kernel-netlink.so not found"):
        charon_install(str(prefix))
    (prefix / "lib/ipsec/plugins").mkdir()
    (prefix / "lib/ipsec/plugins/libstrongswan-kernel-netlink.so").write_bytes(b"")
    inst = charon_install(str(prefix))
    assert inst.paths == {"charon": str(prefix / "lib/ipsec/charon"),
                          "swanctl": str(prefix / "sbin/swanctl")}
    assert inst.major == 6 and inst.root is None
    (prefix / "sbin/swanctl").unlink()
    with pytest.raises(DaemonError, match="no swanctl beside it"):
        charon_install(str(prefix))
    with pytest.raises(DaemonError, match="give charon=PATH or userland=NAME, not both"):
        charon_install(str(prefix), "trixie-strongswan")


def test_bad_pluto_paths_and_userlands(tmp_path, monkeypatch):
    with pytest.raises(DaemonError, match=r"pluto=/bin/sh is not Libreswan's pluto"):
        pluto_install("/bin/sh")
    build = tmp_path / "libreswan"
    _script(build / "OBJ.linux.x86_64/programs/pluto/pluto", 'echo "Libreswan 5.3"')
    with pytest.raises(DaemonError, match="no whack beside it"):
        pluto_install(str(build))
    _script(build / "OBJ.linux.x86_64/programs/whack/whack", "true")
    _script(build / "OBJ.linux.x86_64/programs/addconn/addconn", "true")
    assert pluto_install(str(build)).paths["addconn"].endswith("programs/addconn/addconn")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with pytest.raises(DaemonError, match="unknown userland 'trixie-nope'; known: "):
        pluto_install(userland="trixie-nope")
    with pytest.raises(DaemonError, match="userland trixie-libreswan is not built"):
        pluto_install(userland="trixie-libreswan")


def test_the_error_comes_before_anything_starts(tmp_path):
    """The wrapper checks its daemon first: no pair, namespace or file is touched."""
    with pytest.raises(DaemonError):
        Charon(None, "left", str(tmp_path), charon="/bin/true")
    with pytest.raises(DaemonError):
        Pluto(None, "left", str(tmp_path), pluto="/no/such")
    assert os.listdir(tmp_path) == []


# ---- real pairs ----

@pytest.mark.userland
def test_charon6_pair_with_packet_offload_on_mlx5(tmp_path):
    """charon 6.0.1 ↔ 6.0.1, hw_offload=packet on mlx5-like ports: both SAs and the in/out
    policies are offloaded in packet mode (the fwd policy stays in software)."""
    _root()
    require_userland("trixie-strongswan")
    c = charon6(hw_offload="packet", esp_proposals=GCM_CHARON)
    with Pair(tmp_path, c, c, device_kind="mlx5") as p:
        assert p.left.install.version == "charon 6.0.1"
        r = p.left.initiate()
        assert "initiate completed successfully" in r.stdout, r.stdout
        sas = p.kp.sad("left")
        assert sorted(sa["offload"]["flags"] for sa in sas) == [PACKET, PACKET | INBOUND]
        assert _spis(sas) == _spis(p.kp.sad("right"))
        child = [sp for sp in p.kp.spd("left") if sp["src"] in ("192.0.2.1/32", "192.0.2.2/32")]
        offloaded = sorted((sp["dir"], (sp["offload"] or {}).get("flags")) for sp in child)
        assert offloaded == [(0, PACKET | INBOUND), (1, PACKET), (2, None)]    # in, out, fwd
        assert "HW offload: packet" in p.left.logtext()
        assert "ESP:AES_GCM_16-128" in p.left.list_sas()


@pytest.mark.userland
def test_pluto5_pair_with_packet_offload(tmp_path):
    """pluto 5.2 ↔ 5.2, nic-offload=packet (5.2 allows it in transport mode only)."""
    _root()
    require_userland("trixie-libreswan")
    make = pluto5(nic_offload="packet", esp=GCM_PLUTO, type="transport")
    with Pair(tmp_path, make, make, device_kind="mlx5") as p:
        assert p.left.install.version == "pluto 5.2"
        r = p.left.initiate()
        assert "initiator established Child SA" in r.stdout, r.stdout
        assert "nic-offload=packet" in r.stdout
        sas = p.kp.sad("left")
        assert sorted(sa["offload"]["flags"] for sa in sas) == [PACKET, PACKET | INBOUND]
        assert _wait(lambda: _spis(p.kp.sad("right")) == _spis(sas))
        assert "type=ESP(nic-offload=packet)" in p.left.status()


@pytest.mark.userland
def test_pluto5_refuses_packet_offload_in_tunnel_mode(tmp_path):
    _root()
    require_userland("trixie-libreswan")
    with KernelPair(device_kind="mlx5") as kp:
        d = Pluto(kp.real, "left", str(tmp_path), kp.env("left"), userland="trixie-libreswan",
                  nic_offload="packet", type="tunnel")
        try:
            with pytest.raises(RuntimeError, match="nic-offload=packet restricted to "
                                                   "type=transport"):
                d.start()
        finally:
            d.stop()


CROSS = {
    "charon6-to-pluto5": (charon6(esp_proposals="aes128-sha256-modp2048"), pluto5()),
    "pluto5-to-charon6": (pluto5(), charon6(esp_proposals="aes128-sha256-modp2048")),
    "charon5-to-charon6": (charon5(), charon6()),
    "charon6-to-charon5": (charon6(), charon5()),
    "pluto4-to-pluto5": (pluto4(), pluto5()),
    "pluto5-to-pluto4": (pluto5(), pluto4()),
}


@pytest.mark.userland
@pytest.mark.parametrize("name", list(CROSS))
def test_cross_pairs(tmp_path, name):
    _root()
    if "charon6" in name:
        require_userland("trixie-strongswan")
    if "pluto5" in name:
        require_userland("trixie-libreswan")
    if "charon5" in name:
        require_charon()
    if "pluto4" in name:
        require_pluto()
    with Pair(tmp_path, *CROSS[name]) as p:
        r = p.left.initiate()
        done = ("initiate completed successfully" if isinstance(p.left, Charon)
                else "initiator established Child SA")
        assert done in r.stdout, r.stdout
        assert _wait(lambda: len(p.kp.sad("right")) == 2)
        assert _spis(p.kp.sad("left")) == _spis(p.kp.sad("right"))


def test_own_build_by_prefix_and_by_destdir(tmp_path):
    """charon=PREFIX (the host's /usr) and pluto=DESTDIR (the extracted .deb, built for /usr:
    shown there in its mount namespace) negotiate like the packaged ones."""
    _root()
    require_charon()
    require_pluto()
    destdir = pluto.libreswan_dir()
    with Pair(tmp_path,
              lambda kp, side, tmp: Charon(kp.real, side, tmp, kp.env(side), charon="/usr",
                                           esp_proposals="aes128-sha256-modp2048"),
              lambda kp, side, tmp: Pluto(kp.real, side, tmp, kp.env(side),
                                          pluto=destdir)) as p:
        assert p.left.install.paths["charon"] == "/usr/lib/ipsec/charon"
        assert p.daemons[1].install.origin == f"pluto={destdir}"
        r = p.left.initiate()
        assert "initiate completed successfully" in r.stdout, r.stdout
        assert _spis(p.kp.sad("left")) == _spis(p.kp.sad("right"))


# ---- rekey and restart on the new versions ----

def _new_spis(kp, old, side="left"):
    return set(_spis(kp.sad(side))) - set(old)


@pytest.mark.userland
def test_charon6_rekeys_on_the_kernels_soft_time_expire(tmp_path):
    """charon 6.0.1 hands rekey_time to the kernel as the soft add-time lifetime, as 5.9.8
    does: moving the emulated clock past it raises the soft EXPIRE and charon rekeys."""
    _root()
    require_userland("trixie-strongswan")
    c = charon6(rekey_time=60, life_time=120, limits={"rand_time": 0})
    with Pair(tmp_path, c, c) as p:
        assert "initiate completed successfully" in p.left.initiate().stdout
        old = _spis(p.kp.sad("left"))
        assert {sa["lft"]["soft_add_expires_seconds"] for sa in p.kp.sad("left")} & {60}
        p.kp.advance(61)
        assert _wait(lambda: len(_new_spis(p.kp, old)) == 2), p.kp.sad("left")
        assert _wait(lambda: set(_spis(p.kp.sad("right"))) >= _new_spis(p.kp, old))
        assert any(not e["hard"] for e in p.kp.expires("left") + p.kp.expires("right"))
        assert "CHILD_REKEY" in p.left.logtext() + p.daemons[1].logtext()


@pytest.mark.userland
@pytest.mark.parametrize("offload", ["software", "packet"])
def test_charon6_rekeys_on_the_kernels_soft_byte_expire(tmp_path, offload):
    """Emulated traffic (kp.xmit) past rekey_bytes: soft EXPIRE, charon 6.0.1 rekeys — in
    software on veths, and under packet offload on mlx5-like ports, where the hardware
    counts (what charon reads back with GETSA shows in `swanctl --list-sas`)."""
    _root()
    require_userland("trixie-strongswan")
    lim = {"rekey_bytes": 30000, "life_bytes": 100000, "rand_bytes": 0}
    kw = ({"hw_offload": "packet", "esp_proposals": GCM_CHARON} if offload == "packet"
          else {})
    dev = {"device_kind": "mlx5"} if offload == "packet" else {}
    with Pair(tmp_path, charon6(limits=lim, **kw), charon6(limits=lim, **kw), **dev) as p:
        assert "initiate completed successfully" in p.left.initiate().stdout
        old = _spis(p.kp.sad("left"))
        res = p.kp.xmit("left", count=10, size=1000)
        assert res["sent"] == 10
        path = res["batches"][0]["sas"][0]["path"]
        assert path == ("packet-offload" if offload == "packet" else "software"), res
        out = [sa for sa in p.kp.sad("left") if sa["src"] == "192.0.2.1"][0]
        # software counts the inner IPv4 packet (20 + 8 + 1000, xfrm_output); under packet
        # offload the count is the mlx5-like driver's hardware counter as xfrmd models it
        per_packet = 1008 if offload == "packet" else 1028
        assert f"out {out['spi']:08x}, {10 * per_packet:6d} bytes,    10 packets" in \
            p.left.list_sas()
        n = -(-30000 // 1028) - 10
        assert p.kp.xmit("left", count=n + 1, size=1000)["sent"] == n + 1
        assert [e["hard"] for e in p.kp.expires("left")] == [False]
        assert _wait(lambda: len(_new_spis(p.kp, old)) == 2), p.kp.sad("left")
        assert "activating CHILD_REKEY task" in p.left.logtext()
        if offload == "packet":
            assert all(sa["offload"] for sa in p.kp.sad("left"))


@pytest.mark.userland
@pytest.mark.parametrize("daemon", ["charon6", "pluto5"])
def test_restart_after_a_crash_on_the_new_versions(tmp_path, daemon):
    """Killed with SIGKILL and started again: charon 6.0.1 (like 5.9.8) finds its old SAs
    still in the kernel and negotiates a new pair beside them; pluto 5.2, unlike 4.10, flushes
    the kernel's SAs and policies when it starts (XFRM_MSG_FLUSHPOLICY, XFRM_MSG_FLUSHSA), so
    only the new pair is left."""
    _root()
    require_userland("trixie-strongswan" if daemon == "charon6" else "trixie-libreswan")
    make = charon6() if daemon == "charon6" else pluto5()
    with Pair(tmp_path, make, make) as p:
        done = ("initiate completed successfully" if daemon == "charon6"
                else "initiator established Child SA")
        assert done in p.left.initiate().stdout
        old = _spis(p.kp.sad("left"))
        assert len(old) == 2
        p.left.proc.send_signal(signal.SIGKILL)
        p.left.proc.wait(10)
        for leftover in (getattr(p.left, "vici", None), getattr(p.left, "ctl", None)):
            if leftover and os.path.exists(leftover):
                os.unlink(leftover)
        assert _spis(p.kp.sad("left")) == old          # the kernel kept them
        p.left.start()
        if daemon == "pluto5":
            # what is left are the policies 5.2 installs at start (priority 1, any to any)
            assert p.kp.sad("left") == []
            assert {(sp["src"], sp["priority"]) for sp in p.kp.spd("left")} <= {
                ("0.0.0.0/0", 1), ("::/0", 1)}
        assert done in p.left.initiate().stdout
        assert _wait(lambda: len(_new_spis(p.kp, old)) == 2)
        stale = set(old) & set(_spis(p.kp.sad("left")))
        assert stale == (set(old) if daemon == "charon6" else set())


# ---- charon 6.0.1's hw_offload on each emulated device (docs/ike.md) ----

NONE = -1        # not offloaded
# device, hw_offload → CHILD_SA up, the SAs' offload flags, the child policies' (dir: flags),
# a line of charon's log
CHARON6_OFFLOAD = [
    ("mlx5", "packet", True, [PACKET, PACKET | INBOUND], {0: PACKET | INBOUND, 1: PACKET, 2: NONE},
     "HW offload: packet"),
    ("mlx5", "yes", True, [0, INBOUND], {0: NONE, 1: NONE, 2: NONE}, "HW offload: crypto"),
    ("mlx5", "auto", True, [PACKET, PACKET | INBOUND], {0: PACKET | INBOUND, 1: PACKET, 2: NONE},
     "HW offload: auto"),
    ("netdevsim", "packet", False, [], {}, "Policy offload is not supported (22)"),
    ("netdevsim", "yes", True, [0, INBOUND], {0: NONE, 1: NONE, 2: NONE}, "HW offload: crypto"),
    ("netdevsim", "auto", True, [0, INBOUND], {0: NONE, 1: NONE, 2: NONE},
     "failed to install SA with packet HW offload, trying with crypto HW offload"),
    # the responder's kernel refuses the SA ("HW offload is not supported by device veth-r");
    # the initiator sees its IKE_AUTH answer without IDr
    ("veth", "packet", False, [], {}, "IDr payload missing"),
    ("veth", "yes", False, [], {}, "IDr payload missing"),
    ("veth", "auto", True, [NONE, NONE], {0: NONE, 1: NONE, 2: NONE},
     "HW offload is not supported by device veth-l"),
    ("airoha-soe", "packet", False, [], {},
     "airoha_eth: SOE requires software inbound XFRM policies (95)"),
    ("airoha-soe", "yes", True, [NONE, NONE], {0: NONE, 1: NONE, 2: NONE},
     "received netlink warning: airoha_eth: SOE supports XFRM packet offload only"),
    # both SAs are accepted (charon's replay window 32: fbfe8f9), the inbound packet policy
    # is not; charon then installs the SAs without offload under its outbound packet policy
    ("airoha-soe", "auto", True, [NONE, NONE], {0: NONE, 1: PACKET, 2: NONE},
     "airoha_eth: SOE requires software inbound XFRM policies (95)"),
]


@pytest.mark.userland
@pytest.mark.parametrize("dev,hw,up,sa_flags,sp_flags,logged", CHARON6_OFFLOAD,
                         ids=[f"{c[0]}-{c[1]}" for c in CHARON6_OFFLOAD])
def test_charon6_hw_offload_on_each_device(tmp_path, dev, hw, up, sa_flags, sp_flags, logged):
    _root()
    require_userland("trixie-strongswan")
    c = charon6(hw_offload=hw, esp_proposals=GCM_CHARON)
    with Pair(tmp_path, c, c, device_kind=dev) as p:
        r = p.left.initiate()
        assert ("initiate completed successfully" in r.stdout) == up, r.stdout
        flags = lambda o: NONE if o is None else o["flags"]
        assert sorted(flags(sa["offload"]) for sa in p.kp.sad("left")) == sorted(sa_flags)
        child = {sp["dir"]: flags(sp["offload"]) for sp in p.kp.spd("left")
                 if sp["src"].startswith("192.0.2.")}
        assert child == sp_flags
        assert logged in p.left.logtext()


# ---- pluto 5.2's nic-offload on each emulated device (docs/ike.md) ----

# device, nic-offload → outcome ("up", "refused": whack says so at once, "stuck": the
# responder's kernel refuses the SA, the initiator hits an internal error and `whack
# --initiate` never returns), the SAs' and child policies' offload flags when up, and the
# text that shows it (the initiator's whack output, or the responder's log when stuck).
SOFTWARE = "xfrm=AES_GCM_16_128-NONE DPD=passive}"     # no nic-offload= in whack's line
PLUTO5_OFFLOAD = [
    ("mlx5", "no", "up", [NONE, NONE], {0: NONE, 1: NONE}, SOFTWARE),
    ("mlx5", "yes", "up", [0, INBOUND], {0: NONE, 1: NONE}, "nic-offload=crypto DPD"),
    ("mlx5", "packet", "up", [PACKET, PACKET | INBOUND], {0: PACKET | INBOUND, 1: PACKET},
     "nic-offload=packet DPD"),
    ("mlx5", "auto", "up", [NONE, NONE], {0: NONE, 1: NONE}, SOFTWARE),
    ("netdevsim", "yes", "stuck", None, None,
     "netlink ext_ack: Device doesn't support offload with ESN"),
    ("netdevsim", "packet", "stuck", None, None,
     "netlink ext_ack: netdevsim: Unsupported ipsec offload type"),
    ("netdevsim", "auto", "up", [NONE, NONE], {0: NONE, 1: NONE}, SOFTWARE),
    ("veth", "yes", "refused", None, None,
     "we cannot identify ourselves with either end of this connection"),
    ("veth", "packet", "refused", None, None,
     "we cannot identify ourselves with either end of this connection"),
    ("veth", "auto", "up", [NONE, NONE], {0: NONE, 1: NONE}, SOFTWARE),
    ("airoha-soe", "yes", "stuck", None, None,
     "netlink ext_ack: Device doesn't support offload with ESN"),
    ("airoha-soe", "packet", "stuck", None, None,
     "netlink ext_ack: airoha_eth: SOE supports tunnel mode only"),
    ("airoha-soe", "auto", "up", [NONE, NONE], {0: NONE, 1: NONE}, SOFTWARE),
]


@pytest.mark.userland
@pytest.mark.parametrize("dev,off,outcome,sa_flags,sp_flags,shown", PLUTO5_OFFLOAD,
                         ids=[f"{c[0]}-{c[1]}" for c in PLUTO5_OFFLOAD])
def test_pluto5_nic_offload_on_each_device(tmp_path, dev, off, outcome, sa_flags, sp_flags,
                                           shown):
    """Transport mode (5.2 allows packet offload only there), AES-GCM-128 (ESN proposed and
    chosen). pluto 5.2 does not know `auto`: it warns and runs without offload."""
    _root()
    require_userland("trixie-libreswan")
    make = pluto5(nic_offload=off, esp=GCM_PLUTO, type="transport")
    with Pair(tmp_path, make, make, device_kind=dev) as p:
        left, right = p.daemons
        if outcome == "stuck":
            with stuck_initiation(left) as whack:
                assert shown in right.logtext()
                assert whack.poll() is None          # still waiting for its Child SA
            # nothing but the larval SA of its own ALLOCSPI (no algorithms) on the initiator
            assert [sa["algs"] for sa in p.kp.sad("left")] in ([], [{}])
            return
        r = left.initiate()
        assert ("initiator established Child SA" in r.stdout) == (outcome == "up"), r.stdout
        assert shown in r.stdout
        if off == "auto":
            assert "warning: invalid, keyword ignored: nic-offload=auto" in left.logtext()
        if outcome == "up":
            flags = lambda o: NONE if o is None else o["flags"]
            assert sorted(flags(sa["offload"]) for sa in p.kp.sad("left")) == sorted(sa_flags)
            assert {sp["dir"]: flags(sp["offload"]) for sp in p.kp.spd("left")
                    if sp["src"].startswith("192.0.2.")} == sp_flags


# ---- the daemons' own open offload bugs ----

@pytest.mark.userland
@pytest.mark.parametrize("dev", ["netdevsim", "mlx5"])
def test_pluto5_ike_port_bypass_with_packet_offload(tmp_path, dev):
    """libreswan issue 2875 (open): with nic-offload=packet pluto 5.2 installs its IKE-port
    bypass policies with packet offload at start. On a crypto-only NIC (netdevsim) the kernel
    answers EINVAL, extack "Policy offload is not supported" (xfrm_dev_policy_add), and pluto
    logs an ERROR ("poke_ipsec_offload_policy_hole failed"); the extack text shows only in its
    debug log (plutodebug). On a packet-capable port (mlx5-like) the bypass policies are
    offloaded."""
    _root()
    require_userland("trixie-libreswan")
    with KernelPair(device_kind=dev) as kp:
        d = Pluto(kp.real, "left", str(tmp_path), kp.env("left"), userland="trixie-libreswan",
                  nic_offload="packet", esp=GCM_PLUTO, type="transport")
        try:
            d.start()
            spd = kp.spd("left")
        finally:
            d.stop()
        replies = [bytes.fromhex(json.loads(line)["data"]) for line in open(kp.trace_path)]
    log = d.logtext()
    failed = ("ERROR: kernel: xfrm XFRM_MSG_NEWPOLICY add IPv4 ike port bypass for nic-offload "
              "response for flow (out): Invalid argument (errno 22)")
    refused = any(b"Policy offload is not supported" in r for r in replies)
    if dev == "netdevsim":
        assert failed in log and "poke_ipsec_offload_policy_hole failed" in log
        assert refused
        [ext] = [l for l in log.splitlines() if "ext_ack: Policy offload is not supported" in l]
        assert ": | " in ext                     # a debug line, not part of the ERROR
        assert not any(sp["offload"] for sp in spd)
    else:
        assert failed not in log and not refused
        assert any(sp["offload"] and sp["offload"]["flags"] & PACKET for sp in spd)


@pytest.mark.userland
@pytest.mark.parametrize("initiator", ["charon6", "pluto5"])
def test_charon6_and_pluto5_with_packet_offload(tmp_path, initiator):
    """charon 6.0.1 (hw_offload=packet) and pluto 5.2 (nic-offload=packet), transport mode,
    AES-GCM-128, on mlx5-like ports: both sides' SAs offloaded in packet mode."""
    _root()
    require_userland("trixie-strongswan")
    require_userland("trixie-libreswan")
    c = charon6(hw_offload="packet", esp_proposals=GCM_CHARON, mode="transport")
    pl = pluto5(nic_offload="packet", esp=GCM_PLUTO, type="transport")
    with Pair(tmp_path, *((c, pl) if initiator == "charon6" else (pl, c)),
              device_kind="mlx5") as p:
        r = p.left.initiate()
        done = ("initiate completed successfully" if initiator == "charon6"
                else "initiator established Child SA")
        assert done in r.stdout, r.stdout
        assert _wait(lambda: len(p.kp.sad("right")) == 2)
        for side in ("left", "right"):
            assert sorted(sa["offload"]["flags"] for sa in p.kp.sad(side)) == [
                PACKET, PACKET | INBOUND]
        assert _spis(p.kp.sad("left")) == _spis(p.kp.sad("right"))


@pytest.mark.userland
def test_pluto5_rekeys_on_its_own_timer(tmp_path):
    """pluto 5.2, like 4.10, rekeys the Child SA on its own timer (salifetime=6s,
    rekeymargin=3s, rekeyfuzz=0%: about 3 s after it is up) with no EXPIRE from the kernel,
    and the old pair goes away."""
    _root()
    require_userland("trixie-libreswan")
    conf = "\tsalifetime=6s\n\trekeymargin=3s\n\trekeyfuzz=0%\n\tikelifetime=1h\n"
    make = pluto5(extra=conf)
    with Pair(tmp_path, make, make) as p:
        assert "initiator established Child SA" in p.left.initiate().stdout
        t_up, old = time.monotonic(), _spis(p.kp.sad("left"))
        assert all(sa["lft"]["soft_add_expires_seconds"] == 0 for sa in p.kp.sad("left"))
        assert _wait(lambda: len(_new_spis(p.kp, old)) == 2, timeout=15)
        assert 1.5 < time.monotonic() - t_up < 6.0
        assert _wait(lambda: not set(old) & set(_spis(p.kp.sad("left"))), timeout=10)
        assert p.kp.expires("left") == [] and p.kp.expires("right") == []
        assert "initiating rekey to replace Child SA #2" in p.left.logtext()


# charon 6.0.1's hw_offload=auto retries a refused packet offload as crypto offload, but a
# refused crypto offload fails the CHILD_SA: it does not fall back to software when the
# driver answers EINVAL (mlx5 on an authenticated state, netdevsim on ESN).
CHARON6_AUTO_FAILS = [
    ("mlx5", "packet", "aes128-sha256",
     ["received netlink error: mlx5_core: Cannot offload authenticated xfrm states (22)",
      "unable to add SAD entry"]),
    ("mlx5", "auto", "aes128-sha256",
     ["received netlink error: mlx5_core: Cannot offload authenticated xfrm states (22)",
      "failed to install SA with packet HW offload, trying with crypto HW offload",
      "unable to add SAD entry"]),
    ("netdevsim", "auto", "aes128gcm16-esn",
     ["received netlink error: netdevsim: Unsupported ipsec offload type (22)",
      "failed to install SA with packet HW offload, trying with crypto HW offload",
      "received netlink error: Device doesn't support offload with ESN (22)",
      "unable to add SAD entry"]),
]


@pytest.mark.userland
@pytest.mark.parametrize("dev,hw,esp,lines", CHARON6_AUTO_FAILS,
                         ids=[f"{c[0]}-{c[1]}-{c[2]}" for c in CHARON6_AUTO_FAILS])
def test_charon6_refused_offload_fails_the_child_sa(tmp_path, dev, hw, esp, lines):
    _root()
    require_userland("trixie-strongswan")
    c = charon6(hw_offload=hw, esp_proposals=esp)
    with Pair(tmp_path, c, c, device_kind=dev) as p:
        r = p.left.initiate()
        assert "initiate completed successfully" not in r.stdout
        log = p.daemons[1].logtext()                  # the responder installs first
        pos = [log.find(line) for line in lines]
        assert -1 not in pos and pos == sorted(pos), (lines, pos)
        assert "failed to establish CHILD_SA, keeping IKE_SA" in log
        assert "trying without" not in log
        assert [sa for sa in p.kp.sad("right") if sa["algs"]] == []


# ---- charon 6.0.1: the ESP proposal axis (CBC + HMAC, GCM with ESN) on each device ----

CBC, ESN = "aes128-sha256", "aes128gcm16-esn"
MLX5_AUTH = "received netlink error: mlx5_core: Cannot offload authenticated xfrm states (22)"
NSIM_TYPE = "received netlink error: netdevsim: Unsupported ipsec offload type (22)"
NO_ESN = "received netlink error: Device doesn't support offload with ESN (22)"
RETRY = "failed to install SA with packet HW offload, trying with crypto HW offload"
# charon's replay window 32 is accepted (fbfe8f9's airoha_soe_build_replay): the SAs are
# packet-offloaded, and the inbound packet policy is what the SOE refuses
SOE_IN_POLICY = ("received netlink error: airoha_eth: SOE requires software inbound XFRM "
                 "policies (95)")
# device, ESP, hw_offload → CHILD_SA up, SAs' flags, child policies' flags, charon's lines
CHARON6_ESP = [
    ("mlx5", CBC, "packet", False, [], {}, [MLX5_AUTH]),
    ("mlx5", CBC, "yes", False, [], {}, [MLX5_AUTH]),
    ("mlx5", CBC, "auto", False, [], {}, [MLX5_AUTH, RETRY]),
    ("mlx5", ESN, "packet", True, [PACKET, PACKET | INBOUND],
     {0: PACKET | INBOUND, 1: PACKET, 2: NONE}, ["HW offload: packet"]),
    ("mlx5", ESN, "yes", True, [0, INBOUND], {0: NONE, 1: NONE, 2: NONE},
     ["HW offload: crypto"]),
    ("mlx5", ESN, "auto", True, [PACKET, PACKET | INBOUND],
     {0: PACKET | INBOUND, 1: PACKET, 2: NONE}, ["HW offload: auto"]),
    ("netdevsim", CBC, "packet", False, [], {}, [NSIM_TYPE]),
    ("netdevsim", CBC, "yes", False, [], {},
     ["received netlink error: netdevsim: Failed to get key data for SA table (22)"]),
    ("netdevsim", CBC, "auto", False, [], {},
     [NSIM_TYPE, RETRY,
      "received netlink error: netdevsim: Failed to get key data for SA table (22)"]),
    ("netdevsim", ESN, "packet", False, [], {}, [NSIM_TYPE]),
    ("netdevsim", ESN, "yes", False, [], {}, [NO_ESN]),
    ("netdevsim", ESN, "auto", False, [], {}, [NSIM_TYPE, RETRY, NO_ESN]),
    ("airoha-soe", CBC, "packet", False, [], {}, [SOE_IN_POLICY]),
    ("airoha-soe", CBC, "yes", True, [NONE, NONE], {0: NONE, 1: NONE, 2: NONE},
     ["received netlink warning: airoha_eth: SOE supports XFRM packet offload only"]),
    ("airoha-soe", CBC, "auto", True, [NONE, NONE], {0: NONE, 1: PACKET, 2: NONE},
     [SOE_IN_POLICY, "failed to install SA with packet HW offload, trying without offload"]),
    ("airoha-soe", ESN, "packet", False, [], {},
     ["received netlink error: airoha_eth: SOE ESN is not supported yet (95)"]),
    ("airoha-soe", ESN, "yes", False, [], {}, [NO_ESN]),
    ("airoha-soe", ESN, "auto", False, [], {},
     ["received netlink error: airoha_eth: SOE ESN is not supported yet (95)", RETRY, NO_ESN]),
]


@pytest.mark.userland
@pytest.mark.parametrize("dev,esp,hw,up,sa_flags,sp_flags,lines", CHARON6_ESP,
                         ids=[f"{c[0]}-{c[1]}-{c[2]}" for c in CHARON6_ESP])
def test_charon6_esp_proposals_on_each_device(tmp_path, dev, esp, hw, up, sa_flags, sp_flags,
                                              lines):
    """Tunnel mode; a failed CHILD_SA is `unable to add SAD entry` (or, when the SAs were
    accepted and a policy was not, `unable to install IPsec policies (SPD)`): no software
    fallback for a refused crypto offload (EINVAL), only the kernel's own for EOPNOTSUPP."""
    _root()
    require_userland("trixie-strongswan")
    c = charon6(hw_offload=hw, esp_proposals=esp)
    with Pair(tmp_path, c, c, device_kind=dev) as p:
        r = p.left.initiate()
        assert ("initiate completed successfully" in r.stdout) == up, r.stdout
        flags = lambda o: NONE if o is None else o["flags"]
        assert sorted(flags(sa["offload"]) for sa in p.kp.sad("left") if sa["algs"]) == \
            sorted(sa_flags)
        assert {sp["dir"]: flags(sp["offload"]) for sp in p.kp.spd("left")
                if sp["src"].startswith("192.0.2.")} == sp_flags
        log = p.left.logtext() + p.daemons[1].logtext()
        for line in lines:
            assert line in log, line
        failed = "unable to add SAD entry" in log or \
            "unable to install IPsec policies (SPD) in kernel" in log
        assert failed == (not up)


# ---- pluto 5.2: the ESP proposal axis (CBC + HMAC, GCM without ESN) ----

PLUTO_CBC, NO_ESN_CONF = "aes128-sha2_256", "\tesn=no\n"
# device, esp, extra, nic-offload → outcome, SAs, policies in/out, the text that shows it
# (whack when up, the responder's log when stuck)
PLUTO5_ESP = [
    ("mlx5", PLUTO_CBC, "", "yes", "stuck", None, None,
     '"peer" #2: netlink ext_ack: mlx5_core: Cannot offload authenticated xfrm states'),
    ("mlx5", PLUTO_CBC, "", "packet", "stuck", None, None,
     '"peer" #2: netlink ext_ack: mlx5_core: Cannot offload authenticated xfrm states'),
    ("mlx5", GCM_PLUTO, NO_ESN_CONF, "yes", "up", [0, INBOUND], {0: NONE, 1: NONE},
     "{ESP=>"),
    ("mlx5", GCM_PLUTO, NO_ESN_CONF, "packet", "up", [PACKET, PACKET | INBOUND],
     {0: PACKET | INBOUND, 1: PACKET}, "nic-offload=packet"),
    # pluto proposes ESN with CBC too: the core's ESN check comes first
    ("netdevsim", PLUTO_CBC, "", "yes", "stuck", None, None,
     '"peer" #2: netlink ext_ack: Device doesn\'t support offload with ESN'),
    ("netdevsim", PLUTO_CBC, "", "packet", "stuck", None, None,
     '"peer" #2: netlink ext_ack: netdevsim: Unsupported ipsec offload type'),
    ("netdevsim", GCM_PLUTO, NO_ESN_CONF, "yes", "up", [0, INBOUND], {0: NONE, 1: NONE},
     "nic-offload=crypto"),
    ("netdevsim", GCM_PLUTO, NO_ESN_CONF, "packet", "stuck", None, None,
     '"peer" #2: netlink ext_ack: netdevsim: Unsupported ipsec offload type'),
]


@pytest.mark.userland
@pytest.mark.parametrize("dev,esp,extra,off,outcome,sa_flags,sp_flags,shown", PLUTO5_ESP,
                         ids=[f"{c[0]}-{c[1]}{'-esn-no' if c[2] else ''}-{c[3]}"
                              for c in PLUTO5_ESP])
def test_pluto5_esp_proposals_on_each_device(tmp_path, dev, esp, extra, off, outcome,
                                             sa_flags, sp_flags, shown):
    """Transport mode. Without ESN (`esn=no`) netdevsim takes pluto's crypto offload, which
    it refuses with ESN (the `yes` row above); CBC + HMAC is refused by both NICs and, as
    every refused Child SA on the responder, leaves the initiator stuck."""
    _root()
    require_userland("trixie-libreswan")
    make = pluto5(nic_offload=off, esp=esp, type="transport", extra=extra)
    with Pair(tmp_path, make, make, device_kind=dev) as p:
        left, right = p.daemons
        if outcome == "stuck":
            with stuck_initiation(left):
                assert shown in right.logtext()
                assert "Invalid argument (errno 22)" in right.logtext()
            return
        r = left.initiate()
        assert "initiator established Child SA" in r.stdout and shown in r.stdout, r.stdout
        flags = lambda o: NONE if o is None else o["flags"]
        assert sorted(flags(sa["offload"]) for sa in p.kp.sad("left")) == sorted(sa_flags)
        assert {sp["dir"]: flags(sp["offload"]) for sp in p.kp.spd("left")
                if sp["src"].startswith("192.0.2.")} == sp_flags
