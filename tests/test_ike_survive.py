"""What a daemon must survive under offload (docs/ike.md, "What a daemon must survive"):
charon 6.0.1 and pluto 5.2 (trixie userlands) with their SAs offloaded, and then the
hardware or the bond changes under them — the kernel tells the daemon nothing, or only what
rtnetlink says. Each test records what the emulated kernel did (SAD, the drivers' tables,
``xmit``'s verdict) and each daemon's own reaction (its log, `swanctl --list-sas`, `ipsec
trafficstatus`)."""
from __future__ import annotations

import os
import subprocess

import pytest

from xfrmd.client import Service

from .conftest import require_userland
from .ike_helpers import GCM_CHARON, GCM_PLUTO, INBOUND, PACKET, Pair, charon6, pluto5
from .ike_helpers import require_root as _root
from .ike_helpers import spis as _spis
from .ike_helpers import wait as _wait

pytestmark = pytest.mark.userland

CHARON_UP = "initiate completed successfully"
PLUTO_UP = "initiator established Child SA"


def _query(kp, op: str, netns: str = "left", **kw) -> dict:
    with Service(netns=netns, path=kp.handle.path) as svc:
        return svc.query(op, **kw)


def _hw(kp, side: str = "left") -> dict:
    """Each offload device's hardware table: ``{dev: [(spi, port or slave), …]}``."""
    devs = _query(kp, "show_offload", netns=side)["devices"]
    return {name: sorted((s["spi"], s.get("slave") or s.get("port")) for s in d["sas"])
            for name, d in devs.items()}


def _paths(res: dict) -> list:
    """``xmit``'s verdict per batch: (result, the SAs' paths, the drop reason)."""
    return [(b["result"], [s["path"] for s in b["sas"]], b.get("reason")) for b in
            res["batches"]]


def _daemon(name: str, **kw):
    if name == "charon6":
        require_userland("trixie-strongswan")
        return charon6(esp_proposals=GCM_CHARON, **kw)
    require_userland("trixie-libreswan")
    kw.setdefault("nic_offload", "packet")
    return pluto5(esp=GCM_PLUTO, type="transport", **kw)


def _up(p) -> None:
    r = p.left.initiate()
    assert (CHARON_UP if p.left.install.what == "charon" else PLUTO_UP) in r.stdout, r.stdout
    assert _wait(lambda: len(p.kp.sad("right")) == 2)


def _traffic(p) -> str:
    """What the left daemon reports about its Child SA's traffic."""
    return p.left.list_sas() if p.left.install.what == "charon" else p.left.status()


# ---- active-backup failover during traffic, packet offload ----

AB_RFC = dict(device_kind="bond", bond_mode="active-backup", slaves=["mlx5", "mlx5"],
              lag_model="replicated", esp_hw_offload=True)


@pytest.mark.parametrize("daemon,read_first", [("charon6", True), ("charon6", False),
                                               ("pluto5", True)])
def test_active_backup_failover_during_traffic(tmp_path, daemon, read_first):
    """An active-backup bond of two mlx5-like ports (the RFC model, which lets packet-offload
    policies onto an active-backup bond; upstream refuses them, see the next test). The
    active port loses carrier between two bursts: the bond moves both SAs to the other port
    (bond_ipsec_del_sa_all / add_sa_all), traffic goes on in packet offload, the daemon is
    told nothing and needs nothing — the SAs and SPIs are unchanged. The counts survive the
    move if the daemon read them (GETSA → xdo_dev_state_update_stats) before it; packets the
    old port counted but nobody read are lost with its hardware SA (``read_first=False``:
    charon then shows only the second burst)."""
    _root()
    make = _daemon(daemon, **({"hw_offload": "packet"} if daemon == "charon6" else {}))
    with Pair(tmp_path, make, make, **AB_RFC) as p:
        _up(p)
        before = _spis(p.kp.sad("left"))
        assert sorted(sa["offload"]["flags"] for sa in p.kp.sad("left")) == [
            PACKET, PACKET | INBOUND]
        spis = sorted(sa["spi"] for sa in p.kp.sad("left"))
        assert _hw(p.kp)["p0"] == [(s, "p0") for s in spis] and _hw(p.kp)["p1"] == []
        assert _paths(p.kp.xmit("left", count=5, size=100)) == [("sent", ["packet-offload"],
                                                                 None)]
        if read_first:
            _traffic(p)
        log_before = p.left.logtext()
        assert _query(p.kp, "link_carrier", dev="p0", on=False)["errno"] == 0
        assert _hw(p.kp)["p1"] == [(s, "p1") for s in spis] and _hw(p.kp)["p0"] == []
        assert _paths(p.kp.xmit("left", count=5, size=100)) == [("sent", ["packet-offload"],
                                                                 None)]
        assert _spis(p.kp.sad("left")) == before
        out = [sa for sa in p.kp.sad("left") if sa["src"] == "192.0.2.1"][0]
        # 108 bytes a packet as the mlx5-like hardware counts them
        if daemon == "charon6":
            counted = "  1080 bytes,    10 packets" if read_first else \
                "   540 bytes,     5 packets"
            assert f"out {out['spi']:08x}, {counted}" in _traffic(p)
            new = p.left.logtext()[len(log_before):]
            assert "SAD entry" not in new and "CHILD_SA" not in new
        else:
            assert "type=ESP(nic-offload=packet)" in _traffic(p)
            assert "outBytes=1080" in _traffic(p)


