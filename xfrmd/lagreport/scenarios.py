"""The review's questions as scenarios (docs/bonding.md, S1–S7), each run on a fresh
:class:`~xfrmd.lagreport.lab.Lab` and measured the same way:

``sent``        ESP packets put on the wire (by the DUT; by the peer for re-injection)
``accepted``    packets the receiving stack delivered
``replay``      packets the receiver dropped as replayed or too old
``dup``         sequence numbers seen more than once on the wire for one SA
``blackholed``  packets meant to be sent that nobody delivered or dropped as a replay
                (the DUT had no state or replica for them, or they were lost)

and a verdict: ``ok``; ``UNSAFE`` (a duplicate sequence number, an accepted replay, a
lifetime not enforced); ``black-holed`` (traffic stops until the key manager acts);
``refused`` (the bond or a driver did not admit the SAs and policies: the set-up's error
is the note)."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Callable

from ..datapath.input import InputResult
from ..datapath.output import XmitResult
from .lab import OUT_SPI, Lab, Pairing, replay_drops, wire

OK, UNSAFE, BLACKHOLED, REFUSED = "ok", "UNSAFE", "black-holed", "refused"


@dataclass
class Cell:
    scenario: str
    pairing: str
    model: str
    sent: int = 0
    accepted: int = 0
    replay: int = 0
    dup: int = 0
    blackholed: int = 0
    verdict: str = OK
    note: str = ""
    # (packet number, slave, sequence number) of each packet the DUT sent, for the plot
    trace: list[tuple[int, str, int]] = field(default_factory=list)
    setup: list[str] = field(default_factory=list)
    where: list[dict] = field(default_factory=list)   # the bond's offload table after set-up

    def as_dict(self) -> dict:
        return {"scenario": self.scenario, "pairing": self.pairing, "model": self.model,
                "sent": self.sent, "accepted": self.accepted, "replay": self.replay,
                "dup": self.dup, "blackholed": self.blackholed, "verdict": self.verdict,
                "note": self.note}


def _duplicates(seqs: list[int]) -> int:
    return sum(n - 1 for n in Counter(seqs).values() if n > 1)


def _judge(cell: Cell, *, expected_replays: int = 0) -> None:
    """The verdict from the counts (a scenario may set a sharper note first)."""
    if cell.dup or cell.replay > expected_replays:
        cell.verdict = UNSAFE
    elif cell.blackholed:
        cell.verdict = BLACKHOLED


def _tx_cell(cell: Cell, lab: Lab, sends: list, attempted: int) -> None:
    """Counts of a DUT → peer scenario: the wire, then the peer's verdict on it."""
    packets = [p for r in sends for p, _ in r.packets]
    w = [ws for r in sends for ws in wire(r)]
    cell.trace = [(i + 1, slave or "bond0", seq) for i, (slave, seq) in enumerate(w)]
    got = lab.to_peer(packets)
    cell.sent, cell.accepted, cell.replay = len(w), got.delivered, replay_drops(got)
    cell.dup = _duplicates([s for _, s in w])
    cell.blackholed = attempted - cell.accepted - cell.replay


def spray(lab: Lab, cell: Cell) -> None:
    """S1: two inner flows hashed to two slaves, each packet through the slave
    ``bond_xmit_hash`` picks (``xfrmd ctl xmit --spray``)."""
    f0, f1 = lab.flows_on_two_slaves()
    sends = [lab.dut_send(1, sport, spray=True) for sport in (f0, f1) * 6]
    _tx_cell(cell, lab, sends, 12)
    _judge(cell)
    if cell.dup:
        cell.note = (f"{cell.dup} sequence numbers used twice (one counter per slave); the peer "
                     f"dropped {cell.replay} as replays")


def pin_move(lab: Lab, cell: Cell) -> None:
    """S2: the bond's pinned slave loses its carrier; the pin moves to the other slave."""
    first = lab.dut_send(20)
    pinned = next((s for s, _ in wire(first)), None)
    if pinned:
        lab.carrier(pinned, False)
    second = lab.dut_send(20)
    _tx_cell(cell, lab, [first, second], 40)
    _judge(cell)
    after = wire(second)
    if after and cell.dup:
        cell.note = f"the new slave {after[0][0]} restarted at sequence {after[0][1]}"
    elif not after:
        cell.note = f"after {pinned or 'the slave'} went down nothing was sent: " + _first_drop(second)


def _first_drop(res: XmitResult | InputResult) -> str:
    """Why the first packet that did not make it was dropped (its first clause)."""
    for b in res.to_dict()["batches"]:
        if b.get("result") not in ("sent", "delivered"):
            return (b.get("detail") or b.get("reason") or "dropped").split(";")[0]
    return "no state"


def reinjection(lab: Lab, cell: Cell) -> None:
    """S3: the peer's packet 5 arrives again, first on the other slave, then on the same."""
    pkts = lab.peer_send(10)
    first = lab.to_dut(pkts, "s0")
    other = lab.to_dut([pkts[4]], "s1")
    same = lab.to_dut([pkts[4]], "s0")
    cell.sent, cell.dup = 12, 2
    cell.accepted = first.delivered + other.delivered + same.delivered
    cell.replay = replay_drops(first) + replay_drops(other) + replay_drops(same)
    cell.blackholed = 10 - first.delivered - replay_drops(first)
    if cell.accepted > 10:
        cell.verdict = UNSAFE
        cell.note = (f"the re-injected packet was accepted {cell.accepted - 10} more time(s): "
                     "one replay window per slave")
    elif cell.blackholed:
        cell.verdict = BLACKHOLED
        cell.note = "inbound packets were not delivered: " + _first_drop(first)


