"""IKE daemons and offload: what charon 5.9.8 and pluto 4.10 do with each emulated driver.
Each case asserts the daemon's observable reaction (CHILD_SA up or not; whether the SAs in
the emulated kernel carry XFRMA_OFFLOAD_DEV). docs/ike.md tabulates the same results."""
from __future__ import annotations

import pytest

from xfrmd.ike import charon, pluto
from xfrmd.ike.pair import KernelPair

from .ike_helpers import require_charon, require_pluto, require_root

GCM_CHARON, CBC_CHARON = "aes128gcm16", "aes128-sha256"
GCM_PLUTO, CBC_PLUTO = "aes_gcm128", "aes128-sha2_256"


def _offloads(sas):
    return sorted(s["offload"] is not None for s in sas)


def _charon_case(tmp_path, kind, hw_offload, esp, **pair):
    require_root()
    require_charon()
    with KernelPair(device_kind=kind, **pair) as kp:
        a = charon.Charon(kp.real, "left", str(tmp_path), kp.env("left"), hw_offload=hw_offload,
                          esp_proposals=esp)
        b = charon.Charon(kp.real, "right", str(tmp_path), kp.env("right"),
                          hw_offload=hw_offload, esp_proposals=esp)
        try:
            a.start()
            b.start()
            out = a.initiate().stdout
            return ("initiate completed successfully" in out, _offloads(kp.sad("left")),
                    a.logtext() + b.logtext())
        finally:
            a.stop()
            b.stop()


@pytest.mark.parametrize("kind, hw, esp, up, offloaded, log", [
    # accepted by the mlx5-like driver: both SAs offloaded
    ("mlx5", "yes", GCM_CHARON, True, [True, True], "HW offload: yes"),
    ("mlx5", "auto", GCM_CHARON, True, [True, True], "HW offload: auto"),
    # netdevsim cannot do CBC+HMAC: the kernel refuses the SA (EINVAL; 5.9.8 sets no EXT_ACK,
    # so it logs only the errno); 5.9.8 does not retry, even with auto: the CHILD_SA fails
    ("netdevsim", "yes", CBC_CHARON, False, [], "received netlink error: Invalid argument (22)"),
    ("netdevsim", "auto", CBC_CHARON, False, [], "received netlink error: Invalid argument (22)"),
    ("netdevsim", "yes", GCM_CHARON, True, [True, True], "HW offload: yes"),
    # a device without esp-hw-offload: yes fails before any netlink message, auto goes software
    ("veth", "yes", GCM_CHARON, False, [], "HW offload is not supported by device"),
    ("veth", "auto", GCM_CHARON, True, [False, False], "HW offload: auto"),
    # mlx5 refuses authenticated (CBC+HMAC) states for crypto offload
    ("mlx5", "yes", CBC_CHARON, False, [], "unable to add SAD entry"),
])
def test_charon_offload(tmp_path, kind, hw, esp, up, offloaded, log):
    got_up, got_off, text = _charon_case(tmp_path, kind, hw, esp)
    assert (got_up, got_off) == (up, offloaded), text[-4000:]
    assert log in text


def _pluto_case(tmp_path, kind, nic, esp, **pair):
    require_root()
    require_pluto()
    with KernelPair(device_kind=kind, **pair) as kp:
        a = pluto.Pluto(kp.real, "left", str(tmp_path), kp.env("left"), nic_offload=nic, esp=esp)
        b = pluto.Pluto(kp.real, "right", str(tmp_path), kp.env("right"), nic_offload=nic, esp=esp)
        try:
            a.start()
            b.start()
            out = a.initiate().stdout
            return ("initiator established Child SA" in out, _offloads(kp.sad("left")),
                    out + a.logtext() + b.logtext())
        finally:
            a.stop()
            b.stop()


@pytest.mark.parametrize("kind, nic, esp, up, offloaded", [
    ("mlx5", "yes", GCM_PLUTO, True, [True, True]),
    ("mlx5", "auto", GCM_PLUTO, True, [True, True]),
    # auto: the kernel refuses the offloaded SA, pluto 4.10 retries once without offload
    ("netdevsim", "auto", CBC_PLUTO, True, [False, False]),
    # yes: no fallback, the Child SA fails
    ("netdevsim", "yes", CBC_PLUTO, False, []),
    # auto on a device without esp-hw-offload: software; yes sets the attribute anyway and
    # the kernel falls back to software for crypto offload on a device without offload ops
    ("veth", "auto", GCM_PLUTO, True, [False, False]),
    ("veth", "yes", GCM_PLUTO, True, [False, False]),
])
def test_pluto_offload(tmp_path, kind, nic, esp, up, offloaded):
    got_up, got_off, text = _pluto_case(tmp_path, kind, nic, esp)
    assert (got_up, got_off) == (up, offloaded), text[-4000:]


