"""charon 6.0.1 and pluto 5.2 on bonds of two emulated ports (docs/ike.md, "on a bond"):
bond mode × LAG model (upstream ``off``, the RFC's ``replicated`` before and after the
opt-in, the newest series' ``shared``) × daemon option × ESP proposal → CHILD_SA up or not,
the SAs' and policies' offload flags, which ports hold them, what a packet does (``xmit``),
and the daemon's own line."""
from __future__ import annotations

import pytest

from xfrmd.client import Service

from .conftest import require_userland
from .ike_helpers import GCM_CHARON, GCM_PLUTO, Pair, charon6, pluto5, stuck_initiation
from .ike_helpers import require_root as _root

pytestmark = pytest.mark.userland

MLX5 = ["mlx5", "mlx5"]
# the RFC example's converted mlx5-like port: the one a LAG model can offload to
MLX5C = [{"kind": "mlx5", "lag_converted": True}] * 2
SOE2 = {side: [{"name": f"p{i}", "kind": "airoha-soe", "nic": f"{side}-engine{i}",
                "master": "@"} for i in range(2)] for side in ("left", "right")}
BONDS = {
    "ab-off": dict(bond_mode="active-backup", slaves=MLX5),
    "ab-replicated": dict(bond_mode="active-backup", slaves=MLX5, lag_model="replicated"),
    "lacp-off": dict(slaves=MLX5),
    "lacp-replicated": dict(slaves=MLX5C, lag_model="replicated"),
    "lacp-replicated-optin": dict(slaves=MLX5C, lag_model="replicated", esp_hw_offload=True),
    "lacp-shared-mlx5": dict(slaves=MLX5C, lag_model="shared", esp_hw_offload=True),
    "lacp-shared-soe": dict(slaves=["airoha-soe", "airoha-soe"], lag_model="shared",
                            esp_hw_offload=True),
    # SOE ports of two engines (two NICs) per side
    "lacp-shared-soe2": dict(lag_model="shared", esp_hw_offload=True, lower=SOE2),
    "lacp-replicated-soe2-optin": dict(lag_model="replicated", esp_hw_offload=True,
                                       lower=SOE2),
}
# "lacp": 802.3ad hashing layer3+4 (LAG-eligible); "optin": esp-hw-offload switched on
# the bonds whose esp-hw-offload is on under a LAG model (shared over mlx5-like ports is not
# eligible: no shared state)
BYPASS_REFUSED = {"ab-replicated", "lacp-replicated-optin", "lacp-shared-soe",
                  "lacp-replicated-soe2-optin"}


def _flag(o) -> str:
    return "-" if o is None else {0: "0", 2: "I", 4: "P", 6: "P+I"}[o["flags"]]


def _observe(p) -> tuple:
    """(SAs' flags, child policies' {dir: flags}, {port: SAs in its table}, xmit's path or
    drop reason)."""
    kp = p.kp
    sas = sorted(_flag(sa["offload"]) for sa in kp.sad("left") if sa["algs"])
    sps = {sp["dir"]: _flag(sp["offload"]) for sp in kp.spd("left")
           if sp["src"].startswith("192.0.2.")}
    with Service(netns="left", path=kp.handle.path) as svc:
        devs = svc.query("show_offload")["devices"]
    ports = {n: len(d["sas"]) for n, d in devs.items() if d["sas"] and n.startswith("p")}
    res = kp.xmit("left", count=2, size=100)
    b = res["batches"][0]
    what = b["sas"][0]["path"] if b["sas"] else b.get("reason") or b.get("path")
    return sas, sps, ports, what