def flap(lab: Lab, cell: Cell) -> None:
    """Slave flap: the pinned slave goes down and comes back (``ip link set … down``, ``up``):
    the RFC bond deletes its replicas when it stops running and adds new ones when it runs
    again (R4), so under per-slave contexts the pin returns to a counter restarting at 1."""
    first = lab.dut_send(10)
    pinned = next((s for s, _ in wire(first)), None)
    if pinned:
        lab.run("dut", f"ip link set {pinned} down")
    middle = lab.dut_send(10)
    if pinned:
        lab.run("dut", f"ip link set {pinned} up")
    last = lab.dut_send(10)
    _tx_cell(cell, lab, [first, middle, last], 30)
    _judge(cell)
    if cell.dup:
        cell.note = f"{cell.dup} sequence numbers reused after the flap"


def esn_advance(lab: Lab, cell: Cell) -> None:
    """ESN on receive: the peer's SA starts at 0xfffffff0 and crosses 2^32; its packets
    arrive alternately on both slaves (a partner hashing two flows), then a packet from
    before the wrap is re-injected on the other slave."""
    pkts = lab.peer_send(32)
    got = [lab.to_dut([p], "s1" if i % 2 else "s0") for i, p in enumerate(pkts)]
    again = lab.to_dut([pkts[3]], "s0")
    cell.sent, cell.dup = 33, 1
    cell.accepted = sum(g.delivered for g in got) + again.delivered
    cell.replay = sum(replay_drops(g) for g in got) + replay_drops(again)
    lost = 32 - sum(g.delivered for g in got)
    cell.blackholed = max(0, lost - sum(replay_drops(g) for g in got))
    if cell.accepted > 32:
        cell.verdict = UNSAFE
        cell.note = "a packet from before the wrap was accepted again on the other slave"
    elif lost:
        cell.verdict = UNSAFE if any(replay_drops(g) for g in got) else BLACKHOLED
        cell.note = f"{lost} of 32 packets across the wrap were not delivered"


def lifetimes(lab: Lab, cell: Cell) -> None:
    """Lifetimes under replicas: ``limit packet-soft 8 limit packet-hard 10``, 20 packets
    sprayed over both slaves; what the hardware counted is read with a state dump (the
    ``xdo_dev_state_update_stats`` path) and the EXPIREs the kernel sent are counted."""
    mon = lab.expires()
    f0, f1 = lab.flows_on_two_slaves()
    sends = [lab.dut_send(1, sport, spray=True) for sport in (f0, f1) * 10]
    lab.run("dut", "ip -s xfrm state list")
    lab.kernel.run_timers()
    _tx_cell(cell, lab, sends, 10)        # 10 may go out under the hard limit
    cell.blackholed = max(0, cell.blackholed)
    seen = mon.seen()
    over = max(0, cell.sent - 10)
    if "hard" not in seen or over:
        cell.verdict = UNSAFE
        cell.note = (f"{over} packets after the hard limit, EXPIREs sent: "
                     f"{', '.join(seen) or 'none'}")
    else:
        cell.verdict = OK
        cell.note = f"EXPIREs sent: {', '.join(seen)}"


def admission(lab: Lab, cell: Cell) -> None:
    """S7: which pairings the model admits, and where the SAs then live."""
    table = lab.offload_table()
    out = next((e for e in table if e.get("spi") == OUT_SPI), None)
    if out is None:
        cell.verdict, cell.note = REFUSED, "no SA on the bond"
        return
    if "replicas" in out:
        cell.note = f"replicated on {', '.join(r['slave'] for r in out['replicas'])}"
    elif "valid_on" in out:
        cell.note = (f"one shared context on {out.get('slave')}, valid on "
                     f"{', '.join(out['valid_on'])}")
    else:
        cell.note = f"on {out.get('slave', '?')} only"


@dataclass(frozen=True)
class Scenario:
    key: str
    title: str
    run: Callable[[Lab, Cell], None]
    esn: bool = False
    lifetime: str = ""


SCENARIOS = (
    Scenario("S1", "spray: per-slave sequence counters", spray),
    Scenario("S2", "pin move to the other slave", pin_move),
    Scenario("S3", "re-injection across slaves", reinjection),
    Scenario("flap", "slave flap restarting at sequence 0", flap),
    Scenario("esn", "ESN advance across 2^32", esn_advance, esn=True),
    Scenario("S5", "hard packet limit under replicas", lifetimes,
             lifetime="limit packet-soft 8 limit packet-hard 10"),
    Scenario("S7", "admission", admission),
)


def run_cell(scenario: Scenario, pairing: Pairing, model: str) -> Cell:
    lab = Lab(pairing, model, esn=scenario.esn, lifetime=scenario.lifetime)
    cell = Cell(scenario.key, pairing.name, model,
                setup=[f"[{c.netns}] {c.line}" + (f"\n    → {c.stderr.strip()}" if c.status else "")
                       for c in lab.setup],
                where=lab.offload_table())
    if not lab.admitted:
        cell.verdict, cell.note = REFUSED, lab.refusal
        return cell
    scenario.run(lab, cell)
    return cell
