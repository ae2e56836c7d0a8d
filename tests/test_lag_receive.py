"""Receive through bonds (issue 19, Deliver 1): inbound ESP for a bond arrives on one slave
— the one the link partner's layer3+4 hash of the outer header picks, or the one named with
``xfrmd ctl xmit … --deliver NS --via SLAVE`` — whose driver resolves its hardware SA with
``xfrm_dev_state_lower_handle(x, slave)`` (RFC patch 1/4) and checks replay in the context
that owns it: per port (mlx5-like), engine-wide (SOE ports of one engine), the core on the
one state (the newest series' X06), the stack (crypto offload). Through the CLI
(``xfrmd run``) and the Python API, for every model."""
from __future__ import annotations

import json

import pytest

from bonding.hash import Flow, bond_xmit_hash
from xfrmd.datapath.input import deliver_packets, lag_partner_slave
from xfrmd.lagreport.lab import DUT, IN_SPI, PAIRINGS, PEER, Lab, policy_line, sa_line
from xfrmd.lagreport.lab import topology as lab_topology

from .conftest import xfrmd_run

BY_NAME = {p.name: p for p in PAIRINGS}
MLX5, SOE1, SOE2, MIXED = (BY_NAME[n] for n in ("mlx5-pair", "soe-1-engine", "soe-2-engines",
                                                  "mixed"))


def toml_of(topo: dict) -> str:
    """The lag-report bench's topology as the TOML file ``xfrmd run --topology`` reads."""
    def val(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, list):
            return "[" + ", ".join(val(i) for i in v) + "]"
        return json.dumps(v) if isinstance(v, str) else str(v)
    out = []
    for ns in topo["netns"]:
        out += ["[[netns]]", f"name = {val(ns['name'])}"]
        for key in ("device", "route"):
            for d in ns.get(key, []):
                out.append(f"[[netns.{key}]]")
                out += [f"{k} = {val(v)}" for k, v in d.items()]
    return "\n".join(out) + "\n"


def active_backup(topo: dict) -> dict:
    """The bench with bond0 in active-backup (upstream's only offload mode)."""
    bond = next(d for d in topo["netns"][0]["device"] if d["name"] == "bond0")
    bond["mode"] = "active-backup"
    del bond["xmit_hash_policy"]
    return topo


def setup_script(offload: str = "packet") -> str:
    """The bench's SAs and policies (lab.py) through `xfrmd replay` in each namespace:
    ``packet`` (SAs and policies offloaded to bond0) or ``crypto`` (SAs only)."""
    dev = "offload packet dev bond0" if offload == "packet" else "offload dev bond0"
    pol = dev if offload == "packet" else ""
    dut = [sa_line(DUT, PEER, 0x100, offload=f"{dev} dir out"),
           sa_line(PEER, DUT, IN_SPI, offload=f"{dev} dir in", replay=64),
           policy_line("10.0.0.0/24", "10.1.0.0/24", "out", DUT, PEER, pol),
           policy_line("10.1.0.0/24", "10.0.0.0/24", "in", PEER, DUT, pol)]
    peer = [sa_line(DUT, PEER, 0x100, replay=64), sa_line(PEER, DUT, IN_SPI),
            policy_line("10.0.0.0/24", "10.1.0.0/24", "in", DUT, PEER),
            policy_line("10.1.0.0/24", "10.0.0.0/24", "out", PEER, DUT)]
    out = []
    for ns, lines in (("dut", dut), ("peer", peer)):
        out.append(f"xfrmd replay --netns {ns} --iproute2 6.15 - >/dev/null <<'EOF'")
        out += [line[len("ip "):] for line in lines]
        out.append("EOF")
    return "\n".join(out) + "\n"


PEER_SEND = "xfrmd ctl xmit --netns peer 10.1.0.1 10.0.0.1 sport 2000 dport 1000"


