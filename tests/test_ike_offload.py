"""IKE daemons and offload: what charon 5.9.8 and pluto 4.10 do with each emulated driver.
Each case asserts the daemon's observable reaction (CHILD_SA up or not; whether the SAs in
the emulated kernel carry XFRMA_OFFLOAD_DEV). docs/ike.md tabulates the same results."""
from __future__ import annotations

import os

import pytest

from xfrmd.ike import charon, pluto
from xfrmd.ike.pair import KernelPair

from .conftest import require

GCM_CHARON, CBC_CHARON = "aes128gcm16", "aes128-sha256"
GCM_PLUTO, CBC_PLUTO = "aes_gcm128", "aes128-sha2_256"


def _offloads(sas):
    return sorted(s["offload"] is not None for s in sas)


def _charon_case(tmp_path, kind, hw_offload, esp):
    require(os.geteuid() == 0, "needs root for network namespaces")
    require(charon.available(), "needs strongswan-charon and strongswan-swanctl")
    with KernelPair(device_kind=kind) as kp:
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


def _pluto_case(tmp_path, kind, nic, esp):
    require(os.geteuid() == 0, "needs root for network namespaces")
    require(pluto.available(), "needs the extracted libreswan (tools/test-all.sh)")
    with KernelPair(device_kind=kind) as kp:
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
