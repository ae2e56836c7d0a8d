"""The LAG review's scenarios (docs/bonding.md: S1 spray, S2 pin move, S3 re-injection, the
slave flap, the ESN advance, S5 lifetimes, S7 admission) as a user runs them: an
``xfrmd run --topology FILE -- sh -c '…'`` per pairing of lower devices (two for the SOE's
one engine, whose two models both admit) over the lag-report's bench
(xfrmd/lagreport/lab.py), the bond's model switched with ``xfrmd ctl lag-model`` and
``ethtool -K bond0 esp-hw-offload on``, the SAs and policies added with the real ``ip`` 6.15
(``offload packet dev bond0 dir out|in``: the trixie userland; the host's ``ip`` for the
rest), packets sent and delivered with ``xfrmd ctl xmit … --deliver NS [--via SLAVE]
[--spray] --json``, slaves moved with ``xfrmd ctl link SLAVE carrier off`` and ``ip link set
SLAVE down|up``, lifetimes read with ``ip -s xfrm state`` and EXPIREs with ``ip xfrm
monitor``. Each cell's counts, as the user's JSON shows them, must equal the lag-report's
cell (tests/test_lag_report.py EXPECTED) and a refusal must be the report's note, so the
command line and the report cannot drift apart.

Where the command line and the report's Python differ in steps, the counts cannot: S1 and
S5 send the two sprayed flows one after the other (the report interleaves them packet by
packet; the peer's window and each port's counter see the same numbers), and S3 sends
"packet 5 again" by re-adding the peer's SA with ``replay-oseq 4``."""
from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from xfrmd.lagreport.lab import (DUT, IN_SPI, OUT_SPI, PAIRINGS, PEER, Lab, Pairing,
                                 policy_line, replay_drops, sa_line, wire)
from xfrmd.lagreport.lab import topology as lab_topology
from xfrmd.lagreport.scenarios import SCENARIOS, run_cell

from .conftest import XFRMD, require_userland
from .test_lag_receive import toml_of
from .test_lag_report import EXPECTED

pytestmark = pytest.mark.userland

USERLAND = "trixie-strongswan"            # ip 6.15: `offload packet … dir …`
BY_NAME = {p.name: p for p in PAIRINGS}
# the pairings whose cells differ (mixed behaves as two engines: tests/test_lag_report.py)
BENCHES = tuple(BY_NAME[n] for n in ("mlx5-pair", "soe-1-engine", "soe-2-engines"))
MODELS = ("off", "replicated", "shared")
BY_KEY = {s.key: s for s in SCENARIOS}
PKT = "offload packet dev bond0"
# S5's lifetime, on the DUT's outbound SA (as the report's scenario)
LIFETIME = BY_KEY["S5"].lifetime
TX = "xfrmd ctl --netns dut xmit 10.0.0.1 10.1.0.1 proto udp dport 2000 size 64"
RX = "xfrmd ctl --netns peer xmit 10.1.0.1 10.0.0.1 proto udp sport 2000 dport 1000 size 64"
PIN = "$(grep -o '\"slave\": \"s[01]\"' {f} | head -1 | cut -d'\"' -f4)"


def dut_lines(*, esn: bool = False, lifetime: str = "") -> list[str]:
    """The DUT's SAs and policies, packet-offloaded to bond0 (the report's set-up)."""
    return [sa_line(DUT, PEER, OUT_SPI, offload=f"{PKT} dir out", extra=lifetime),
            sa_line(PEER, DUT, IN_SPI, offload=f"{PKT} dir in", esn=esn, replay=64),
            policy_line("10.0.0.0/24", "10.1.0.0/24", "out", DUT, PEER, PKT),
            policy_line("10.1.0.0/24", "10.0.0.0/24", "in", PEER, DUT, PKT)]


def peer_lines() -> list[str]:
    return [sa_line(DUT, PEER, OUT_SPI, replay=64), sa_line(PEER, DUT, IN_SPI),
            policy_line("10.0.0.0/24", "10.1.0.0/24", "in", DUT, PEER),
            policy_line("10.1.0.0/24", "10.0.0.0/24", "out", PEER, DUT)]


def batch(path: Path, lines: list[str]) -> str:
    """``ip -batch`` file of ``lines`` (no shell: the quotes go)."""
    path.write_text("".join(ln[len("ip "):].replace("'", "") + "\n" for ln in lines))
    return str(path)


FLUSH = ("ip -n dut xfrm state flush; ip -n dut xfrm policy flush; "
         "ip -n peer xfrm state flush; ip -n peer xfrm policy flush")


