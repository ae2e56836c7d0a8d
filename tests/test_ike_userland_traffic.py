"""Traffic and lifetimes under packet offload (docs/ike.md, "Traffic and expiry under packet
offload"): the hardware counts — what ``KernelPair.xmit`` sends through a packet-offloaded SA
shows in `ipsec trafficstatus` (pluto 5.2) and `swanctl --list-sas` (charon 6.0.1, see
test_charon6_rekeys_on_the_kernels_soft_byte_expire), and byte/packet lifetimes expire from
the hardware counters: soft EXPIRE → the daemon rekeys, hard EXPIRE → the state is gone."""
from __future__ import annotations

import re

import pytest

from xfrmd.client import Service

from .conftest import require_userland
from .ike_helpers import GCM_CHARON, GCM_PLUTO, PACKET, Pair, charon6, pluto5
from .ike_helpers import require_root as _root
from .ike_helpers import wait as _wait

pytestmark = pytest.mark.userland


def _out(kp) -> dict:
    return [sa for sa in kp.sad("left") if sa["src"] == "192.0.2.1"][0]


def test_pluto5_trafficstatus_counts_the_hardware(tmp_path):
    """pluto 5.2, nic-offload=packet on mlx5-like ports: `ipsec trafficstatus` asks the
    kernel (GETSA → the driver's update_stats) and shows what the port counted: 10 packets of
    100 bytes, 108 bytes each as the transport-mode SA counts them."""
    _root()
    require_userland("trixie-libreswan")
    make = pluto5(nic_offload="packet", esp=GCM_PLUTO, type="transport")
    with Pair(tmp_path, make, make, device_kind="mlx5") as p:
        assert "initiator established Child SA" in p.left.initiate().stdout
        assert "inBytes=0, outBytes=0," in p.left.status()
        res = p.kp.xmit("left", count=10, size=100)
        assert [s["path"] for s in res["batches"][0]["sas"]] == ["packet-offload"]
        out = _out(p.kp)
        with Service(netns="left", path=p.kp.handle.path) as svc:
            hw = svc.query("show_offload", dev="veth-l")["devices"]["veth-l"]["sas"]
        assert [s["packets"] for s in hw if s["spi"] == out["spi"]] == [10]
        status = p.left.status()
        assert "type=ESP(nic-offload=packet)" in status and "outBytes=1080," in status
        assert p.kp.xmit("left", count=5, size=100)["sent"] == 5
        assert "outBytes=1620," in p.left.status()


# daemon, limit → the SA's limits, the daemon's lines (spi formatted in)
HARD = {
    ("charon6", "bytes"): ({"rekey_bytes": 3000, "life_bytes": 5000, "rand_bytes": 0},
                           ["creating rekey job for CHILD_SA ESP/0x{spi:08x}/192.0.2.2",
                            "creating delete job for CHILD_SA ESP/0x{spi:08x}/192.0.2.2"]),
    ("charon6", "packets"): ({"rekey_packets": 3, "life_packets": 5, "rand_packets": 0},
                             ["creating rekey job for CHILD_SA ESP/0x{spi:08x}/192.0.2.2",
                              "creating delete job for CHILD_SA ESP/0x{spi:08x}/192.0.2.2"]),
    ("pluto5", "bytes"): ("\tipsec-max-bytes=5000\n",
                          ["received soft EXPIRE for outbound SPI {spi:x} bytes 2016 "
                           "packets 2 rekey=yes; replacing",
                           "received hard EXPIRE for outbound SPI {spi:x} bytes 5040 "
                           "packets 5 rekey=yes; already soft expired"]),
    ("pluto5", "packets"): ("\tipsec-max-packets=5\n",
                            ["received soft EXPIRE for outbound SPI {spi:x} bytes 1008 "
                             "packets 1 rekey=yes; replacing",
                             "received hard EXPIRE for outbound SPI {spi:x} bytes 5040 "
                             "packets 5 rekey=yes; already soft expired"]),
}


