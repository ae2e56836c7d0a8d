"""Drivers resolve their hardware SA through ``xfrm_dev_state_lower_handle`` on transmit and
receive (issue 19, Deliver 2; RFC patch 1/4): the sequence counter, replay window and
lifetime counters live in the driver — one per mlx5-like port, one per SOE engine slot
(shared by the ports of one engine) — keyed by the handle the resolver gives; the hard
packet limit is enforced in the device and reported through ``xdo_dev_state_update_stats``
where the bond forwards it; show-offload prints bond → slave → hardware context once."""
from __future__ import annotations

import pytest

from xfrmd.lagreport.lab import IN_SPI, OUT_SPI, PAIRINGS, Lab, Pairing
from xfrmd.xfrm.offload import xfrm_dev_state_lower_handle
from xfrmd.xfrm.sadb import sad

from .test_lag_receive import run

BY_NAME = {p.name: p for p in PAIRINGS}
MLX5, SOE1, SOE2, MIXED = (BY_NAME[n] for n in ("mlx5-pair", "soe-1-engine", "soe-2-engines",
                                                  "mixed"))
NSIM = Pairing("nsim-pair", "netdevsim pair", (("netdevsim", "nsim0"), ("netdevsim", "nsim0")))


def state(lab: Lab, spi: int):
    return next((x for x in sad(lab.dut_ns.xfrm).all.values() if x.id.spi == spi), None)


def contexts(lab: Lab, x) -> dict[str, tuple[int, dict | None]]:
    """Per slave: the handle the resolver gives and the context its driver finds with it."""
    out = {}
    for name in ("s0", "s1"):
        s = lab.dut_ns.links.by_name(name)
        out[name] = (xfrm_dev_state_lower_handle(x, s), s.xfrmdev_ops.hw_context(s, x))
    return out


# -- LAG: TX and RX through the resolver, per driver and model -------------------------------------

@pytest.mark.parametrize("pairing, model, shared, numbered_by", [
    (MLX5, "replicated", False, "hardware"),
    (SOE1, "replicated", True, "hardware"),     # one engine slot: one counter, one window
    (SOE2, "replicated", False, "hardware"),
    (MIXED, "replicated", False, "hardware"),
    (SOE1, "shared", True, "core"),             # X05/X06 on the one state
])
def test_resolver_on_tx_and_rx(pairing, model, shared, numbered_by):
    lab = Lab(pairing, model)
    assert lab.admitted, lab.refusal
    out, inb = state(lab, OUT_SPI), state(lab, IN_SPI)
    # the bond owns the states; the per-slave handles come from bond_ipsec_lower_handle
    assert out.xso.dev is lab.bond
    assert bool(out.xso.offload_handle) == (model == "shared")   # RFC: 0 on the bond's xso
    before = contexts(lab, out)
    assert all(h and c is not None and c["handle"] == h for h, c in before.values())
    ids = {c["id"] for _, c in before.values()}
    assert len(ids) == (1 if shared else 2)
    # TX: the pinned slave's driver numbers (or carries the core's number) in its context
    res = lab.dut_send(3).to_dict()
    [b] = res["batches"]
    pinned = b["sas"][0]["slave"]
    assert (b["sas"][0]["numbered_by"], b["seq"]["0x00000100"]) == (numbered_by, [1, 3])
    after = contexts(lab, out)
    other = {"s0": "s1", "s1": "s0"}[pinned]
    assert (after[pinned][1]["oseq"], after[pinned][1]["packets"]) == (3, 3)
    assert after[other][1]["oseq"] == (3 if shared else 0)
    # RX: two packets on s0, one on s1, each slave's driver resolves its context
    pkts = lab.peer_send(3)
    got = [lab.to_dut(pkts[:2], "s0"), lab.to_dut(pkts[2:], "s1")]
    assert [g.delivered for g in got] == [2, 1]
    rx = contexts(lab, inb)
    if shared:
        assert rx["s0"][1]["id"] == rx["s1"][1]["id"] and rx["s0"][1]["packets"] == 3
    else:
        assert [rx[s][1]["packets"] for s in ("s0", "s1")] == [2, 1]
        assert [rx[s][1]["top"] for s in ("s0", "s1")] == [2, 3]


@pytest.mark.parametrize("pairing", [MLX5, SOE1, SOE2, MIXED])
def test_shared_model_gives_no_handle_to_a_slave_off_the_engine(pairing):
    """P39: only pairings with one engine are admitted; the other slaves would get 0."""
    lab = Lab(pairing, "shared")
    assert lab.admitted == (pairing is SOE1)
    if lab.admitted:
        x = state(lab, OUT_SPI)
        assert [h for h, _ in contexts(lab, x).values()] == [x.xso.offload_handle] * 2