def bench_script(pairing: Pairing, d: Path, models: tuple[str, ...]) -> str:
    """The scenarios of ``models`` on one server (the bench starts in model ``off``); each
    step's output in ``d/MODEL/…``."""
    f0, f1 = Lab(pairing, "replicated").flows_on_two_slaves()
    b = d / f"{models[0]}.batches"
    b.mkdir()
    plain, s5, esn = (batch(b / f"{n}.batch", dut_lines(**kw)) for n, kw in (
        ("plain", {}), ("s5", {"lifetime": LIFETIME}), ("esn", {"esn": True})))
    peer = batch(b / "peer.batch", peer_lines())
    # the peer's outbound SA added again at sequence 4: its next packet is number 5 again
    restart = (f"ip -n peer xfrm state delete src {PEER} dst {DUT} proto esp spi {IN_SPI:#x}; "
               + sa_line(PEER, DUT, IN_SPI, extra="replay-oseq 4").replace("ip ", "ip -n peer ", 1))

    def dut(name: str, lines: str, m: Path) -> str:
        """A clean SAD/SPD on both sides, the DUT's lines (every line tried: ``-force``;
        what ip printed in NAME.err), the peer's."""
        return (f"{FLUSH}; ip -n dut -force -batch {lines} 2> {m}/{name}.err; "
                f"ip -n peer -batch {peer}; ")

    def userland(inner: str) -> str:
        """One trip into the userland (ip 6.15)."""
        return f"$UL sh -c {shlex.quote(inner)}\n"

    s = [f"set -u\nUL='xfrmd run --socket '\"$XFRMD_SOCKET\"' --userland {USERLAND} --'\n"]
    for model in models:
        m = d / model
        m.mkdir()
        if model != "off":        # the bench's topology starts with model off
            s.append(f"{FLUSH}\nxfrmd ctl --netns dut lag-model bond0 {model}\n"
                     f"XFRMD_NETNS=dut ethtool -K bond0 esp-hw-offload on > {m}/ethtool.out 2> {m}/ethtool.err\n"
                     f"XFRMD_NETNS=dut ethtool -k bond0 | grep '^esp-hw-offload' > {m}/ethtool.txt\n")
        # the ESN SA (refused everywhere); then S5's set-up when the plain one is refused
        # (nothing to send), else the plain one
        s.append(userland(dut("esn", esn, m) + dut("plain", plain, m)
                          + f"if [ -s {m}/plain.err ]; then {dut('s5', s5, m)}fi"))
        s.append(f"if [ ! -s {m}/plain.err ]; then\n")
        # S7: where the SAs live
        s.append(f"xfrmd ctl --netns dut show-offload bond0 --json > {m}/S7.json\n")
        # S3: the peer's 10 packets on s0; packet 5 again on s1, then again on s0
        s.append(f"{RX} count 10 --deliver dut --via s0 --json > {m}/S3-1.json\n"
                 f"{restart}\n{RX} count 1 --deliver dut --via s1 --json > {m}/S3-2.json\n"
                 f"{restart}\n{RX} count 1 --deliver dut --via s0 --json > {m}/S3-3.json\n")
        # S1: two flows, each through the slave its inner flow hashes to
        s.append(f"{TX} sport {f0} count 6 --spray --deliver peer --json > {m}/S1-1.json\n"
                 f"{TX} sport {f1} count 6 --spray --deliver peer --json > {m}/S1-2.json\n")
        # S5: limits, 20 packets sprayed, the lifetimes in a dump, EXPIREs on a monitor
        # (the monitor listens before the set-up trip, which no EXPIRE comes out of)
        s.append(f"ip -n dut xfrm monitor expire > {m}/S5-monitor.txt 2>&1 & MON=$!\n")
        s.append(userland(dut("s5", s5, m)))
        s.append("sleep 0.5\n"
                 f"{TX} sport {f0} count 10 --spray --deliver peer --json > {m}/S5-1.json\n"
                 f"{TX} sport {f1} count 10 --spray --deliver peer --json > {m}/S5-2.json\n")
        # the flap: the pinned slave down and up again (its replica made anew)
        s.append(userland(f"ip -n dut -s xfrm state list > {m}/S5-state.txt; "
                          + dut("flap", plain, m)))
        s.append("kill $MON\n"
                 f"{TX} sport 1000 count 10 --deliver peer --json > {m}/flap-1.json\n"
                 f"P={PIN.format(f=m / 'flap-1.json')}\n"
                 "ip -n dut link set $P down\n"
                 f"{TX} sport 1000 count 10 --deliver peer --json > {m}/flap-2.json\n"
                 "ip -n dut link set $P up\n"
                 f"{TX} sport 1000 count 10 --deliver peer --json > {m}/flap-3.json\n")
        # S2: the pinned slave loses its carrier; 20 before, 20 after
        s.append(userland(dut("S2", plain, m)))
        s.append(f"{TX} sport 1000 count 20 --deliver peer --json > {m}/S2-1.json\n"
                 f"P={PIN.format(f=m / 'S2-1.json')}\n"
                 "xfrmd ctl --netns dut link $P carrier off\n"
                 f"{TX} sport 1000 count 20 --deliver peer --json > {m}/S2-2.json\n"
                 "xfrmd ctl --netns dut link $P carrier on\n"
                 "fi\n")
    return "".join(s)