@pytest.mark.parametrize("daemon,limit", list(HARD), ids=[f"{d}-{l}" for d, l in HARD])
def test_hard_expiry_under_packet_offload(tmp_path, daemon, limit):
    """Eight packets of 1000 bytes through the packet-offloaded outbound SA (1008 bytes each
    as the mlx5-like hardware counts them) with a hard limit of 5000 bytes or 5 packets: the
    soft and then the hard EXPIRE come from the hardware counters, the fifth packet is the
    last one sent and the state is deleted (the rest: XfrmOutNoStates). charon 6.0.1 makes a
    rekey job for the soft one and a delete job for the hard one; pluto 5.2 replaces on the
    soft one and notes the hard one as already soft-expired. Both end with a new,
    packet-offloaded pair."""
    _root()
    conf, lines = HARD[(daemon, limit)]
    if daemon == "charon6":
        require_userland("trixie-strongswan")
        make = charon6(hw_offload="packet", esp_proposals=GCM_CHARON, limits=conf)
        up = "initiate completed successfully"
    else:
        require_userland("trixie-libreswan")
        make = pluto5(nic_offload="packet", esp=GCM_PLUTO, type="transport", extra=conf)
        up = "initiator established Child SA"
    with Pair(tmp_path, make, make, device_kind="mlx5") as p:
        assert up in p.left.initiate().stdout
        old = {sa["spi"] for sa in p.kp.sad("left")}
        spi = _out(p.kp)["spi"]
        res = p.kp.xmit("left", count=8, size=1000)
        assert (res["sent"], res["dropped"]) == (5, 3)
        assert [b.get("reason") for b in res["batches"][1:]] == ["XfrmOutNoStates"] * 2
        assert [(e["spi"], e["hard"]) for e in p.kp.expires("left")] == [(spi, False),
                                                                          (spi, True)]
        for line in lines:
            # pluto's SPI with or without leading zeros
            texts = {line.format(spi=spi), line.replace("{spi:x}", "{spi:08x}").format(spi=spi)}
            assert _wait(lambda: any(t in p.left.logtext() for t in texts), timeout=5), texts
        # the new pair (a larval ACQUIRE state for the dropped packets may sit beside it)
        new = lambda: [sa for sa in p.kp.sad("left") if sa["algs"] and sa["spi"] not in old]
        if daemon == "charon6":
            assert _wait(lambda: len(new()) >= 2, timeout=20), p.kp.sad("left")
        else:
            # pluto 5.2 queues the replace on the soft EXPIRE; when the hard EXPIRE of the
            # same burst deletes the Child SA first, the queued rekey aborts and no pair
            # comes back until an ACQUIRE (docs/ike.md): either outcome, nothing else
            vanished = "vanished abort this exchange"
            assert _wait(lambda: len(new()) >= 2 or vanished in p.left.logtext(),
                         timeout=20), p.kp.sad("left")
            if len(new()) < 2:
                assert vanished in p.left.logtext() and new() == [], p.kp.sad("left")
                return
        assert all(sa["offload"]["flags"] & PACKET for sa in new())


def test_charon6_life_bytes_without_rekey_bytes_is_refused_by_mlx5(tmp_path):
    """charon 6.0.1 with a hard byte limit and no soft one (rekey_bytes = 0: soft infinite):
    the mlx5-like port refuses the packet-offloaded SA ("mlx5_core: Hard byte limit must be
    greater than soft one", EINVAL, mlx5e_xfrm_validate_state) and the CHILD_SA fails."""
    _root()
    require_userland("trixie-strongswan")
    c = charon6(hw_offload="packet", esp_proposals=GCM_CHARON,
                limits={"rekey_bytes": 0, "life_bytes": 5000, "rand_bytes": 0})
    with Pair(tmp_path, c, c, device_kind="mlx5") as p:
        assert "initiate completed successfully" not in p.left.initiate().stdout
        log = p.daemons[1].logtext()
        assert re.search(r"received netlink error: mlx5_core: Hard byte limit must be greater "
                         r"than soft one \(22\)", log)
        assert "unable to add SAD entry" in log


