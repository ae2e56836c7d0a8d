"""The replay scenarios S1–S6 of docs/bonding.md, driven through the emulated data path: a
DUT namespace with an 802.3ad layer3+4 bond and a software IPsec peer namespace, ESP carried
between them. This is why the LAG design is controversial: replicated states with per-slave
sequence/replay contexts (mlx5-like lowers under the RFC) reuse sequence numbers and accept
replays; one shared context (SOE lowers under the newest series) does not; crypto offload
is not exposed at all."""
from __future__ import annotations

import errno as E

import pytest

from netlink_codec import xfrm as X
from xfrmd.clock import ManualClock
from xfrmd.datapath.input import deliver_packets
from xfrmd.datapath.output import xfrm_xmit
from xfrmd.kernel import Kernel
from xfrmd.rtnl.link import dev_close
from xfrmd.topology import from_dict
from bonding.hash import Flow, xmit_slave
from xfrmd.lagreport.lab import Pairing, topology as lab_topology

from .datapath_helpers import TUNNEL, Nl, lifetime, policy, sa, state
from .sad_helpers import messages

OUT, IN = X.XFRM_POLICY_OUT, X.XFRM_POLICY_IN
DUT, PEER = "192.0.2.1", "192.0.2.2"
A, B = "10.0.0.1", "10.1.0.1"                 # the inner flow
PKT = X.XFRM_OFFLOAD_PACKET


def topology(kind: str, model: str) -> dict:
    """The lag-report bench (xfrmd/lagreport/lab.py) with two lowers of one kind on one NIC."""
    return lab_topology(Pairing(kind, kind, ((kind, "nic-0"), (kind, "nic-0"))), model)


def nl(k, ns):
    from netlink_codec import netlink as N
    s = Nl.__new__(Nl)
    s.k, s.s = k, k.socket(N.NETLINK_XFRM, ns)
    k.bind(s.s)
    k.setsockopt(s.s, N.SOL_NETLINK, N.NETLINK_EXT_ACK, 1)
    return s


class Lab:
    """DUT with SA 0x100 out / 0x200 in offloaded to bond0 (``offload``: PKT or 0 = crypto),
    the peer with the same SAs in software, both windows 64."""

    def __init__(self, kind="mlx5", model="replicated", offload=PKT, lft=None):
        self.k = Kernel(ManualClock(), topology=from_dict(topology(kind, model)))
        dut, peer = nl(self.k, "dut"), nl(self.k, "peer")
        self.dut_ns, self.peer_ns = self.k.netns("dut"), self.k.netns("peer")
        self.bond = self.dut_ns.links.by_name("bond0")
        off = (self.bond.ifindex, offload)
        pol_off = off if offload == PKT else None
        kw = {"lft": lft} if lft else {}
        dut.ok(sa(DUT, PEER, 0x100, offload=off, **kw))
        dut.ok(sa(PEER, DUT, 0x200, offload=(self.bond.ifindex, offload | X.XFRM_OFFLOAD_INBOUND),
                  esn=(64, 0, 0, 0, 0)))
        dut.ok(policy("10.0.0.0", "10.1.0.0", OUT, [(DUT, PEER, 1, TUNNEL)], plen=24, offload=pol_off))
        dut.ok(policy("10.1.0.0", "10.0.0.0", IN, [(PEER, DUT, 1, TUNNEL)], plen=24,
                      offload=(self.bond.ifindex, PKT) if offload == PKT else None))
        peer.ok(sa(DUT, PEER, 0x100, esn=(64, 0, 0, 0, 0)))
        peer.ok(sa(PEER, DUT, 0x200))
        peer.ok(policy("10.0.0.0", "10.1.0.0", IN, [(DUT, PEER, 1, TUNNEL)], plen=24))
        peer.ok(policy("10.1.0.0", "10.0.0.0", OUT, [(PEER, DUT, 1, TUNNEL)], plen=24))

    def slave(self, name):
        return self.dut_ns.links.by_name(name)

    def dut_send(self, count=1, sport=1000, spray=False):
        return xfrm_xmit(self.dut_ns, A, B, 17, sport, 2000, 64, count, keep_packets=True,
                         spray=spray)

    def peer_send(self, count):
        return [p for p, _ in xfrm_xmit(self.peer_ns, B, A, 17, 2000, 1000, 64, count,
                                        keep_packets=True).packets]

    def to_peer(self, res):
        return deliver_packets(self.peer_ns, [p for p, _ in res.packets])

    def to_dut(self, pkts, slave):
        return deliver_packets(self.dut_ns, pkts, rx_dev=self.slave(slave))


def flows_on_two_slaves(lab):
    """Two source ports whose inner flows bond_xmit_hash puts on s0 and s1."""
    usable = lab.bond.bond.usable_slaves()
    by = {}
    for sport in range(1000, 1100):
        s = xmit_slave(Flow(bytes(6), bytes(6), A, B, 17, sport, 2000), "layer3+4", usable)
        by.setdefault(s.name, sport)
        if len(by) == 2:
            return by["s0"], by["s1"]
    raise AssertionError("no two flows on two slaves")


