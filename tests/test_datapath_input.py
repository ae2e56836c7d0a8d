"""The emulated input path (xfrmd.datapath.input): ESP from one emulated namespace delivered
into another — SA lookup, replay window (legacy, bitmap, ESN), AES-GCM decryption with the
receiving SAD's key, curlft, and the inbound policy check — each drop under its MIB name."""
from __future__ import annotations

import struct

import pytest

from netlink_codec import xfrm as X
from xfrmd.clock import ManualClock
from xfrmd.datapath.input import deliver_packets
from xfrmd.datapath.mib import xfrm_mib
from xfrmd.datapath.output import xfrm_xmit
from xfrmd.kernel import Kernel
from xfrmd.topology import from_dict

from .datapath_helpers import TRANSPORT, TUNNEL, Nl, policy, sa, state

OUT, IN = X.XFRM_POLICY_OUT, X.XFRM_POLICY_IN
L, R = "192.0.2.1", "192.0.2.2"
PAIR = {"netns": [
    {"name": "left", "device": [{"name": "eth0", "kind": "dummy", "addresses": [f"{L}/24"]}]},
    {"name": "right", "device": [{"name": "eth0", "kind": "dummy", "addresses": [f"{R}/24"]}]},
]}


@pytest.fixture
def k():
    return Kernel(ManualClock(), topology=from_dict(PAIR))


def nl(k, ns):
    s = Nl.__new__(Nl)
    from netlink_codec import netlink as N
    s.k = k
    s.s = k.socket(N.NETLINK_XFRM, ns)
    k.bind(s.s)
    k.setsockopt(s.s, N.SOL_NETLINK, N.NETLINK_EXT_ACK, 1)
    return s


def ike_pair(k, mode=TUNNEL, **sa_kw):
    """What an IKE pair installs: the same SA (keys, SPI) on both sides, policies out on the
    left and in on the right."""
    left, right = nl(k, "left"), nl(k, "right")
    rw = sa_kw.pop("replay_window", 32)
    left.ok(sa(L, R, 0x1000, mode=mode, **sa_kw))
    right.ok(sa(L, R, 0x1000, mode=mode, replay_window=rw, **sa_kw))
    tmpl = [(L, R, 1, mode)] if mode == TUNNEL else [(None, None, 1, mode)]
    left.ok(policy(L, R, OUT, tmpl))
    right.ok(policy(L, R, IN, tmpl))
    return left, right


def send(k, count=1, **kw):
    kw.setdefault("sport", 1000)
    kw.setdefault("dport", 2000)
    return xfrm_xmit(k.netns("left"), L, R, 17, size=kw.pop("size", 100), count=count,
                     keep_packets=True, **kw)


def deliver(k, res_or_pkts):
    pkts = [p for p, _ in res_or_pkts.packets] if hasattr(res_or_pkts, "packets") else res_or_pkts
    return deliver_packets(k.netns("right"), pkts)


@pytest.mark.parametrize("mode", [TUNNEL, TRANSPORT])
def test_left_to_right_decrypts(k, mode):
    ike_pair(k, mode)
    res = deliver(k, send(k, 5))
    assert (res.delivered, res.dropped) == (5, 0)
    [b] = res.to_dict()["batches"]
    assert b["seq"] == [1, 5] and b["path"] == "software" and b["policy"] == {"index": 8, "dir": "in"}
    inner = res.inner[0]
    assert inner[9] == 17 and inner[-100:] == bytes(range(100))
    x = state(k, 0x1000, "right")
    assert x.curlft.packets == 5 and x.replay[1] == 5 and x.replay[2] == 0b11111


def test_replay_is_dropped_and_counted(k):
    ike_pair(k)
    pkts = [p for p, _ in send(k, 3).packets]
    res = deliver(k, pkts + [pkts[1]])
    d = res.to_dict()["batches"]
    assert res.delivered == 3 and d[-1]["reason"] == "XfrmInStateSeqError"
    x = state(k, 0x1000, "right")
    assert x.stats[1] == 1                               # stats.replay
    assert xfrm_mib(k.netns("right"))["XfrmInStateSeqError"] == 1


def test_left_of_the_window_counts_replay_window(k):
    ike_pair(k, replay_window=4)
    pkts = [p for p, _ in send(k, 10).packets]
    res = deliver(k, pkts[9:] + pkts[:1])                # seq 10, then 1: 9 behind a window of 4
    assert res.delivered == 1 and res.to_dict()["batches"][1]["reason"] == "XfrmInStateSeqError"
    assert state(k, 0x1000, "right").stats[0] == 1      # stats.replay_window


def test_reordering_within_the_window_is_delivered(k):
    ike_pair(k)
    pkts = [p for p, _ in send(k, 6).packets]
    order = [1, 0, 3, 2, 5, 4]
    res = deliver(k, [pkts[i] for i in order])
    assert res.delivered == 6


