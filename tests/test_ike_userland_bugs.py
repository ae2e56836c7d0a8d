"""The daemons' open offload issues as scenarios (docs/ike.md, "The daemons' own offload
bugs"): libreswan 1603 (nic-offload=packet with NAT-T), 1697 (offload on a kernel without
XFRM_OFFLOAD), 1520 (no nic-offload=auto in 5.2: tests/test_ike_userland.py's `auto` rows),
and charon 6's start-up probes (an XFRM interface, per-port packet-offload bypass
policies). When a daemon fixes one, the same test shows the fix."""
from __future__ import annotations

import io
import re

import pytest

from xfrmd.client import Service
from xfrmd.ike.charon import Charon
from xfrmd.ike.pair import KernelPair
from xfrmd.ike.pluto import Pluto

from .conftest import require_userland
from .ike_helpers import (GCM_CHARON, GCM_PLUTO, INBOUND, PACKET, Pair, charon6, pluto5,
                          stuck_initiation)
from .ike_helpers import require_root as _root

pytestmark = pytest.mark.userland

NATT = "\tencapsulation=yes\n"


def test_pluto5_packet_offload_with_nat_t_is_refused_by_addconn(tmp_path):
    """libreswan issue 1603: with NAT-T forced (encapsulation=yes), 5.2 refuses
    nic-offload=packet when the connection is added — before any kernel request."""
    _root()
    require_userland("trixie-libreswan")
    make = pluto5(nic_offload="packet", esp=GCM_PLUTO, type="transport", extra=NATT)
    with pytest.raises(RuntimeError, match='"peer": failed to add connection: '
                                           'nic-offload=packet cannot specify '
                                           'encapsulation=yes'):
        with Pair(tmp_path, make, make, device_kind="mlx5"):
            pass


def test_pluto5_crypto_offload_with_nat_t_is_refused_by_the_nic(tmp_path):
    """… and the crypto offload it still allows with NAT-T is what an mlx5 port refuses: the
    responder's ESP-in-UDP SA gets EINVAL, extack "mlx5_core: Encapsulation is supported in
    packet offload mode only" (mlx5e_xfrm_validate_state), so with NAT-T pluto 5.2 gets no
    offload at all on such a port; the initiator is left stuck (see the "stuck" rows)."""
    _root()
    require_userland("trixie-libreswan")
    make = pluto5(nic_offload="yes", esp=GCM_PLUTO, type="transport", extra=NATT)
    with Pair(tmp_path, make, make, device_kind="mlx5") as p:
        left, right = p.daemons
        with stuck_initiation(left):
            log = right.logtext()
            assert "adding xfrm-encap-tmpl when adding sa encap_type=2(espinudp) sport=4500 " \
                   "dport=4500" in log
            assert "Invalid argument (errno 22)" in log
            assert ('"peer" #2: netlink ext_ack: mlx5_core: Encapsulation is supported in '
                    'packet offload mode only') in log
            assert "IKE_AUTH response missing v2SA, v2TSi or v2TSr" in left.logtext()


def _no_xfrm_offload(kp) -> None:
    """The build profile is the kernel's, asked through either side's namespace."""
    with Service(netns="left", path=kp.handle.path) as svc:
        res = svc.query("kconfig", action="set", values={"XFRM_OFFLOAD": "n"})
        assert res["errno"] == 0, res


