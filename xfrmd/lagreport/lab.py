"""One evaluation bench: a DUT namespace whose 802.3ad bond (layer3+4 hash) carries
packet-offloaded ESP to a software IPsec peer, built in-process on a manual clock.

The set-up is an ``ip`` script, run through the replayer against the in-process kernel, so
the report can show the exact commands a reader would type (and a refused line's error is
the text ``ip`` prints). Packets go through the emulated data path: ``xfrm_xmit`` for the
sender (``--spray`` and the bond's own pin), ``deliver_packets`` for the receiver, with the
arriving slave chosen as a link partner's LAG hash would."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bonding.hash import Flow, xmit_slave
from netlink_codec import netlink as N
from netlink_codec import xfrm as X

from ..clock import ManualClock
from ..datapath.input import InputResult, deliver_packets
from ..datapath.output import XmitResult, xfrm_xmit
from ..kernel import Kernel
from ..replay.runner import Backend, LineResult, read_script, run_line
from ..services import handle as service
from ..topology import from_dict

DUT, PEER = "192.0.2.1", "192.0.2.2"          # outer (tunnel) addresses
A, B = "10.0.0.1", "10.1.0.1"                  # the inner flow
OUT_SPI, IN_SPI = 0x100, 0x200
KEY = "0x" + "4a" * 20                         # AES-GCM-128 key + 4-byte salt
UDP = 17
USERSA_INFO_LEN = 224                          # sizeof(struct xfrm_usersa_info)


@dataclass(frozen=True)
class Pairing:
    """The two lower devices of the bond: (driver kind, NIC or engine name) each."""
    name: str
    title: str
    lowers: tuple[tuple[str, str], tuple[str, str]]


PAIRINGS = (
    Pairing("mlx5-pair", "mlx5-like pair (converted)", (("mlx5", "nic-0"), ("mlx5", "nic-1"))),
    Pairing("soe-1-engine", "SOE, one engine", (("airoha-soe", "soe0"), ("airoha-soe", "soe0"))),
    Pairing("soe-2-engines", "SOE, two engines", (("airoha-soe", "soe0"), ("airoha-soe", "soe1"))),
    Pairing("mixed", "mixed (converted mlx5-like + SOE)",
            (("mlx5", "nic-0"), ("airoha-soe", "soe0"))),
)
MODELS = ("off", "replicated", "shared")


def topology(pairing: Pairing, model: str, mode: str = "802.3ad") -> dict[str, Any]:
    """The bench's two namespaces; bond0 in ``mode`` (802.3ad: hashing layer3+4)."""
    # an mlx5-like port opts in to LAG only converted (the RFC converted no driver): the
    # report evaluates the RFC example's port, so it sets the topology's lag_converted
    bond: dict[str, Any] = {"name": "bond0", "kind": "bond", "mode": mode}
    if mode != "active-backup":
        bond["xmit_hash_policy"] = "layer3+4"
    bond.update({"lag_model": model, "esp_hw_offload": True, "addresses": [f"{DUT}/24"]})
    lowers = [{"name": f"s{i}", "kind": kind, "nic": nic, "master": "bond0"}
              | ({"lag_converted": True} if kind == "mlx5" else {})
              for i, (kind, nic) in enumerate(pairing.lowers)]
    return {"netns": [
        {"name": "dut", "device": lowers + [
            bond,
            {"name": "inner", "kind": "dummy", "addresses": [f"{A}/24"]}],
         "route": [{"dst": "10.1.0.0/24", "via": PEER, "dev": "bond0"}]},
        {"name": "peer", "device": [
            {"name": "eth0", "kind": "dummy", "addresses": [f"{PEER}/24", f"{B}/24"]}],
         "route": [{"dst": "10.0.0.0/24", "via": DUT, "dev": "eth0"}]},
    ]}


def sa_line(src: str, dst: str, spi: int, *, offload: str = "", esn: bool = False,
            replay: int = 0, extra: str = "") -> str:
    return (f"ip xfrm state add src {src} dst {dst} proto esp spi {spi:#x} reqid 1 mode tunnel "
            f"aead 'rfc4106(gcm(aes))' {KEY} 128"
            + (f" replay-window {replay}" if replay else "") + (" flag esn" if esn else "")
            + (f" {extra}" if extra else "") + (f" {offload}" if offload else ""))


def policy_line(src: str, dst: str, direction: str, tsrc: str, tdst: str,
                offload: str = "") -> str:
    return (f"ip xfrm policy add src {src} dst {dst} dir {direction} tmpl src {tsrc} dst {tdst} "
            f"proto esp reqid 1 mode tunnel" + (f" {offload}" if offload else ""))