def run(tmp_path, topo: dict, script: str, offload: str = "packet"):
    path = tmp_path / "lab.toml"
    path.write_text(toml_of(topo))
    p = xfrmd_run(setup_script(offload) + script, str(path), timeout=120)
    assert "Error" not in p.stderr, p.stderr
    return p


def partner_slave_name(spi: int) -> str:
    """s0 or s1: what layer3+4 over PEER → DUT, ESP, SPI picks of two links."""
    h = bond_xmit_hash(Flow(bytes(6), bytes(6), PEER, DUT, 50, spi=spi), "layer3+4")
    return ("s0", "s1")[h % 2]


# -- through the CLI -----------------------------------------------------------------------------

def restart_peer_sa() -> str:
    """The peer's outbound SA deleted and added again: its sequence numbers start at 1
    again, so what it sends next repeats numbers the DUT has seen (a re-injection)."""
    return ("ip -n peer xfrm state delete src 192.0.2.2 dst 192.0.2.1 proto esp spi 0x200\n"
            "xfrmd replay --netns peer --iproute2 6.15 - >/dev/null <<'EOF'\n"
            + sa_line(PEER, DUT, IN_SPI)[len("ip "):] + "\nEOF\n")


@pytest.mark.parametrize("pairing, model, context, again_on_other", [
    # mlx5-like: each port its own window, so a repeated number is accepted on the other
    # slave — the review's question, from the command line
    (MLX5, "replicated", "{s} sa 2 (per port)|{o} sa 2 (per port)", "delivered"),
    # SOE ports of one engine: one slot, one window
    (SOE1, "replicated", "soe0 slot 2 (per engine)|soe0 slot 2 (per engine)", "dropped"),
    # SOE ports of two engines: a slot on each
    (SOE2, "replicated", "soe{i} slot 2 (per engine)|soe{j} slot 2 (per engine)", "delivered"),
    # the newest series: the core's check on the one state (X06)
    (SOE1, "shared", "core (xfrm_dev_packet_input_state_check on the xfrm_state)|"
                     "core (xfrm_dev_packet_input_state_check on the xfrm_state)", "dropped"),
])
def test_cli_receive_on_the_hashed_slave_then_a_repeat_via_each_slave(
        tmp_path, pairing, model, context, again_on_other):
    s = partner_slave_name(IN_SPI)
    o = {"s0": "s1", "s1": "s0"}[s]
    ctx = context.format(s=s, o=o, i=s[1], j=o[1]).split("|")
    p = run(tmp_path, lab_topology(pairing, model), f"""
{PEER_SEND} count 6 --deliver dut | grep '^dut:'
{restart_peer_sa()}
{PEER_SEND} count 1 --deliver dut --via {o} --json > {tmp_path}/other.json
{restart_peer_sa()}
{PEER_SEND} count 1 --deliver dut --via {s} --json > {tmp_path}/same.json
cat {tmp_path}/other.json {tmp_path}/same.json
""")
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[:2] == [
        f"dut: 6 delivered: SA spi 0x00000200 reqid 1; packet-offload dev {s}; seq 1-6; on slave "
        f"{s}, replay checked by {ctx[0]}; policy in index 8",
        "dut: delivered 6 dropped 0"]
    dec = json.JSONDecoder()
    rest = "\n".join(lines[2:])
    other, end = dec.raw_decode(rest)
    same, _ = dec.raw_decode(rest[end:].lstrip())
    [b] = other["deliver"]["batches"]
    assert (b["result"], b["slave"], b["context"]) == (again_on_other, o, ctx[1])
    [b] = same["deliver"]["batches"]
    assert (b["result"], b["slave"], b["context"]) == ("dropped", s, ctx[0])
    assert "already received" in b["detail"]