SOFT = {0: "-", 1: "-", 2: "-"}
PKT = {0: "P+I", 1: "P", 2: "-"}
NOT_SUPPORTED_R = "HW offload is not supported by device veth-r"
# bond, hw_offload, ESP → up, SAs, policies in/out/fwd, ports holding the SAs, a packet's
# path or drop reason, a line of either charon's log
CHARON6_BONDS = [
    ("ab-off", "packet", GCM_CHARON, False, [], {}, {}, None,
     "received netlink error: Policy offload is not supported (22)"),
    ("ab-off", "yes", GCM_CHARON, True, ["0", "I"], SOFT, {"p0": 2}, "crypto-offload",
     "HW offload: crypto"),
    ("ab-off", "auto", GCM_CHARON, True, ["P", "P+I"], SOFT, {"p0": 2}, "XfrmOutNoStates",
     "failed to install SA with packet HW offload, trying without offload"),
    ("ab-replicated", "packet", GCM_CHARON, True, ["P", "P+I"], PKT, {"p0": 2},
     "packet-offload", "HW offload: packet"),
    ("ab-replicated", "yes", GCM_CHARON, True, ["0", "I"], SOFT, {"p0": 2}, "crypto-offload",
     "HW offload: crypto"),
    ("ab-replicated", "auto", GCM_CHARON, True, ["P", "P+I"], PKT, {"p0": 2},
     "packet-offload", "HW offload: auto"),
    ("ab-replicated", "packet", "aes128gcm16-esn", True, ["P", "P+I"], PKT, {"p0": 2},
     "packet-offload", "HW offload: packet"),
    ("ab-replicated", "packet", "aes128-sha256", False, [], {}, {}, None,
     "received netlink error: mlx5_core: Cannot offload authenticated xfrm states (22)"),
    ("lacp-off", "packet", GCM_CHARON, False, [], {}, {}, None, NOT_SUPPORTED_R),
    ("lacp-off", "yes", GCM_CHARON, False, [], {}, {}, None, NOT_SUPPORTED_R),
    ("lacp-off", "auto", GCM_CHARON, True, ["-", "-"], SOFT, {}, "software",
     "HW offload is not supported by device veth-l"),
    ("lacp-replicated", "packet", GCM_CHARON, False, [], {}, {}, None, NOT_SUPPORTED_R),
    ("lacp-replicated", "auto", GCM_CHARON, True, ["-", "-"], SOFT, {}, "software",
     "HW offload is not supported by device veth-l"),
    ("lacp-replicated-optin", "packet", GCM_CHARON, True, ["P", "P+I"], PKT,
     {"p0": 2, "p1": 2}, "packet-offload", "HW offload: packet"),
    ("lacp-replicated-optin", "yes", GCM_CHARON, True, ["0", "I"], SOFT, {"p0": 2, "p1": 2},
     "crypto-offload", "HW offload: crypto"),
    ("lacp-replicated-optin", "auto", GCM_CHARON, True, ["P", "P+I"], PKT,
     {"p0": 2, "p1": 2}, "packet-offload", "HW offload: auto"),
    ("lacp-replicated-optin", "packet", "aes128gcm16-esn", False, [], {}, {}, None,
     "received netlink error: bonding: LAG does not support XFRM ESN offload (95)"),
    ("lacp-replicated-optin", "yes", "aes128gcm16-esn", True, ["-", "-"], SOFT, {}, "software",
     "received netlink warning: bonding: LAG does not support XFRM ESN offload"),
    # the SAs fall back to software (crypto refused with EOPNOTSUPP), the policies stay
    # packet-offloaded: every packet dropped
    ("lacp-replicated-optin", "auto", "aes128gcm16-esn", True, ["-", "-"], PKT, {},
     "XfrmOutPolError", "received netlink warning: bonding: LAG does not support XFRM ESN "
                        "offload"),
    ("lacp-replicated-optin", "packet", "aes128-sha256", False, [], {}, {}, None,
     "received netlink error: mlx5_core: Cannot offload authenticated xfrm states (slave p0) "
     "(22)"),
    ("lacp-shared-mlx5", "packet", GCM_CHARON, False, [], {}, {}, None, NOT_SUPPORTED_R),
    ("lacp-shared-mlx5", "auto", GCM_CHARON, True, ["-", "-"], SOFT, {}, "software",
     "HW offload is not supported by device veth-l"),
    # charon's replay window 32 is accepted (the SOE's hardware checks 64: fbfe8f9's
    # airoha_soe_build_replay), so both SAs are packet-offloaded
    ("lacp-shared-soe", "packet", GCM_CHARON, True, ["P", "P+I"], PKT, {"p0": 2, "p1": 2},
     "packet-offload", "HW offload: packet"),
    ("lacp-shared-soe", "yes", GCM_CHARON, True, ["-", "-"], SOFT, {}, "software",
     "received netlink warning: airoha_eth: SOE supports XFRM packet offload only"),
    ("lacp-shared-soe", "auto", GCM_CHARON, True, ["P", "P+I"], PKT, {"p0": 2, "p1": 2},
     "packet-offload", "HW offload: auto"),
    # two engines share no state: the shared model does not make the bond eligible
    ("lacp-shared-soe2", "packet", GCM_CHARON, False, [], {}, {}, None, NOT_SUPPORTED_R),
    ("lacp-shared-soe2", "auto", GCM_CHARON, True, ["-", "-"], SOFT, {}, "software",
     "HW offload is not supported by device veth-l"),
    # the RFC replicates onto each engine
    ("lacp-replicated-soe2-optin", "packet", GCM_CHARON, True, ["P", "P+I"], PKT,
     {"p0": 2, "p1": 2}, "packet-offload", "HW offload: packet"),
    ("lacp-replicated-soe2-optin", "yes", GCM_CHARON, True, ["-", "-"], SOFT, {}, "software",
     "received netlink warning: airoha_eth: SOE supports XFRM packet offload only (slave p0)"),
    ("lacp-replicated-soe2-optin", "auto", GCM_CHARON, True, ["P", "P+I"], PKT,
     {"p0": 2, "p1": 2}, "packet-offload", "HW offload: auto"),
]


@pytest.mark.parametrize("bond,hw,esp,up,sas,sps,ports,path,logged", CHARON6_BONDS,
                         ids=[f"{c[0]}-{c[1]}-{c[2]}" for c in CHARON6_BONDS])