@pytest.mark.parametrize("hw", ["packet", "auto"])
def test_charon6_packet_offload_on_an_upstream_active_backup_bond(tmp_path, hw):
    """Upstream bonding (lag model off) offloads SAs in packet mode on the active port but
    has no xdo_dev_policy_add: the bond refuses charon's packet-offload policies ("Policy
    offload is not supported", EINVAL). hw_offload=packet: the CHILD_SA fails. auto: the
    policies fall back to software, the SAs stay packet-offloaded — and the kernel never
    uses a packet-offloaded SA through a software policy, so every packet is dropped
    (XfrmOutNoStates) and the first one raises an ACQUIRE."""
    _root()
    make = _daemon("charon6", hw_offload=hw)
    with Pair(tmp_path, make, make, device_kind="bond", bond_mode="active-backup",
              slaves=["mlx5", "mlx5"]) as p:
        r = p.left.initiate()
        log = p.daemons[1].logtext()                  # the responder installs first
        assert "received netlink error: Policy offload is not supported (22)" in log
        if hw == "packet":
            assert CHARON_UP not in r.stdout
            assert "unable to add policy 192.0.2.1/32 === 192.0.2.2/32 in" in log
            return
        assert CHARON_UP in r.stdout, r.stdout
        assert "failed to install SA with packet HW offload, trying without offload" in log
        assert sorted(sa["offload"]["flags"] for sa in p.kp.sad("left")) == [
            PACKET, PACKET | INBOUND]
        assert not any(sp["offload"] for sp in p.kp.spd("left")
                       if sp["src"].startswith("192.0.2."))
        res = p.kp.xmit("left", count=5, size=100)
        assert res["sent"] == 0 and res["batches"][0]["reason"] == "XfrmOutNoStates"
        assert res["batches"][0]["acquire"] == [1]
        assert _wait(lambda: "creating acquire job for policy 192.0.2.1/32[17] === "
                             "192.0.2.2/32[17] with reqid {1}" in p.left.logtext())


# ---- a `shared` LAG flush ----

def test_charon6_shared_lag_flush_and_its_recovery(tmp_path):
    """The newest series' shared model on an 802.3ad bond of two SOE ports (one engine):
    charon 6.0.1 with hw_offload=auto gets both SAs packet-offloaded (the SOE accepts
    charon's replay window 32: fbfe8f9's airoha_soe_build_replay). A slave losing carrier
    flushes every bond state (bond_ipsec_topology_begin): both SAs leave the SAD without any
    XFRM_MSG_DELSA, charon notices nothing and its CHILD_SA stays INSTALLED; every packet is
    dropped (XfrmOutPolError: no state, and the bond refuses the larval one). No state is
    left to expire, so no EXPIRE comes either: only charon's own rekey timer (rekey_time,
    emulated clock) brings new SAs, packet-offloaded again."""
    _root()
    make = _daemon("charon6", hw_offload="auto", rekey_time=60, life_time=120,
                   limits={"rand_time": 0})
    with Pair(tmp_path, make, make, device_kind="bond", slaves=["airoha-soe", "airoha-soe"],
              lag_model="shared", esp_hw_offload=True) as p:
        _up(p)
        sas = {sa["spi"]: sa for sa in p.kp.sad("left")}
        [out] = [s for s, sa in sas.items() if sa["src"] == "192.0.2.1"]
        assert sas[out]["offload"]["flags"] == PACKET
        assert [sa["offload"]["dir"] for s, sa in sas.items() if s != out] == ["in"]
        assert _paths(p.kp.xmit("left", count=5, size=100)) == [("sent", ["packet-offload"],
                                                                 None)]
        log_before = p.left.logtext()
        assert _query(p.kp, "link_carrier", dev="p1", on=False)["errno"] == 0
        assert p.kp.sad("left") == []
        assert _hw(p.kp)["veth-l"] == []
        res = p.kp.xmit("left", count=5, size=100)
        assert (res["sent"], res["batches"][0]["reason"]) == (0, "XfrmOutPolError")
        status = p.left.list_sas()
        assert "INSTALLED" in status
        assert f"unable to query SAD entry with SPI {out:08x}" in p.left.logtext()
        # the kernel told charon nothing: no XFRM event reached it
        assert "received a XFRM_MSG" not in p.left.logtext()[len(log_before):]
        old = set(sas)
        p.kp.advance(61)
        # both new SAs (the inbound one can come first): packet-offloaded again
        assert _wait(lambda: sum(1 for sa in p.kp.sad("left")
                                 if sa["offload"] and sa["spi"] not in old) == 2)
        assert p.kp.expires("left") == []
        assert "CHILD_REKEY" in p.left.logtext() + p.daemons[1].logtext()
        # once charon has finished installing the rekeyed CHILD_SA, packets pass again
        assert _wait(lambda: p.kp.xmit("left", count=5, size=100)["sent"] == 5)