def wire(res):
    """(slave, seq) of each packet the DUT sent."""
    out = []
    for b in res.to_dict()["batches"]:
        hop = b["sas"][0]
        lo, hi = b["seq"]["0x00000100"]
        out += [(hop.get("slave"), s) for s in range(lo, hi + 1)]
    return out


# -- S1 -----------------------------------------------------------------------------------------

def test_s1_per_slave_counters_with_per_flow_spraying_duplicate_sequence_numbers():
    lab = Lab("mlx5", "replicated")
    f1, f2 = flows_on_two_slaves(lab)
    sent = [lab.dut_send(1, sport, spray=True) for sport in (f1, f2, f1, f2)]
    assert [w for r in sent for w in wire(r)] == [("s0", 1), ("s1", 1), ("s0", 2), ("s1", 2)]
    got = deliver_packets(lab.peer_ns, [p for r in sent for p, _ in r.packets])
    assert (got.delivered, got.dropped) == (2, 2)
    assert state(lab.k, 0x100, "peer").stats[1] == 2              # x->stats.replay


def test_s1_the_rfc_pin_keeps_one_slave_and_one_counter():
    lab = Lab("mlx5", "replicated")
    f1, f2 = flows_on_two_slaves(lab)
    sent = [lab.dut_send(1, sport) for sport in (f1, f2, f1, f2)]
    ws = [w for r in sent for w in wire(r)]
    assert [s for _, s in ws] == [1, 2, 3, 4] and len({sl for sl, _ in ws}) == 1
    assert deliver_packets(lab.peer_ns, [p for r in sent for p, _ in r.packets]).delivered == 4


def test_s1_newest_series_one_shared_context_on_the_pinned_slave():
    lab = Lab("airoha-soe", "shared")
    f1, f2 = flows_on_two_slaves(lab)
    sent = [lab.dut_send(1, sport, spray=True) for sport in (f1, f2, f1, f2)]
    ws = [w for r in sent for w in wire(r)]
    assert [s for _, s in ws] == [1, 2, 3, 4] and len({sl for sl, _ in ws}) == 1
    got = deliver_packets(lab.peer_ns, [p for r in sent for p, _ in r.packets])
    assert (got.delivered, state(lab.k, 0x100, "peer").stats[1]) == (4, 0)


# -- S2 -----------------------------------------------------------------------------------------

def test_s2_sequence_restart_when_the_rfc_pin_moves():
    lab = Lab("mlx5", "replicated")
    first = lab.dut_send(100)
    [(pinned, _)] = {w[0]: w for w in wire(first)}.items()
    assert lab.to_peer(first).delivered == 100
    dev_close(lab.slave(pinned))          # the RFC deletes that replica; the pin moves
    after = lab.dut_send(101)
    ws = wire(after)
    assert ws[0] == ({"s0": "s1", "s1": "s0"}[pinned], 1)         # a fresh context: seq 1
    got = lab.to_peer(after)
    # seq 1..36 left of the 64-packet window, 37..100 already seen; 101 delivered again
    x = state(lab.k, 0x100, "peer")
    assert (got.dropped, got.delivered) == (100, 1)
    assert (x.stats[0], x.stats[1]) == (36, 64)


def test_s2_newest_series_flushes_instead_of_reusing_sequence_numbers():
    lab = Lab("airoha-soe", "shared")
    first = lab.dut_send(10)
    [(pinned, _)] = {w[0]: w for w in wire(first)}.items()
    dev_close(lab.slave(pinned))
    assert state(lab.k, 0x100, "dut") is None                     # flushed, not moved
    after = lab.dut_send(5).to_dict()
    assert after["sent"] == 0 and after["dropped"] == 5
    assert lab.to_peer(first).delivered == 10


# -- S3 -----------------------------------------------------------------------------------------

def test_s3_a_replay_is_accepted_on_the_other_slave_with_per_slave_windows():
    lab = Lab("mlx5", "replicated")
    pkts = lab.peer_send(10)
    assert lab.to_dut(pkts, "s0").delivered == 10
    assert lab.to_dut([pkts[4]], "s1").delivered == 1             # duplicate delivery
    again = lab.to_dut([pkts[4]], "s0")
    # the port's driver checked it in its own hardware context (per port: mlx5-like)
    b = again.to_dict()["batches"][0]
    assert again.dropped == 1 and b["reason"].startswith("mlx5_core: hardware replay drop on s0")
    assert (b["slave"], b["context"]) == ("s0", "s0 sa 2 (per port)")
    assert ("sequence 5 already received: SA 0x200 (reqid 1) packet-offloaded on bond0, arrived "
            "on s0; a replayed or reordered packet; a larger replay-window tolerates more "
            "reordering") in again.to_dict()["batches"][0]["detail"]