# the servers, side by side: (pairing, its models); the two admitted models of one SOE
# engine on two servers, so that no server has much more to do than another
SERVERS = ((BENCHES[0], MODELS), (BENCHES[1], ("off", "replicated")), (BENCHES[1], ("shared",)),
           (BENCHES[2], MODELS))


@pytest.fixture(scope="module")
def benches(tmp_path_factory) -> dict[str, Path]:
    """Each pairing's output directory (``MODEL/STEP…``)."""
    require_userland(USERLAND)
    out = {p.name: tmp_path_factory.mktemp(p.name) for p in BENCHES}
    procs = []
    for pairing, models in SERVERS:
        d = out[pairing.name]
        topo = d / f"{models[0]}.toml"
        topo.write_text(toml_of(lab_topology(pairing, "off")))
        script = bench_script(pairing, d, models)
        procs.append((pairing.name, subprocess.Popen(
            XFRMD + ["run", "--topology", str(topo), "--", "sh", "-c", script],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)))
    for name, proc in procs:
        stdout, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 0, stderr
        # nothing printed: every step's output went to its file, every refusal is a cell's
        assert (stdout, stderr) == ("", ""), (name, stdout, stderr)
    return out


# -- reading what the user saw ------------------------------------------------------------------

class Printed:
    """An ``xfrmd ctl xmit --json`` answer, read by the report's own counting (its
    :func:`~xfrmd.lagreport.lab.wire` and :func:`~xfrmd.lagreport.lab.replay_drops`)."""

    def __init__(self, path: Path):
        self.json: dict[str, Any] = json.loads(path.read_text())
        self.deliver = Answer(self.json.get("deliver") or {"batches": [], "delivered": 0})

    def to_dict(self) -> dict[str, Any]:
        return self.json


class Answer:
    def __init__(self, d: dict[str, Any]):
        self.d = d
        self.delivered: int = d.get("delivered", 0)

    def to_dict(self) -> dict[str, Any]:
        return self.d


def refusal(d: Path, name: str) -> str:
    """The first line ``ip`` printed for a refused set-up ("Error: …"), or ''."""
    return next((ln for ln in (d / f"{name}.err").read_text().splitlines()
                 if ln.startswith("Error:")), "")


def tx_counts(d: Path, steps: list[str], attempted: int) -> tuple[int, int, int, int, int]:
    """sent, accepted, replay, dup, black-holed of DUT → peer steps (the report's _tx_cell)."""
    sends = [Printed(d / f"{s}.json") for s in steps]
    w = [ws for r in sends for ws in wire(r)]
    accepted = sum(r.deliver.delivered for r in sends)
    replay = sum(replay_drops(r.deliver) for r in sends)
    dup = sum(n - 1 for n in Counter(s for _, s in w).values())
    return len(w), accepted, replay, dup, attempted - accepted - replay


def tx_verdict(sent: int, accepted: int, replay: int, dup: int, lost: int) -> str:
    """A number on the wire twice or a replay drop at the peer: UNSAFE; packets that never
    left: black-holed."""
    return "UNSAFE" if dup or replay else "black-holed" if lost else "ok"


def expires(d: Path) -> list[str]:
    """soft/hard of each EXPIRE ``ip xfrm monitor`` printed ("Expired …", then "hard N")."""
    text = (d / "S5-monitor.txt").read_text()
    return ["hard" if h == "1" else "soft" for h in re.findall(r"\bhard (\d)", text)]