# -- active-backup: every driver, the upstream path ------------------------------------------------

@pytest.mark.parametrize("pairing, model", [
    (NSIM, "off"), (NSIM, "replicated"), (MLX5, "off"), (MLX5, "replicated"), (MLX5, "shared"),
])
def test_active_backup_crypto_resolves_on_the_active_slave_only(pairing, model):
    lab = Lab(pairing, model, mode="active-backup", offload="crypto")
    assert lab.admitted, lab.refusal
    out = state(lab, OUT_SPI)
    (h0, c0), (h1, c1) = contexts(lab, out).values()
    assert h0 == out.xso.offload_handle != 0 and c0 is not None      # s0 is active
    assert (h1, c1) == (0, None)
    b = lab.dut_send(3).to_dict()["batches"][0]
    assert (b["sas"][0]["path"], b["sas"][0]["slave"]) == ("crypto-offload", "s0")
    s0 = lab.dut_ns.links.by_name("s0")
    if pairing is NSIM:
        assert s0.xfrmdev_ops.tx == 3                # nsim_ipsec_tx found sa[] by the handle
    else:
        assert s0.xfrmdev_ops.hw_context(s0, out)["packets"] == 3
    got = lab.to_dut(lab.peer_send(2), "s0").to_dict()["batches"][0]
    assert (got["result"], got["path"], got["context"]) == (
        "delivered", "crypto-offload", "stack (xfrm_replay_check on the xfrm_state)")


def test_shared_model_refuses_netdevsim_even_in_active_backup():
    lab = Lab(NSIM, "shared", mode="active-backup", offload="crypto")
    assert state(lab, OUT_SPI).xso is None       # software, with the bond's warning
    assert any("Slave does not support IPsec offload" in c.stderr for c in lab.setup)


# -- lifetimes: the device drops, update_stats reports, the kernel sends EXPIREs -----------------

LIMITS = "limit packet-soft 2 limit packet-hard 3"


def send_and_listen(lab: Lab, n: int):
    mon = lab.expires()
    res = lab.dut_send(n)
    lab.kernel.run_timers()
    return res, mon.seen()


def test_replicated_lag_hard_limit_drops_in_the_port_but_no_expire():
    """The RFC's bond_xfrm_update_stats stays active-backup only (R2): the port's drop rule
    stops the packets at its own count of 3, nothing reaches curlft, no EXPIRE goes out."""
    lab = Lab(MLX5, "replicated", lifetime=LIMITS)
    res, seen = send_and_listen(lab, 12)
    d = res.to_dict()
    assert (d["sent"], d["dropped"]) == (3, 9)
    drop = d["batches"][-1]
    assert drop["reason"].startswith("mlx5_core: hardware drop rule on s")
    assert "bond0 reports no counters to the state" in drop["detail"]
    assert seen == []
    x = state(lab, OUT_SPI)
    assert x is not None and x.curlft.packets == 0


@pytest.mark.parametrize("model", ["replicated", "shared"])
def test_active_backup_packet_limits_expire_soft_then_hard(model):
    """replicated (AB): the mlx5 port counts, the bond forwards update_stats to the active
    slave, whose driver finds its SA through the resolver; shared (AB): the core accounts
    the one state (X05). Either way: soft EXPIRE, hard EXPIRE, 3 packets out."""
    lab = Lab(MLX5, model, mode="active-backup", lifetime=LIMITS)
    assert lab.admitted, lab.refusal
    res, seen = send_and_listen(lab, 6)
    assert res.sent == 3 and seen == ["soft", "hard"]
    assert state(lab, OUT_SPI) is None


@pytest.mark.parametrize("pairing, model, mode", [
    (MLX5, "off", "active-backup"), (MLX5, "replicated", "802.3ad"),
    (MLX5, "shared", "active-backup")])
def test_crypto_offload_limits_are_the_stacks(pairing, model, mode):
    lab = Lab(pairing, model, mode=mode, offload="crypto", lifetime=LIMITS)
    assert state(lab, OUT_SPI).xso is not None
    res, seen = send_and_listen(lab, 6)
    assert res.sent == 3 and seen == ["soft", "hard"]


def test_off_model_has_no_packet_offload_policy_on_a_bond():
    lab = Lab(MLX5, "off", mode="active-backup")
    assert lab.refusal == "Error: Policy offload is not supported."


def test_shared_lag_limits_follow_the_soe():
    """The SOE decides whether it takes finite packet limits; where it does, the core's
    accounting of the one state (X05) sends the EXPIREs."""
    lab = Lab(SOE1, "shared", lifetime=LIMITS)
    if not lab.admitted:
        assert "airoha_eth: SOE does not support byte or packet lifetime limits" in lab.refusal
        return
    res, seen = send_and_listen(lab, 6)
    assert res.sent == 3 and seen == ["soft", "hard"]