class InprocSocket:
    """An emulated netlink socket of an in-process kernel, with the replayer's socket
    interface (send, recv, recv_nowait, close): answers are queued synchronously."""

    def __init__(self, kernel: Kernel, protocol: int, netns: str):
        self.kernel = kernel
        self.sock = kernel.socket(protocol, netns)
        kernel.bind(self.sock)
        kernel.setsockopt(self.sock, N.SOL_NETLINK, N.NETLINK_EXT_ACK, 1)

    def send(self, data: bytes) -> None:
        self.kernel.deliver(self.sock, data)

    def recv(self) -> bytes:
        data = self.kernel.recv(self.sock)
        if data is None:            # nothing queued: the request had no answer
            raise BlockingIOError("no answer queued")
        return data

    def recv_nowait(self) -> bytes | None:
        return self.kernel.recv(self.sock)

    def close(self) -> None:
        self.kernel.close(self.sock)


class InprocBackend(Backend):
    """The replayer's backend for a kernel in this process."""

    def __init__(self, kernel: Kernel, netns: str):
        super().__init__(netns=netns)
        self.kernel = kernel

    def open(self, protocol: int) -> InprocSocket:  # type: ignore[override]
        return InprocSocket(self.kernel, protocol, self.netns)

    def name_to_index(self, name: str) -> int:
        dev = self.kernel.netns(self.netns).links.by_name(name)
        return dev.ifindex if dev is not None else 0

    def index_to_name(self, index: int) -> str | None:
        dev = self.kernel.netns(self.netns).links.by_index(index)
        return dev.name if dev is not None else None

    def close(self) -> None:
        pass


@dataclass
class Command:
    """One line of a set-up script and what ``ip`` would have printed."""
    netns: str
    line: str
    status: int
    stderr: str


@dataclass
class Lab:
    """The bench for one pairing under one LAG model. ``setup`` holds every command run,
    ``admitted`` whether the DUT's SAs and policies were all accepted. ``mode``: the bond's
    (802.3ad, or active-backup); ``offload``: ``packet`` (SAs and policies on bond0) or
    ``crypto`` (the SAs only)."""
    pairing: Pairing
    model: str
    esn: bool = False
    lifetime: str = ""
    setup: list[Command] = field(default_factory=list)
    mode: str = "802.3ad"
    offload: str = "packet"

    def __post_init__(self) -> None:
        self.kernel = Kernel(ManualClock(), seed=1, topology=from_dict(
            topology(self.pairing, self.model, self.mode)))
        self.dut_ns, self.peer_ns = self.kernel.netns("dut"), self.kernel.netns("peer")
        self.bond = self.dut_ns.links.by_name("bond0")
        packet = self.offload == "packet"
        off = "offload packet dev bond0" if packet else "offload dev bond0"
        pol = off if packet else ""
        esn = self.esn      # ESN on the peer → DUT direction (the DUT's inbound SA)
        self.run("dut", "\n".join([
            sa_line(DUT, PEER, OUT_SPI, offload=f"{off} dir out", extra=self.lifetime),
            # ESN: the receiver's window where the sender's counter starts (0xfffffff0), as
            # on two ends that have run a while; a window at 0 would place those numbers in
            # the previous 2^32 (xfrm_replay_seqhi) and fail the ICV
            sa_line(PEER, DUT, IN_SPI, offload=f"{off} dir in", esn=esn, replay=64,
                    extra="replay-seq 0xfffffff0" if esn else ""),
            policy_line("10.0.0.0/24", "10.1.0.0/24", "out", DUT, PEER, pol),
            policy_line("10.1.0.0/24", "10.0.0.0/24", "in", PEER, DUT, pol)]))
        self.run("peer", "\n".join([
            sa_line(DUT, PEER, OUT_SPI, replay=64),
            sa_line(PEER, DUT, IN_SPI, esn=esn, replay=32 if esn else 0,
                    extra="replay-oseq 0xfffffff0" if esn else ""),
            policy_line("10.0.0.0/24", "10.1.0.0/24", "in", DUT, PEER),
            policy_line("10.1.0.0/24", "10.0.0.0/24", "out", PEER, DUT)]))

    @property
    def admitted(self) -> bool:
        return all(c.status == 0 for c in self.setup if c.netns == "dut")

    @property
    def refusal(self) -> str:
        """The first DUT command's error, as ``ip`` printed it."""
        for c in self.setup:
            if c.netns == "dut" and c.status:
                return c.stderr.strip()
        return ""

    def run(self, netns: str, script: str) -> list[LineResult]:
        backend = InprocBackend(self.kernel, netns)
        out = []
        for lineno, words, text in read_script(script):
            res = run_line(backend, words, lineno, {"iproute2": "6.15"})
            self.setup.append(Command(netns, text, res.status, res.stderr))
            out.append(res)
        return out

    # -- traffic ---------------------------------------------------------------------------

    def dut_send(self, count: int = 1, sport: int = 1000, spray: bool = False) -> XmitResult:
        return xfrm_xmit(self.dut_ns, A, B, UDP, sport, 2000, 64, count, keep_packets=True,
                         spray=spray)

    def peer_send(self, count: int) -> list[bytes]:
        res = xfrm_xmit(self.peer_ns, B, A, UDP, 2000, 1000, 64, count, keep_packets=True)
        return [p for p, _ in res.packets]

    def to_peer(self, packets: list[bytes]) -> InputResult:
        return deliver_packets(self.peer_ns, packets)

    def to_dut(self, packets: list[bytes], slave: str) -> InputResult:
        return deliver_packets(self.dut_ns, packets, rx_dev=self.dut_ns.links.by_name(slave))

    def carrier(self, slave: str, on: bool) -> None:
        """``xfrmd ctl link SLAVE carrier on|off``."""
        service(self.kernel, "dut", {"op": "link_carrier", "dev": slave, "on": on})

    def flows_on_two_slaves(self) -> tuple[int, int]:
        """Two source ports whose inner flows ``bond_xmit_hash`` puts on s0 and s1."""
        usable = self.bond.bond.usable_slaves()
        by: dict[str, int] = {}
        for sport in range(1000, 1200):
            s = xmit_slave(Flow(bytes(6), bytes(6), A, B, UDP, sport, 2000), "layer3+4", usable)
            by.setdefault(s.name, sport)
            if len(by) == 2:
                return by["s0"], by["s1"]
        return 1000, 1001

    def offload_table(self) -> list[dict[str, Any]]:
        """Where each SA lives: the bond's view of its slaves and hardware contexts."""
        ops = self.bond.xfrmdev_ops
        return list(ops.table(self.bond)) if ops is not None else []

    def expires(self) -> "ExpireMonitor":
        return ExpireMonitor(self.kernel, "dut")