def cli_cell(d: Path, scenario: str) -> tuple[str, int, int, int, int, int]:
    """(verdict, sent, accepted, replay, dup, black-holed) from the files of one model."""
    setup = {"esn": "esn", "S5": "s5"}.get(scenario, "plain")
    if refusal(d, setup):
        return ("refused", 0, 0, 0, 0, 0)
    if scenario == "esn":
        raise AssertionError("an ESN SA was admitted: this test has no traffic for it")
    if scenario == "S7":
        return ("ok", 0, 0, 0, 0, 0)
    if scenario == "S3":
        first, other, same = (Printed(d / f"S3-{i}.json").deliver for i in (1, 2, 3))
        accepted = first.delivered + other.delivered + same.delivered
        replay = sum(replay_drops(a) for a in (first, other, same))
        lost = 10 - first.delivered - replay_drops(first)
        verdict = "UNSAFE" if accepted > 10 else "black-holed" if lost else "ok"
        return (verdict, 12, accepted, replay, 2, lost)
    if scenario == "S5":
        sent, accepted, replay, dup, lost = tx_counts(d, ["S5-1", "S5-2"], 10)
        ok = "hard" in expires(d) and sent <= 10
        return ("ok" if ok else "UNSAFE", sent, accepted, replay, dup, max(0, lost))
    steps = {"S1": (["S1-1", "S1-2"], 12), "S2": (["S2-1", "S2-2"], 40),
             "flap": (["flap-1", "flap-2", "flap-3"], 30)}[scenario]
    counts = tx_counts(d, *steps)
    return (tx_verdict(*counts), *counts)


CELLS = [(s.key, p, m) for s in SCENARIOS for p in BENCHES for m in MODELS]


@pytest.mark.parametrize("scenario, pairing, model", CELLS,
                         ids=[f"{s}-{p.name}-{m}" for s, p, m in CELLS])
def test_the_cli_cell_is_the_reports_cell(benches, scenario, pairing, model):
    """The command line's cell, the recorded matrix's and the report's Python API's now."""
    d = benches[pairing.name] / model
    cli = cli_cell(d, scenario)
    assert cli == EXPECTED[(scenario, pairing.name, model)]
    report = run_cell(BY_KEY[scenario], pairing, model)
    assert cli == (report.verdict, report.sent, report.accepted, report.replay, report.dup,
                   report.blackholed)
    if report.verdict == "refused":
        # the report's note is the first line its replayed ip printed; here the real ip's
        assert refusal(d, {"esn": "esn", "S5": "s5"}.get(scenario, "plain")) == report.note


# -- what the user reads, scenario by scenario ------------------------------------------------

def batches(d: Path, step: str, side: str = "") -> list[dict[str, Any]]:
    j = json.loads((d / f"{step}.json").read_text())
    return (j["deliver"] if side == "deliver" else j)["batches"]


def test_the_models_as_ethtool_and_show_offload_show_them(benches):
    mlx5, soe1 = benches["mlx5-pair"], benches["soe-1-engine"]
    assert (mlx5 / "replicated/ethtool.txt").read_text() == "esp-hw-offload: on\n"
    assert (mlx5 / "replicated/ethtool.err").read_text() == ""
    # shared over converted mlx5-like ports: not eligible, the request stays in *wanted*
    assert (mlx5 / "shared/ethtool.err").read_text() == "Could not change any device features\n"
    assert (mlx5 / "shared/ethtool.out").read_text() == (
        "Actual changes:\nesp-hw-offload: off [requested on]\n")
    assert (mlx5 / "shared/ethtool.txt").read_text() == "esp-hw-offload: off [requested on]\n"
    out = next(sa for sa in json.loads((mlx5 / "replicated/S7.json").read_text())["bond0"]["sas"]
               if sa["spi"] == OUT_SPI)
    assert [(r["slave"], r["flags"]) for r in out["replicas"]] == [
        ("s0", "LOWER_HANDLE"), ("s1", "LOWER_HANDLE")]
    # per port: each replica its own context
    assert len({r["context"] for r in out["replicas"]}) == 2
    out = next(sa for sa in json.loads((soe1 / "shared/S7.json").read_text())["bond0"]["sas"]
               if sa["spi"] == OUT_SPI)
    assert (out["slave"], out["valid_on"]) == ("s0", ["s0", "s1"])
    out = next(sa for sa in json.loads((soe1 / "replicated/S7.json").read_text())["bond0"]["sas"]
               if sa["spi"] == OUT_SPI)
    # SOE ports of one engine: two replicas, one engine slot
    assert len({r["context"] for r in out["replicas"]}) == 1