# -- show-offload: the tree, flag names, a shared slot printed once --------------------------------

def test_show_offload_tree_and_flag_names(tmp_path):
    from xfrmd.lagreport.lab import topology
    p = run(tmp_path, topology(SOE1, "replicated"), """
xfrmd ctl xmit --netns dut 10.0.0.1 10.1.0.1 count 4 >/dev/null
XFRMD_NETNS=dut xfrmd ctl show-offload bond0
XFRMD_NETNS=dut xfrmd ctl show-offload s1 | head -1
""")
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    flags = "LOWER_HANDLE|LAG_SHARED_STATE"
    out = lines.index("  spi=0x100 dir=out type=packet model=replicated xmit_slave=s0")
    assert lines[out + 1:out + 4] == [
        f"    s0 (airoha-soe, {flags}): handle 0x1 → soe0 slot 1 (per engine, ports s0,s1)",
        "      oseq 4, bytes 368, packets 4",
        f"    s1 (airoha-soe, {flags}): handle 0x1 → soe0 slot 1, shared with s0 (above)"]
    inb = lines.index("  spi=0x200 dir=in type=packet model=replicated xmit_slave=s1")
    assert lines[inb + 2] == "      replay window 64 top 0 bitmap 0x0, bytes 0, packets 0"
    assert lines[-1] == f"s1: driver airoha-soe, esp-hw-offload on, xfrmdev flags {flags}"
    assert "0x3" not in p.stdout


def test_show_offload_json_keeps_every_context_once():
    from xfrmd.services import handle
    lab = Lab(SOE2, "replicated")
    lab.dut_send(2)
    d = handle(lab.kernel, "dut", {"op": "show_offload", "dev": "bond0"})["devices"]["bond0"]
    assert (d["flags"], d["flag_names"]) == (0, "-")
    [out] = [e for e in d["sas"] if e["spi"] == OUT_SPI]
    assert [(r["slave"], r["flags"], r["context"]) for r in out["replicas"]] == [
        ("s0", "LOWER_HANDLE|LAG_SHARED_STATE", "soe0 slot 1"),
        ("s1", "LOWER_HANDLE|LAG_SHARED_STATE", "soe1 slot 1")]
    assert {k: (c["oseq"], c["ports"]) for k, c in out["contexts"].items()} == {
        "soe0 slot 1": (2, ["s0"]), "soe1 slot 1": (0, ["s1"])}


# -- the output batch covers packets the core numbers under packet offload (X05) -------------------

def _bond_run(monkeypatch, batched: bool, took: list[int]):
    from xfrmd.datapath import output, packet
    monkeypatch.setattr("xfrmd.datapath.esp.os.urandom", lambda n: bytes(range(n)))
    monkeypatch.setattr(packet, "_ip_id", [0])
    real = output._software_batch
    monkeypatch.setattr(output, "_software_batch",
                        lambda *a: took.append(real(*a)) or took[-1] if batched else 0)
    lab = Lab(SOE1, "shared")
    mon = lab.expires()
    results = [lab.dut_send(20) for _ in range(2)]
    lab.kernel.run_timers()
    x = state(lab, OUT_SPI)
    s = lab.dut_ns.links.by_name("s0")
    return ([(r.to_dict(), r.packets) for r in results],
            (x.curlft.packets, x.curlft.bytes, x.replay_esn.oseq if x.replay_esn else x.replay[0]),
            s.xfrmdev_ops.hw_context(s, x), mon.seen())


def test_offloaded_batch_is_the_per_packet_loop(monkeypatch):
    took: list[int] = []
    with monkeypatch.context() as m:
        per_packet = _bond_run(m, False, took)
    with monkeypatch.context() as m:
        batched = _bond_run(m, True, took)
    assert took == [19, 19]          # each call: the first packet, then a batch of the rest
    assert batched == per_packet
    assert batched[2]["oseq"] == batched[2]["packets"] == 40


def test_crypto_offload_rx_is_counted_by_the_receiving_port():
    """Replicated crypto SAs on a LAG bond: each slave's hardware SA counts what arrived on
    that slave (the stack numbers and checks)."""
    lab = Lab(MLX5, "replicated", offload="crypto")
    inb = state(lab, IN_SPI)
    assert inb.xso is not None and inb.xso.upper_priv is not None
    pkts = lab.peer_send(3)
    assert lab.to_dut(pkts[:2], "s0").delivered == 2
    assert lab.to_dut(pkts[2:], "s1").delivered == 1
    assert [c["packets"] for _, c in contexts(lab, inb).values()] == [2, 1]