def _bond(mode, model, slave_kind, optin=False) -> dict:
    """KernelPair arguments: the IKE interface is a bond of two emulated ports (``optin``:
    the bond's esp-hw-offload switched on, as ``ethtool -K`` would)."""
    extra = {s: {"mode": mode, "xmit_hash_policy": "layer3+4", "lag_model": model,
                 "esp_hw_offload": optin} for s in ("left", "right")}
    # mlx5-like slaves are the RFC example's converted port (lag_converted)
    conv = {"lag_converted": True} if slave_kind == "mlx5" else {}
    lower = {s: [{"name": f"p{i}", "kind": slave_kind, "nic": f"{s}-nic", "master": "@", **conv}
                 for i in range(2)] for s in ("left", "right")}
    return {"extra": extra, "lower": lower}


def _charon_bond_case(tmp_path, mode, model, slave_kind, hw):
    optin = model.endswith("+optin")
    return _charon_case(tmp_path, "bond", hw, GCM_CHARON,
                        **_bond(mode, model.removesuffix("+optin"), slave_kind, optin))


@pytest.mark.parametrize("mode, model, slaves, hw, up, offloaded, log", [
    # upstream: an active-backup bond offloads on its active slave
    ("active-backup", "off", "mlx5", "yes", True, [True, True], "HW offload: yes"),
    # upstream 802.3ad has no esp-hw-offload: charon refuses before any netlink request
    ("802.3ad", "off", "mlx5", "yes", False, [], "HW offload is not supported by device"),
    # the RFC model is opt-in (the bond's esp-hw-offload starts off): the same for yes,
    # software for auto
    ("802.3ad", "replicated", "mlx5", "yes", False, [], "HW offload is not supported by device"),
    ("802.3ad", "replicated", "mlx5", "auto", True, [False, False], "HW offload: auto"),
    # opted in (esp-hw-offload on): one copy per port, CHILD_SA up, offloaded
    ("802.3ad", "replicated+optin", "mlx5", "yes", True, [True, True], "HW offload: yes"),
    # the newest series over mlx5-like ports (no shared state): not eligible
    ("802.3ad", "shared", "mlx5", "yes", False, [], "HW offload is not supported by device"),
    # over SOE ports of one engine: eligible, but charon asks for crypto offload, which the
    # SOE refuses with EOPNOTSUPP: the kernel falls back to software and the CHILD_SA is up
    ("802.3ad", "shared", "airoha-soe", "yes", True, [False, False], "HW offload: yes"),
])
def test_charon_offload_on_bonds(tmp_path, mode, model, slaves, hw, up, offloaded, log):
    got_up, got_off, text = _charon_bond_case(tmp_path, mode, model, slaves, hw)
    assert (got_up, got_off) == (up, offloaded), text[-4000:]
    assert log in text


@pytest.mark.parametrize("mode, model, slaves, nic, up, offloaded", [
    ("active-backup", "off", "mlx5", "yes", True, [True, True]),
    # upstream bond_ipsec_add_sa does not look at the mode and xfrm_dev_state_add not at the
    # features: with nic-offload=yes (no feature check in pluto) an 802.3ad bond takes the
    # SAs onto its current slave — offloaded SAs that bond_ipsec_offload_ok would never use
    ("802.3ad", "off", "mlx5", "yes", True, [True, True]),
    # auto checks the bond's esp-hw-offload, which 802.3ad does not have: software
    ("802.3ad", "off", "mlx5", "auto", True, [False, False]),
    # the RFC model with its opt-in still off refuses crypto offload with EOPNOTSUPP: the
    # kernel falls back to software
    ("802.3ad", "replicated", "mlx5", "yes", True, [False, False]),
    # opted in, the RFC model still refuses pluto's ESN SAs ("LAG does not support XFRM ESN
    # offload", EOPNOTSUPP): software — where charon's (no ESN) are offloaded
    ("802.3ad", "replicated+optin", "mlx5", "yes", True, [False, False]),
    # the shared model over one SOE engine: crypto offload refused by the SOE, software
    ("802.3ad", "shared", "airoha-soe", "yes", True, [False, False]),
])
def test_pluto_offload_on_bonds(tmp_path, mode, model, slaves, nic, up, offloaded):
    optin = model.endswith("+optin")
    got_up, got_off, text = _pluto_case(tmp_path, "bond", nic, GCM_PLUTO,
                                        **_bond(mode, model.removesuffix("+optin"), slaves, optin))
    assert (got_up, got_off) == (up, offloaded), text[-4000:]
    assert "replay_window: 128" in text and "ESN_YES" in text     # pluto proposes ESN