def test_s1_spray_the_peer_drops_the_second_use_of_each_number(benches):
    d = benches["mlx5-pair"] / "replicated"
    first, second = batches(d, "S1-1"), batches(d, "S1-2")
    slaves = {b["sas"][0]["slave"] for b in first} | {b["sas"][0]["slave"] for b in second}
    assert slaves == {"s0", "s1"}
    assert [b["seq"][f"0x{OUT_SPI:08x}"] for b in first + second] == [[1, 6], [1, 6]]
    # the second flow's numbers, each dropped by the peer's window
    assert [(b["result"], b["reason"], b["detail"].split(" (replay)")[0])
            for b in batches(d, "S1-2", "deliver")] == [
        ("dropped", "XfrmInStateSeqError", f"SA 0x100 (reqid 1): sequence {n} already received")
        for n in range(1, 7)]
    # one engine: one counter, 1–12 across both slaves
    d = benches["soe-1-engine"] / "replicated"
    assert [b["seq"][f"0x{OUT_SPI:08x}"] for b in batches(d, "S1-1") + batches(d, "S1-2")] == [
        [1, 6], [7, 12]]


def test_s2_the_shared_model_flushes_when_the_pin_loses_its_carrier(benches):
    d = benches["soe-1-engine"] / "shared"
    [b] = batches(d, "S2-2")
    # the bond flushed its states (P39): no state for the packet-offload policy's template
    assert (b["result"], b["count"], b["sas"], b["reason"], b["errno"]) == (
        "dropped", 20, [], "XfrmOutPolError", "ENOTSUP")
    assert b["detail"].startswith("xfrm_state_find failed for reqid 1")
    d = benches["mlx5-pair"] / "replicated"
    [b] = batches(d, "S2-2")
    assert (b["sas"][0]["slave"], b["seq"][f"0x{OUT_SPI:08x}"]) == ("s1", [1, 20])


def test_s3_reinjection_on_the_other_slave(benches):
    """Packet 5 again: accepted on the other mlx5-like port (its own window), dropped by one
    SOE engine's slot; on the slave that saw it, a hardware replay drop."""
    d = benches["mlx5-pair"] / "replicated"
    [b] = batches(d, "S3-2", "deliver")
    assert (b["result"], b["slave"], b["seq"]) == ("delivered", "s1", [5, 5])
    [b] = batches(d, "S3-3", "deliver")
    assert (b["result"], b["slave"]) == ("dropped", "s0")
    assert b["detail"].startswith("mlx5_core: hardware replay drop on s0: sequence 5")
    d = benches["soe-1-engine"] / "replicated"
    [b] = batches(d, "S3-2", "deliver")
    assert (b["result"], b["slave"]) == ("dropped", "s1")
    assert "replay" in b["detail"]


def test_flap_the_returning_slave_restarts_at_sequence_1(benches):
    d = benches["mlx5-pair"] / "replicated"
    seqs = [(b["sas"][0]["slave"], b["seq"][f"0x{OUT_SPI:08x}"])
            for step in ("flap-1", "flap-2", "flap-3") for b in batches(d, step)]
    assert seqs == [("s0", [1, 10]), ("s1", [1, 10]), ("s0", [1, 10])]
    # one engine: the slot the other port kept numbers on
    d = benches["soe-1-engine"] / "replicated"
    assert [b["seq"][f"0x{OUT_SPI:08x}"] for step in ("flap-1", "flap-2", "flap-3")
            for b in batches(d, step)] == [[1, 10], [11, 20], [21, 30]]


def test_s5_lifetimes_and_expires(benches):
    """The core's accounting (shared, SOE): soft then hard EXPIRE and 10 packets; the RFC's
    replicas: each port its half, no EXPIRE, the state's counters never move."""
    d = benches["soe-1-engine"] / "shared"
    assert expires(d) == ["soft", "hard"]
    # the hard EXPIRE deleted the outbound SA: the dump has the inbound one only
    assert re.findall(r"spi (0x[0-9a-f]+)", (d / "S5-state.txt").read_text()) == ["0x00000200"]
    d = benches["mlx5-pair"] / "replicated"
    assert expires(d) == []
    out = out_state(d / "S5-state.txt")
    # 20 packets left through the two ports, the state's counters never moved (R2)
    assert "limit: soft 8(packets), hard 10(packets)" in out
    assert "lifetime current:\n\t  0(bytes), 0(packets)\n" in out, out


def out_state(path: Path) -> str:
    """The outbound SA's block of an ``ip -s xfrm state`` dump."""
    blocks = re.split(r"(?m)^(?=src )", path.read_text())
    return next(b for b in blocks if f"spi 0x{OUT_SPI:08x}" in b)


def test_esn_refusals(benches):
    assert refusal(benches["mlx5-pair"] / "replicated", "esn") == (
        "Error: bonding: LAG does not support XFRM ESN offload.")
    assert refusal(benches["soe-1-engine"] / "off", "esn") == (
        "Error: airoha_eth: SOE ESN is not supported yet.")