def test_cli_active_backup_off_model_crypto_is_checked_by_the_stack(tmp_path):
    """Model ``off`` (upstream): crypto offload on the active slave, the stack's window."""
    topo = active_backup(lab_topology(MLX5, "off"))
    p = run(tmp_path, topo, f"""
{PEER_SEND} count 4 --deliver dut | grep '^dut:'
{PEER_SEND} count 1 --deliver dut --via s1 | grep '^dut:'
""", offload="crypto")
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines() == [
        "dut: 4 delivered: SA spi 0x00000200 reqid 1; crypto-offload dev s0; seq 1-4; on slave s0, "
        "replay checked by stack (xfrm_replay_check on the xfrm_state); policy in index 8",
        "dut: delivered 4 dropped 0",
        # the backup holds no SA: the packet goes up unoffloaded, the stack decrypts it
        "dut: 1 delivered: SA spi 0x00000200 reqid 1; software; seq 5; on slave s1, replay "
        "checked by stack (xfrm_replay_check on the xfrm_state); policy in index 8",
        "dut: delivered 1 dropped 0"]


AB_BACKUP_DROP = (
    "bonding: the SA lives on the active slave s0 only; s1 is a backup port and its driver "
    "holds no SA for it: SA 0x200 (reqid 1) packet-offloaded on bond0, arrived on s1; an "
    "active-backup bond receives on its active slave only, under every LAG model: the link "
    "partner must send to the active slave of bond0 (a failover moves the SAs to the new "
    "active slave)")


@pytest.mark.parametrize("pairing, model, context", [
    (MLX5, "replicated", "none (s1 holds no hardware SA for it)"),
    (SOE1, "shared", "core (xfrm_dev_packet_input_state_check on the xfrm_state)"),
])
def test_cli_active_backup_packet_offload_on_the_backup_port_is_dropped_saying_why(
        tmp_path, pairing, model, context):
    """Active-backup stays upstream under every model (bond_ipsec_add_sa offloads to the
    active slave alone): ESP on the backup port finds no SA in its driver. The drop says so,
    once, and does not send the user to another LAG model."""
    topo = active_backup(lab_topology(pairing, model))
    p = run(tmp_path, topo, f"""
{PEER_SEND} count 2 --deliver dut | grep '^dut:'
{PEER_SEND} count 1 --deliver dut --via s1 | grep '^dut:'
""")
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[1:] == [
        "dut: delivered 2 dropped 0",
        f"dut: 1 dropped: on slave s1, replay checked by {context}; {AB_BACKUP_DROP}",
        "dut: delivered 0 dropped 1"], p.stdout
    assert lines[0].startswith("dut: 2 delivered: SA spi 0x00000200 reqid 1; packet-offload "
                               "dev s0; seq 1-2; on slave s0"), lines[0]


@pytest.mark.parametrize("via, why", [
    ("inner", "xfrmd: --via inner: not a slave of bond0 (the bond receiving 192.0.2.1 in dut); "
              "its slaves: s0, s1"),
    ("nosuch", "xfrmd: --via nosuch: not a slave of bond0 (the bond receiving 192.0.2.1 in dut); "
               "its slaves: s0, s1"),
])
def test_cli_via_a_device_that_is_not_a_slave(tmp_path, via, why):
    p = run(tmp_path, lab_topology(MLX5, "replicated"), f"""
{PEER_SEND} count 2 --deliver dut --via {via}; echo "rc=$?"
xfrmd ctl xfrm-stat --netns dut --nonzero
ip -n peer -s xfrm state list spi 0x200 | grep -c 'oseq 0x0'
""")
    assert p.stderr.splitlines() == [f"xfrmd ctl: {why}"]
    # nothing sent, nothing received: the peer's SA did not number a packet
    assert p.stdout.splitlines() == ["rc=1", "1"]