def test_charon6_on_bonds(tmp_path, bond, hw, esp, up, sas, sps, ports, path, logged):
    _root()
    require_userland("trixie-strongswan")
    c = charon6(hw_offload=hw, esp_proposals=esp)
    with Pair(tmp_path, c, c, device_kind="bond", **BONDS[bond]) as p:
        r = p.left.initiate()
        assert ("initiate completed successfully" in r.stdout) == up, r.stdout
        got = _observe(p)
        assert got[:3] == (sas, sps, ports)
        if up:
            assert got[3] == path
        assert logged in p.left.logtext() + p.daemons[1].logtext()
        # the per-port IKE bypass policies charon installs at start with packet offload:
        # a LAG model's bond with esp-hw-offload on refuses them (no ESP template)
        assert ("received netlink error: bonding: Bond offloads ESP policies only (95)"
                in p.left.logtext()) == (bond in BYPASS_REFUSED)


# bond, nic-offload, extra conf → outcome (up, refused: whack says so at once, stuck: the
# responder's kernel refuses the Child SA and the initiator's whack never returns), SAs,
# policies in/out, ports, a packet's path, the line that shows it (the initiator's whack
# output when up or refused, either pluto's log when stuck)
NO_ID = "we cannot identify ourselves with either end of this connection"
ESN_REFUSED = "netlink ext_ack: bonding: LAG does not support XFRM ESN offload"
PLUTO5_BONDS = [
    ("ab-off", "yes", "", "up", ["0", "I"], {0: "-", 1: "-"}, {"p0": 2}, "crypto-offload",
     "nic-offload=crypto"),
    ("ab-off", "packet", "", "stuck", None, None, None, None,
     'ERROR: "peer" #2: kernel: xfrm XFRM_MSG_UPDPOLICY ESP response for flow (in): Invalid '
     'argument (errno 22)'),
    ("ab-replicated", "yes", "", "up", ["0", "I"], {0: "-", 1: "-"}, {"p0": 2},
     "crypto-offload", "nic-offload=crypto"),
    ("ab-replicated", "packet", "", "up", ["P", "P+I"], {0: "P+I", 1: "P"}, {"p0": 2},
     "packet-offload", "nic-offload=packet"),
    ("lacp-off", "yes", "", "refused", None, None, None, None, NO_ID),
    ("lacp-off", "packet", "", "refused", None, None, None, None, NO_ID),
    ("lacp-replicated", "packet", "", "refused", None, None, None, None, NO_ID),
    ("lacp-replicated-optin", "yes", "", "up", ["-", "-"], {0: "-", 1: "-"}, {}, "software",
     "nic-offload=crypto"),
    ("lacp-replicated-optin", "packet", "", "stuck", None, None, None, None, ESN_REFUSED),
    ("lacp-replicated-optin", "packet", "\tesn=no\n", "up", ["P", "P+I"],
     {0: "P+I", 1: "P"}, {"p0": 2, "p1": 2}, "packet-offload", "nic-offload=packet"),
    ("lacp-shared-mlx5", "packet", "", "refused", None, None, None, None, NO_ID),
    ("lacp-shared-soe", "yes", "", "up", ["-", "-"], {0: "-", 1: "-"}, {}, "software",
     "nic-offload=crypto"),
    ("lacp-shared-soe", "packet", "", "stuck", None, None, None, None, ESN_REFUSED),
]


@pytest.mark.parametrize("bond,off,extra,outcome,sas,sps,ports,path,shown", PLUTO5_BONDS,
                         ids=[f"{c[0]}-{c[1]}{'-esn-no' if c[2] else ''}"
                              for c in PLUTO5_BONDS])
def test_pluto5_on_bonds(tmp_path, bond, off, extra, outcome, sas, sps, ports, path, shown):
    """Transport mode, AES-GCM-128 (ESN proposed and chosen unless ``esn=no``)."""
    _root()
    require_userland("trixie-libreswan")
    make = pluto5(nic_offload=off, esp=GCM_PLUTO, type="transport", extra=extra)
    with Pair(tmp_path, make, make, device_kind="bond", **BONDS[bond]) as p:
        left, right = p.daemons
        if outcome == "stuck":
            with stuck_initiation(left) as whack:
                assert shown in left.logtext() + right.logtext()
                assert whack.poll() is None
            return
        r = left.initiate()
        bypass = ("ERROR: kernel: xfrm XFRM_MSG_NEWPOLICY add IPv4 ike port bypass for "
                  "nic-offload response for flow (out): Operation not supported (errno 95)")
        assert (bypass in left.logtext()) == (bond in BYPASS_REFUSED)
        assert ("initiator established Child SA" in r.stdout) == (outcome == "up"), r.stdout
        assert shown in r.stdout
        if outcome == "up":
            assert _observe(p) == (sas, sps, ports, path)