def _flag(o) -> str:
    return "-" if o is None else {0: "0", 2: "I", 4: "P", 6: "P+I"}[o["flags"]]


def _child_policies(kp) -> dict:
    return {sp["dir"]: _flag(sp["offload"]) for sp in kp.spd("left")
            if sp["src"].startswith("192.0.2.")}


@pytest.mark.parametrize("daemon", ["charon6", "pluto5"])
@pytest.mark.parametrize("dev", ["mlx5", "netdevsim"])
def test_trap_policies_with_packet_offload(tmp_path, daemon, dev):
    """Trap (on-demand) policies with packet offload: charon 6.0.1 `start_action = trap`,
    pluto 5.2 `whack --route`. On mlx5-like ports the trap policies are packet-offloaded
    (charon: in and out, pluto: out only); the first packet finds no state, the kernel sends
    an ACQUIRE and drops it (xfrm_larval_drop), the daemon negotiates, and the next packet
    leaves in packet offload. On netdevsim the packet-offloaded trap policy is refused
    (EINVAL): charon logs `installing trap failed`, pluto `could not route` — and with no
    policy at all, the flow's packets leave **in the clear**."""
    _root()
    if daemon == "charon6":
        require_userland("trixie-strongswan")
        make = charon6(esp_proposals=GCM_CHARON, children={
            "ch": {"mode": "tunnel", "hw_offload": "packet", "start_action": "trap"}})
    else:
        require_userland("trixie-libreswan")
        make = pluto5(nic_offload="packet", esp=GCM_PLUTO, type="transport")
    with Pair(tmp_path, make, make, device_kind=dev) as p:
        routed = [d.whack("--name", "peer", "--route", check=False).stdout
                  for d in p.daemons] if daemon == "pluto5" else []
        if dev == "netdevsim":
            if daemon == "charon6":
                assert _wait(lambda: "installing trap failed" in p.left.logtext(), timeout=5)
                assert "received netlink error: Policy offload is not supported (22)" in \
                    p.left.logtext()
            else:
                assert ('ERROR: "peer": kernel: xfrm XFRM_MSG_UPDPOLICY %trap(allow) response '
                        'for flow (out): Invalid argument (errno 22)') in routed[0]
                assert '"peer": could not route' in routed[0]
            assert _child_policies(p.kp) == {}
            res = p.kp.xmit("left", count=1, size=100)
            assert res["sent"] == 1 and res["batches"][0]["path"] == "clear"
            return
        trap = {0: "P+I", 1: "P", 2: "-"} if daemon == "charon6" else {1: "P"}
        assert _wait(lambda: _child_policies(p.kp) == trap, timeout=5), _child_policies(p.kp)
        assert p.kp.sad("left") == []
        res = p.kp.xmit("left", count=1, size=100)
        b = res["batches"][0]
        assert (res["sent"], b["reason"], b["acquire"]) == (
            0, "XfrmOutNoStates", [1 if daemon == "charon6" else 0])
        assert _wait(lambda: len([sa for sa in p.kp.sad("left") if sa["algs"]]) == 2)
        assert sorted(_flag(sa["offload"]) for sa in p.kp.sad("left") if sa["algs"]) == [
            "P", "P+I"]
        assert [s["path"] for s in p.kp.xmit("left", count=1, size=100)["batches"][0]["sas"]] \
            == ["packet-offload"]
        # the larval state of the ACQUIRE (no algorithms, offload flagged for the device):
        # gone once charon's SAs are in; pluto's leave it in the SAD (until it expires)
        larval = [_flag(sa["offload"]) for sa in p.kp.sad("left") if not sa["algs"]]
        assert larval == ([] if daemon == "charon6" else ["P"])
        if daemon == "charon6":
            assert "creating acquire job for policy 192.0.2.1/32[17] === 192.0.2.2/32[17] " \
                   "with reqid {1}" in p.left.logtext()
        else:
            assert '"peer": initiate on-demand for packet 192.0.2.1-UDP->192.0.2.2:0' in \
                p.left.logtext()