def test_cli_via_without_deliver_or_to_a_device_that_is_no_bond(tmp_path):
    topo = lab_topology(MLX5, "replicated")
    p = run(tmp_path, topo, """
xfrmd ctl xmit --netns peer 10.1.0.1 10.0.0.1 --via s0; echo "rc=$?"
xfrmd ctl xmit --netns dut 10.0.0.1 10.1.0.1 --deliver peer --via eth0; echo "rc=$?"
""")
    assert p.stdout.splitlines() == ["rc=1", "rc=1"]
    assert p.stderr.splitlines() == [
        "xfrmd ctl: xfrmd: --via s0: needs --deliver NS (the namespace whose bond receives the "
        "packets)",
        "xfrmd ctl: xfrmd: --via eth0: the packets to 192.0.2.2 arrive in peer on eth0, not a "
        "bond; --via names a slave of the receiving bond"]


# -- through the Python API ----------------------------------------------------------------------

def deliver(lab: Lab, pkts, via=None):
    return deliver_packets(lab.dut_ns, pkts, via=lab.dut_ns.links.by_name(via) if via else None)


@pytest.mark.parametrize("pairing, model, again_on_other", [
    (MLX5, "replicated", "delivered"),       # per-port windows: the review's question
    (SOE1, "replicated", "dropped"),         # one engine slot
    (SOE2, "replicated", "delivered"),       # a slot per engine
    (MIXED, "replicated", "delivered"),
    (SOE1, "shared", "dropped"),             # X06 on the one state
])
def test_api_receive_hashed_slave_then_reinjection_on_the_other(pairing, model, again_on_other):
    lab = Lab(pairing, model)
    assert lab.admitted, lab.refusal
    pkts = lab.peer_send(5)
    first = deliver(lab, pkts)
    s = lag_partner_slave(lab.bond, pkts[0]).name
    assert s == partner_slave_name(IN_SPI)
    [b] = first.to_dict()["batches"]
    assert (b["result"], b["slave"], b["count"]) == ("delivered", s, 5)
    o = {"s0": "s1", "s1": "s0"}[s]
    again = deliver(lab, [pkts[2]], via=o).to_dict()["batches"][0]
    assert (again["result"], again["slave"]) == (again_on_other, o)
    if again_on_other == "dropped":
        assert "replay" in again["detail"]
    # on the slave that saw it: always a replay
    same = deliver(lab, [pkts[2]], via=s).to_dict()["batches"][0]
    assert (same["result"], same["slave"]) == ("dropped", s)


def test_api_the_other_models_refuse_packet_offload_on_these_bonds():
    """``off`` has no policy offload on a bond; ``shared`` refuses lowers without one shared
    engine: the receive path then never sees a packet-offloaded state on these benches."""
    for pairing in (MLX5, SOE1, SOE2, MIXED):
        assert not Lab(pairing, "off").admitted
    assert [Lab(p, "shared").admitted for p in (MLX5, SOE1, SOE2, MIXED)] == [
        False, True, False, False]


def test_api_esn_packet_offload_window_crosses_2_32_on_the_port():
    """mlx5-like packet offload with ESN (active-backup: the bond's upstream path): the port's
    ASO window takes the high half from its own right edge (``xfrm_replay_seqhi``'s rule), so
    the peer's packets across 2^32 are delivered, and one from before the wrap again is the
    hardware's replay drop."""
    lab = Lab(MLX5, "replicated", esn=True, mode="active-backup", offload="packet")
    assert lab.admitted, lab.refusal
    pkts = lab.peer_send(32)             # the peer starts at 0xfffffff0 (lab.py)
    [b] = deliver(lab, pkts, via="s0").to_dict()["batches"]
    assert (b["result"], b["count"], b["seq"]) == ("delivered", 32, [2**32 - 15, 2**32 + 16])
    [b] = deliver(lab, [pkts[3]], via="s0").to_dict()["batches"]
    assert (b["result"], b["slave"]) == ("dropped", "s0")
    assert b["detail"].startswith(
        f"mlx5_core: hardware replay drop on s0: sequence {2**32 - 12} already received")