@pytest.mark.parametrize("daemon", ["charon6", "pluto5"])
def test_offload_on_a_kernel_without_xfrm_offload(tmp_path, daemon):
    """libreswan issue 1697, the kernel side: a kernel built without CONFIG_XFRM_OFFLOAD
    (``xfrmd ctl kconfig set XFRM_OFFLOAD=n``) accepts XFRMA_OFFLOAD_DEV and ignores it (the
    xfrm_dev_state_add / xfrm_dev_policy_add stubs return 0). Neither daemon can tell: their
    start-up probes look at the port's esp-hw-offload feature (pluto:
    kernel_ops_detect_nic_offload, "Kernel supports NIC esp-hw-offload") and at the kernel
    version ("kernel >= 6.7 is GTG for h/w offload"), both answer yes, the Child SA comes up
    "offloaded" in the daemon's words and in software in the kernel's."""
    _root()
    if daemon == "charon6":
        require_userland("trixie-strongswan")
        make = charon6(hw_offload="packet", esp_proposals=GCM_CHARON)
    else:
        require_userland("trixie-libreswan")
        make = pluto5(nic_offload="packet", esp=GCM_PLUTO, type="transport")
    with Pair(tmp_path, make, make, setup=_no_xfrm_offload, device_kind="mlx5") as p:
        r = p.left.initiate()
        assert [sa["offload"] for sa in p.kp.sad("left")] == [None, None]
        assert not any(sp["offload"] for sp in p.kp.spd("left"))
        res = p.kp.xmit("left", count=2, size=100)
        assert [s["path"] for s in res["batches"][0]["sas"]] == ["software"]
        log = p.left.logtext()
        if daemon == "charon6":
            assert "initiate completed successfully" in r.stdout, r.stdout
            assert log.count("HW offload: packet") == 2
            assert "received netlink error" not in log.split("CHILD_SA ch{1} state change: "
                                                           "CREATED => INSTALLING")[1]
        else:
            assert "nic-offload=packet" in r.stdout, r.stdout
            assert "type=ESP(nic-offload=packet)" in p.left.status()
            for line in ("Kernel supports NIC esp-hw-offload",
                         "kernel_ops_detect_nic_offload() ... yes",
                         "kernel >= 6.7 is GTG for h/w offload",
                         "kernel: NIC esp-hw-offload packet offload for connection 'peer' "
                         "enabled on interface veth-l"):
                assert line in log, line


@pytest.mark.parametrize("dev", ["mlx5", "netdevsim"])
def test_charon6_startup_probes(tmp_path, dev):
    """charon 6.0.1 at start: (1) it probes for XFRM interfaces by creating one
    (RTM_NEWLINK kind xfrm, `xfrmi-test-N`), setting it up and deleting it again, and logs
    `XFRM interfaces supported by kernel`; (2) it installs its IKE bypass policies once per
    port with packet offload: offloaded on an mlx5-like port (in P+I, out P, IPv4 and
    IPv6), refused on netdevsim ("Policy offload is not supported", EINVAL), where it keeps
    them in software."""
    _root()
    require_userland("trixie-strongswan")
    with KernelPair(device_kind=dev) as kp:
        c = Charon(kp.real, "left", str(tmp_path), kp.env("left"),
                   userland="trixie-strongswan")
        try:
            c.start()
            spd = kp.spd("left")
        finally:
            c.stop()
        log = c.logtext()
        buf = io.StringIO()
        kp.dump_trace(buf)
    trace = buf.getvalue()
    for req in ("RTM_NEWLINK flags=0x605", "RTM_SETLINK flags=0x5", "RTM_DELLINK flags=0x5"):
        m = re.search(rf'left (sock\d+) → {req} seq=(\d+) .*\[IFLA_IFNAME="xfrmi-test-\d+"',
                      trace)
        assert m, req
        assert f"left {m[1]} ← NLMSG_ERROR ack for {req.split()[0]} seq={m[2]} " in trace
    assert "XFRM interfaces supported by kernel" in log
    assert "Unknown device type" not in log
    offloaded = sorted((sp["src"], sp["dir"], sp["offload"]["flags"]) for sp in spd
                       if sp["offload"])
    if dev == "mlx5":
        assert "Policy offload is not supported" not in log
        assert sorted(set(offloaded)) == [("0.0.0.0/0", 0, PACKET | INBOUND),
                                          ("0.0.0.0/0", 1, PACKET),
                                          ("::/0", 0, PACKET | INBOUND), ("::/0", 1, PACKET)]
    else:
        assert "received netlink error: Policy offload is not supported (22)" in log
        assert offloaded == []


def test_pluto5_startup_probe_on_a_port_without_offload(tmp_path):
    """libreswan issue 1697, the NIC side: on a veth (no esp-hw-offload) pluto 5.2's start-up
    probe says no for the port, yet still logs that the kernel supports offload (the kernel
    knows the feature's name); the connection is then refused (the veth rows)."""
    _root()
    require_userland("trixie-libreswan")
    with KernelPair(device_kind="veth") as kp:
        d = Pluto(kp.real, "left", str(tmp_path), kp.env("left"), userland="trixie-libreswan",
                  nic_offload="packet", esp=GCM_PLUTO, type="transport")
        try:
            d.start()
        finally:
            d.stop()
    log = d.logtext()
    probe = log[log.index("kernel_ops_detect_nic_offload() veth-l ..."):]
    assert re.search(r"kernel_ops_detect_nic_offload\(\) \.\.\. (yes|no)", probe)[1] == "no"
    assert "Kernel supports NIC esp-hw-offload" in log