def test_integrity_failure_is_counted(k):
    ike_pair(k)
    pkt = bytearray(send(k, 1).packets[0][0])
    pkt[-1] ^= 1
    res = deliver(k, [bytes(pkt)])
    [b] = res.to_dict()["batches"]
    assert b["reason"] == "XfrmInStateProtoError"
    x = state(k, 0x1000, "right")
    assert x.stats[2] == 1 and x.replay[1] == 0         # the window did not move


def test_wrong_key_fails_integrity(k):
    left, right = nl(k, "left"), nl(k, "right")
    from .datapath_helpers import algo2, A
    from netlink_codec import netlink as N
    left.ok(sa(L, R, 0x1000))
    right.ok(sa(L, R, 0x1000, replay_window=32,
                alg=N.nla(A.ALG_AEAD, algo2("rfc4106(gcm(aes))", bytes(20), 128))))
    left.ok(policy(L, R, OUT, [(L, R, 1, TUNNEL)]))
    assert deliver(k, send(k, 1)).to_dict()["batches"][0]["reason"] == "XfrmInStateProtoError"


def test_no_state_on_the_right(k):
    left = nl(k, "left")
    left.ok(sa(L, R, 0x1000))
    left.ok(policy(L, R, OUT, [(L, R, 1, TUNNEL)]))
    [b] = deliver(k, send(k, 2)).to_dict()["batches"]
    assert (b["reason"], b["count"]) == ("XfrmInNoStates", 2)


def test_template_mismatch(k):
    left, right = nl(k, "left"), nl(k, "right")
    left.ok(sa(L, R, 0x1000))
    right.ok(sa(L, R, 0x1000, replay_window=32))
    left.ok(policy(L, R, OUT, [(L, R, 1, TUNNEL)]))
    right.ok(policy(L, R, IN, [(L, R, 2, TUNNEL)]))     # wants reqid 2
    [b] = deliver(k, send(k, 1)).to_dict()["batches"]
    assert b["reason"] == "XfrmInTmplMismatch"
    assert xfrm_mib(k.netns("right"))["XfrmInTmplMismatch"] == 1


def test_clear_packet_against_an_ipsec_in_policy(k):
    right = nl(k, "right")
    right.ok(policy(L, R, IN, [(L, R, 1, TUNNEL)]))
    [b] = deliver(k, send(k, 1)).to_dict()["batches"]    # left has no policy: sent in clear
    assert b["reason"] == "XfrmInTmplMismatch"


def test_tunnel_sa_without_in_policy_is_nopols(k):
    left, right = nl(k, "left"), nl(k, "right")
    left.ok(sa(L, R, 0x1000))
    right.ok(sa(L, R, 0x1000, replay_window=32))
    left.ok(policy(L, R, OUT, [(L, R, 1, TUNNEL)]))
    [b] = deliver(k, send(k, 1)).to_dict()["batches"]
    assert b["reason"] == "XfrmInNoPols"


def test_esn_receiver_infers_the_high_word(k):
    left, right = nl(k, "left"), nl(k, "right")
    left.ok(sa(L, R, 0x1000, flags=X.XFRM_STATE_ESN, esn=(32, 0xFFFFFFFD, 0, 0, 0)))
    right.ok(sa(L, R, 0x1000, flags=X.XFRM_STATE_ESN, esn=(32, 0, 0xFFFFFFFD, 0, 0)))
    left.ok(policy(L, R, OUT, [(L, R, 1, TUNNEL)]))
    right.ok(policy(L, R, IN, [(L, R, 1, TUNNEL)]))
    res = deliver(k, send(k, 5))                          # 0xfffffffe … 0x1_00000002
    assert res.delivered == 5
    r = state(k, 0x1000, "right").replay_esn
    assert (r.seq_hi, r.seq) == (1, 2)
    b = res.to_dict()["batches"][0]
    assert b["seq"] == [0xFFFFFFFE, (1 << 32) + 2]


def test_bitmap_window_of_128(k):
    left, right = nl(k, "left"), nl(k, "right")
    left.ok(sa(L, R, 0x1000))
    right.ok(sa(L, R, 0x1000, esn=(128, 0, 0, 0, 0)))
    left.ok(policy(L, R, OUT, [(L, R, 1, TUNNEL)]))
    right.ok(policy(L, R, IN, [(L, R, 1, TUNNEL)]))
    pkts = [p for p, _ in send(k, 130).packets]
    res = deliver(k, pkts[129:] + pkts[5:6] + pkts[1:2] + pkts[5:6])
    d = res.to_dict()["batches"]
    # 130 then 6 (124 behind: inside 128) delivered, 2 (128 behind) too old, 6 again a replay
    assert [(b["result"], b["count"]) for b in d] == [("delivered", 2), ("dropped", 1), ("dropped", 1)]
    assert "left of the window" in d[1]["detail"] and "already received" in d[2]["detail"]
    x = state(k, 0x1000, "right")
    assert (x.stats[0], x.stats[1]) == (1, 1)