class ExpireMonitor:
    """An XFRMGRP_EXPIRE listener: which EXPIREs (soft, hard) the DUT's kernel sent."""

    def __init__(self, kernel: Kernel, netns: str):
        self.kernel = kernel
        self.sock = kernel.socket(N.NETLINK_XFRM, netns)
        kernel.bind(self.sock)
        kernel.setsockopt(self.sock, N.SOL_NETLINK, N.NETLINK_ADD_MEMBERSHIP, X.XfrmNlGrp.EXPIRE)

    def seen(self) -> list[str]:
        """"soft"/"hard" for each XFRM_MSG_EXPIRE queued so far (``xfrm_user_expire.hard``)."""
        out = []
        while (data := self.kernel.recv(self.sock)) is not None:
            for hdr in N.kernel_messages(data):
                if hdr.type == X.XfrmMsg.EXPIRE:
                    # struct xfrm_user_expire: xfrm_usersa_info, then __u8 hard
                    hard = data[hdr.offset + N.NLMSG_HDRLEN + USERSA_INFO_LEN]
                    out.append("hard" if hard else "soft")
        return out


def wire(res: XmitResult, spi: int = OUT_SPI) -> list[tuple[str | None, int]]:
    """(slave, sequence number) of each packet of ``spi`` that left, in order."""
    out: list[tuple[str | None, int]] = []
    key = f"0x{spi:08x}"
    for b in res.to_dict()["batches"]:
        if b.get("result") != "sent" or key not in b["seq"]:
            continue
        slave = next((h.get("slave") for h in b.get("sas", ()) if h.get("spi") == key), None)
        lo, hi = b["seq"][key]
        out += [(slave, s) for s in range(lo, hi + 1)]
    return out


def replay_drops(res: InputResult) -> int:
    """Packets the receiver dropped as replayed or too old: by the stack's window
    (XfrmInStateSeqError) or by a driver's hardware context ("…: hardware replay drop …")."""
    return sum(b["count"] for b in res.to_dict()["batches"]
               if b.get("result") == "dropped" and (
                   b.get("reason") == "XfrmInStateSeqError"
                   or "hardware replay drop" in str(b.get("reason", ""))))