# ---- the offloading port unplugged ----

@pytest.mark.parametrize("daemon", ["charon6", "pluto5"])
def test_offloading_port_unplugged(tmp_path, daemon):
    """The mlx5-like port carrying the packet-offloaded SAs is hot-unplugged (``xfrmd ctl link
    DEV unplug``: unregister_netdevice → NETDEV_UNREGISTER flushes its states and policies,
    RTM_DELADDR, RTM_DELLINK). The IKE SA lives on (its packets cross the real veth), the
    Child SA's kernel state is gone, and neither daemon deletes or renegotiates it: charon
    logs the link and address events and starts a roam job that finds no address; both
    fail to read the SA back (ESRCH) when asked for its counters."""
    _root()
    make = _daemon(daemon, **({"hw_offload": "packet"} if daemon == "charon6" else {}))
    with Pair(tmp_path, make, make, device_kind="mlx5") as p:
        _up(p)
        spis = sorted(sa["spi"] for sa in p.kp.sad("left"))
        assert _query(p.kp, "link_unplug", dev="veth-l")["errno"] == 0
        assert p.kp.sad("left") == []
        assert not [sp for sp in p.kp.spd("left") if sp["src"].startswith("192.0.2.")
                    and sp["offload"]]
        res = p.kp.xmit("left", count=5, size=100)
        assert (res["sent"], res["batches"][0]["reason"]) == (0, "no route")
        if daemon == "charon6":
            for line in ("interface veth-l deactivated", "interface veth-l deleted",
                         "192.0.2.1 disappeared from veth-l",
                         "creating roam job due to address/link change",
                         "no address found to reach 192.0.2.2/32"):
                assert _wait(lambda: line in p.left.logtext(), timeout=5), line
            status = _traffic(p)
            assert "INSTALLED" in status
            for spi in spis:
                assert f"unable to query SAD entry with SPI {spi:08x}" in p.left.logtext()
            assert "querying SAD entry failed: No such process (3)" in p.left.logtext()
        else:
            status = _traffic(p)
            assert "type=ESP(nic-offload=packet)" in status and "outBytes" not in status
            log = p.left.logtext()
            for spi in spis:
                dst = "192.0.2.2" if spi == spis[0] else "192.0.2.1"
                assert f'netlink response for Get SA esp.{spi:x}@' in log, (spi, dst)
            assert "No such process (errno 3)" in log


# ---- the driver's SA table full ----

def _fill_netdevsim(kp, n: int = 33) -> None:
    """``n`` crypto-offloaded SAs on the left netdevsim port (its table has 33 slots), added
    by `ip` through the shim."""
    batch = "".join(
        f"xfrm state add src 198.51.100.1 dst 198.51.100.{i + 2} proto esp spi {0x1000 + i} "
        f"reqid 9 mode transport aead 'rfc4106(gcm(aes))' 0x{'11' * 20} 128 "
        "offload dev veth-l dir out\n" for i in range(n))
    r = subprocess.run(["ip", "-batch", "-"], input=batch, text=True, capture_output=True,
                       env={**os.environ, **kp.env("left")})
    assert r.returncode == 0, r.stderr
    assert len(_hw(kp)["veth-l"]) == n