def test_s3_one_shared_window_drops_both_reinjections():
    lab = Lab("airoha-soe", "shared")
    pkts = lab.peer_send(10)
    assert lab.to_dut(pkts, "s0").delivered == 10
    assert lab.to_dut([pkts[4]], "s1").dropped == 1
    assert lab.to_dut([pkts[4]], "s0").dropped == 1
    assert state(lab.k, 0x200, "dut").stats[1] == 2


# -- S4 -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind, model", [("mlx5", "replicated"), ("airoha-soe", "shared")])
def test_s4_cross_slave_reordering_within_the_window_is_delivered(kind, model):
    lab = Lab(kind, model)
    pkts = lab.peer_send(100)
    order = [i ^ 1 for i in range(100)]                            # 2, 1, 4, 3, …
    late = order.index(4)                                         # seq 5 …
    order.pop(late)
    got = 0
    for n, i in enumerate(order):
        got += lab.to_dut([pkts[i]], "s0" if n % 2 else "s1").delivered
        if i == 69:                                               # … arrives after seq 70
            assert lab.to_dut([pkts[4]], "s0").dropped == 1        # older than the window
    assert got == 99


# -- S5 -----------------------------------------------------------------------------------------

def test_s5_per_slave_hardware_counters_never_expire_the_replicated_state():
    lab = Lab("mlx5", "replicated", lft=lifetime(soft_packets=8, hard_packets=10))
    from netlink_codec import netlink as N
    mon = nl(lab.k, "dut")
    lab.k.setsockopt(mon.s, N.SOL_NETLINK, N.NETLINK_ADD_MEMBERSHIP, X.XfrmNlGrp.EXPIRE)
    f1, f2 = flows_on_two_slaves(lab)
    for i in range(20):
        lab.dut_send(1, (f1, f2)[i % 2], spray=True)
    lab.k.run_timers()
    x = state(lab.k, 0x100, "dut")
    x.usersa_info()                      # a dump: update_stats does nothing for LAG replicas
    assert x is not None and x.curlft.packets == 0
    assert not [m for d in mon.recv_all() for m in messages(d) if m[0] == X.XfrmMsg.EXPIRE]
    [out] = [e for e in lab.bond.xfrmdev_ops.table(lab.bond) if e["spi"] == 0x100]
    # each port's driver counted its own half in its own hardware context (mlx5-like: per
    # port); neither reached the hard limit of 10, so neither port's drop rule fired
    hw = [out["contexts"][r["context"]]["packets"] for r in out["replicas"]]
    assert sorted(hw) == [10, 10]


# -- S6 -----------------------------------------------------------------------------------------

def test_s6_crypto_offload_numbers_and_checks_in_software():
    lab = Lab("mlx5", "replicated", offload=0)
    f1, f2 = flows_on_two_slaves(lab)
    sent = [lab.dut_send(1, sport, spray=True) for sport in (f1, f2, f1, f2)]
    ws = [w for r in sent for w in wire(r)]
    assert [s for _, s in ws] == [1, 2, 3, 4]
    assert sent[0].to_dict()["batches"][0]["sas"][0]["path"] == "crypto-offload"
    assert deliver_packets(lab.peer_ns, [p for r in sent for p, _ in r.packets]).delivered == 4
    pkts = lab.peer_send(10)
    assert lab.to_dut(pkts, "s0").delivered == 10
    assert lab.to_dut([pkts[4]], "s1").dropped == 1               # the software window
    assert state(lab.k, 0x200, "dut").stats[1] == 1


def test_packet_xmit_without_a_usable_replica_is_ehostunreach():
    from xfrmd.services import handle
    lab = Lab("mlx5", "replicated")
    for s in ("s0", "s1"):                  # carrier loss keeps the replicas, empties usable[]
        assert handle(lab.k, "dut", {"op": "link_carrier", "dev": s, "on": False})["errno"] == 0
    [b] = lab.dut_send(2).to_dict()["batches"]
    assert (b["reason"], b["errno"], b["count"]) == ("XfrmOutError", "EHOSTUNREACH", 2)
    assert "no usable slave holds a replica" in b["detail"]
    # the drop names the SA and the device, and what brings traffic back
    assert ("SA 0x100 (reqid 1) packet-offloaded on bond0; bring a slave of bond0 holding the "
            "SA back (xfrmd ctl link SLAVE carrier on or replug)") in b["detail"]
    # the same through `xfrmd ctl offload-traffic`
    assert handle(lab.k, "dut", {"op": "offload_traffic", "dev": "bond0", "spi": 0x100}) == {
        "errno": E.EOPNOTSUPP,
        "error": "xfrmd: no usable slave holds a replica: bring a slave of bond0 holding the SA "
                 "back (xfrmd ctl link SLAVE carrier on or replug), or delete and re-add the SA "
                 "(SA 0x100 reqid 1 on bond0)"}