MLX_PAIR = {"netns": [
    PAIR["netns"][0],
    {"name": "right", "device": [{"name": "eth0", "kind": "mlx5", "nic": "mlx5-0",
                                   "addresses": [f"{R}/24"]}]},
]}


def test_crypto_offload_in_the_device_decrypts_counts_and_advances_esn():
    k = Kernel(ManualClock(), topology=from_dict(MLX_PAIR))
    left, right = nl(k, "left"), nl(k, "right")
    eth0 = k.netns("right").links.by_name("eth0")
    left.ok(sa(L, R, 0x1000, flags=X.XFRM_STATE_ESN, esn=(32, 0x7FFFFFD0, 0, 0, 0)))
    right.ok(sa(L, R, 0x1000, flags=X.XFRM_STATE_ESN, esn=(32, 0, 0x7FFFFFD0, 0, 0),
                offload=(eth0.ifindex, X.XFRM_OFFLOAD_INBOUND)))
    left.ok(policy(L, R, OUT, [(L, R, 1, TUNNEL)]))
    right.ok(policy(L, R, IN, [(L, R, 1, TUNNEL)]))
    x = state(k, 0x1000, "right")
    hw = eth0.xfrmdev_ops.sadb[x.xso.offload_handle]
    res = deliver(k, send(k, 0x4E))                        # right edge 0x8000001e
    [b] = res.to_dict()["batches"]
    assert (b["path"], b["dev"], res.delivered) == ("crypto-offload", "eth0", 0x4E)
    assert hw["packets"] == 0x4E                           # the device counted them
    assert (hw["esn"], hw["overlap"], hw["esn_updates"]) == (0x8000001E, 0, 0)
    deliver(k, send(k, 1))                                 # the window's bottom reaches the middle
    assert (hw["overlap"], hw["esn_updates"]) == (1, 1)
    assert x.curlft.packets == 0x4F and x.replay_esn.seq == 0x8000001F


PAIR6 = {"netns": [
    {"name": "left", "device": [{"name": "eth0", "kind": "dummy", "addresses": ["2001:db8::1/64"]}]},
    {"name": "right", "device": [{"name": "eth0", "kind": "dummy", "addresses": ["2001:db8::2/64"]}]},
]}


@pytest.mark.parametrize("mode", [TUNNEL, TRANSPORT])
def test_ipv6_left_to_right(mode):
    k = Kernel(ManualClock(), topology=from_dict(PAIR6))
    l6, r6 = "2001:db8::1", "2001:db8::2"
    left, right = nl(k, "left"), nl(k, "right")
    left.ok(sa(l6, r6, 0x1000, mode=mode))
    right.ok(sa(l6, r6, 0x1000, mode=mode, replay_window=32))
    tmpl = [(l6, r6, 1, mode)] if mode == TUNNEL else [(None, None, 1, mode)]
    left.ok(policy(l6, r6, OUT, tmpl))
    right.ok(policy(l6, r6, IN, tmpl))
    out = xfrm_xmit(k.netns("left"), l6, r6, 17, 1000, 2000, 50, 3, keep_packets=True)
    assert out.sent == 3 and out.packets[0][0][6] == 50          # IPv6 next header ESP
    res = deliver_packets(k.netns("right"), [p for p, _ in out.packets])
    assert res.delivered == 3
    x = state(k, 0x1000, "right")
    assert x.curlft.bytes == 3 * (8 + 50 + (40 if mode == TUNNEL else 0))


def test_nat_t_esp_in_udp_both_ways(k):
    from netlink_codec import netlink as N
    from .datapath_helpers import A
    encap = N.nla(A.ENCAP, struct.pack("=H2s2s2x16s", 2, (4500).to_bytes(2, "big"),
                                       (4500).to_bytes(2, "big"), bytes(16)))
    left, right = nl(k, "left"), nl(k, "right")
    left.ok(sa(L, R, 0x1000, extra=encap))
    right.ok(sa(L, R, 0x1000, replay_window=32, extra=encap))
    left.ok(policy(L, R, OUT, [(L, R, 1, TUNNEL)]))
    right.ok(policy(L, R, IN, [(L, R, 1, TUNNEL)]))
    out = send(k, 2)
    pkt = out.packets[0][0]
    assert pkt[9] == 17 and struct.unpack_from("!HH", pkt, 20) == (4500, 4500)
    assert deliver(k, out).delivered == 2
    # the same ESP without the UDP header does not match the NAT-T state
    bare = [p[:9] + b"\x32" + p[10:20] + p[28:] for p, _ in out.packets]
    assert deliver(k, bare).to_dict()["batches"][0]["reason"] == "XfrmInStateMismatch"