@pytest.mark.parametrize("daemon", ["charon6", "pluto5"])
def test_driver_sa_table_full(tmp_path, daemon):
    """The initiator's netdevsim port has no free slot: the driver refuses the Child SA's
    SAs with ENOSPC and the extack "No space for SA in Rx table!". Neither daemon falls back
    to software. charon 6.0.1 (hw_offload=yes) fails the CHILD_SA and keeps the IKE_SA;
    pluto 5.2 (nic-offload=yes, ESN off: netdevsim refuses ESN) fails the Child SA with
    TEMPORARY_FAILURE and schedules a revival, which fails the same way."""
    _root()
    if daemon == "charon6":
        make = _daemon(daemon, hw_offload="yes")
    else:
        make = _daemon(daemon, nic_offload="yes", extra="\tesn=no\n")
    with Pair(tmp_path, make, make, device_kind="netdevsim") as p:
        _fill_netdevsim(p.kp)
        r = p.left.initiate()
        log = p.left.logtext()
        if daemon == "charon6":
            assert CHARON_UP not in r.stdout
            assert "received netlink error: netdevsim: No space for SA in Rx table! (28)" in log
            assert "unable to add SAD entry with SPI" in log
        else:
            assert PLUTO_UP not in r.stdout
            assert "CHILD SA failed: TEMPORARY_FAILURE" in r.stdout
            assert ": No space left on device (errno 28)" in log
            assert "netlink ext_ack: netdevsim: No space for SA in Rx table!" in log
            assert "revival attempt 1 scheduled" in r.stdout
        assert [sa for sa in p.kp.sad("left") if sa["src"].startswith("192.0.2.")
                and sa["algs"]] == []
        assert len(_hw(p.kp)["veth-l"]) == 33


# ---- the bond leaving LAG eligibility ----

@pytest.mark.parametrize("daemon", ["charon6", "pluto5"])
def test_bond_leaves_lag_eligibility(tmp_path, daemon):
    """The RFC's replicated model on an 802.3ad bond hashing layer3+4, opted in: both SAs
    packet-offloaded on both ports. `ip link set BOND type bond xmit_hash_policy layer2`
    makes the bond LAG-ineligible: the RFC flushes the bond's states without a word to the
    daemon, and the bond's esp-hw-offload goes off (bond_set_features flushes states only).
    The packet-offloaded policies stay, so every packet is dropped: no state, and the bond
    refuses the larval one (XfrmOutPolError, EOPNOTSUPP), so not even an ACQUIRE. Both
    daemons keep their Child SA and only fail to read it back."""
    _root()
    if daemon == "charon6":
        make = _daemon(daemon, hw_offload="packet")
    else:
        make = _daemon(daemon, extra="\tesn=no\n")     # the RFC model refuses ESN
    conv = {"kind": "mlx5", "lag_converted": True}      # the RFC example's converted port
    with Pair(tmp_path, make, make, device_kind="bond", slaves=[conv, conv],
              lag_model="replicated", esp_hw_offload=True) as p:
        _up(p)
        spis = sorted(sa["spi"] for sa in p.kp.sad("left"))
        assert _hw(p.kp)["p0"] == [(s, "p0") for s in spis]
        assert _hw(p.kp)["p1"] == [(s, "p1") for s in spis]
        r = subprocess.run(["ip", "link", "set", "veth-l", "type", "bond", "xmit_hash_policy",
                            "layer2"], text=True, capture_output=True,
                           env={**os.environ, **p.kp.env("left")})
        assert r.returncode == 0, r.stderr
        bond = _query(p.kp, "show_offload", dev="veth-l")["devices"]["veth-l"]
        assert bond["esp_ineligible"] == ("bond mode 802.3ad with xmit_hash_policy layer2 "
                                          "cannot use IPsec offload")
        assert p.kp.sad("left") == [] and _hw(p.kp) == {"p0": [], "p1": [], "veth-l": []}
        assert {sp["dir"]: sp["offload"]["flags"] for sp in p.kp.spd("left")
                if sp["src"].startswith("192.0.2.") and sp["offload"]} == {
            0: PACKET | INBOUND, 1: PACKET}
        res = p.kp.xmit("left", count=1, size=100)
        assert _paths(res) == [("dropped", [], "XfrmOutPolError")]
        assert res["batches"][0]["errno"] == "ENOTSUP" and "acquire" not in res["batches"][0]
        status = _traffic(p)
        if daemon == "charon6":
            assert "INSTALLED" in status
            assert f"unable to query SAD entry with SPI {spis[0]:08x}" in p.left.logtext()
        else:
            assert "type=ESP(nic-offload=packet)" in status and "outBytes" not in status
            assert "No such process (errno 3)" in p.left.logtext()
