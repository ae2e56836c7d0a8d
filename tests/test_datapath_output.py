"""The emulated output path (xfrmd.datapath.output) on a sans-IO kernel: policy lookup,
xfrm_state_find, ESP that scapy decrypts, sequence numbers, lifetimes and EXPIRE, every drop
with its MIB counter, and the offload decisions (xfrm_dev_offload_ok and the drivers)."""
from __future__ import annotations

from scapy.layers.inet import IP, UDP
from scapy.layers.ipsec import ESP, SecurityAssociation

from netlink_codec import xfrm as X
from xfrmd.clock import ManualClock
from xfrmd.datapath.mib import xfrm_mib
from xfrmd.datapath.output import xfrm_xmit
from xfrmd.kernel import Kernel
from xfrmd.topology import load_topology
from xfrmd import vfs

from .datapath_helpers import (CBC, KEY, TRANSPORT, TUNNEL, Nl, lifetime, policy, sa, state)
from .sad_helpers import messages
# the fixtures: a sans-IO kernel with the default topology (k) and its NETLINK_XFRM socket (nl)
from .test_offload import k, nl  # noqa: F401

OUT, IN = X.XFRM_POLICY_OUT, X.XFRM_POLICY_IN
L, R = "198.51.100.1", "198.51.100.2"       # eth2's subnet in the default topology
G = X.XfrmNlGrp


def ns(k):
    return k.netns("default")


def xmit(k, count=1, size=100, src=L, dst=R, **kw):
    kw.setdefault("sport", 1000)
    kw.setdefault("dport", 2000)
    return xfrm_xmit(ns(k), src, dst, 17, size=size, count=count, keep_packets=True, **kw)


def tunnel_pair(nl, **sa_kw):
    nl.ok(sa(L, R, 0x1000, **sa_kw))
    nl.ok(policy(L, R, OUT, [(L, R, 1, sa_kw.get("mode", TUNNEL))]))


def scapy_sa(esn=False):
    return SecurityAssociation(ESP, spi=0x1000, crypt_algo="AES-GCM", crypt_key=KEY,
                               auth_algo="NULL", auth_key=None, esn_en=esn)


def test_software_esp_decrypts_with_scapy_and_numbers_from_one(k, nl):
    tunnel_pair(nl)
    res = xmit(k, count=5)
    assert (res.sent, res.dropped) == (5, 0)
    [b] = res.to_dict()["batches"]
    assert b["seq"] == {"0x00001000": [1, 5]} and b["sas"][0]["path"] == "software"
    assert b["out_dev"] == "eth2"
    for i, (pkt, real) in enumerate(res.packets, 1):
        assert real
        outer = IP(pkt)
        assert (outer.src, outer.dst, outer.proto) == (L, R, 50)
        assert outer[ESP].seq == i and outer[ESP].spi == 0x1000
        inner = scapy_sa().decrypt(outer)
        assert inner[UDP].dport == 2000 and len(inner[UDP].payload) == 100


def test_transport_mode_keeps_the_ip_header_and_counts_the_l4_segment(k, nl):
    nl.ok(sa(L, R, 0x1000, mode=TRANSPORT))
    nl.ok(policy(L, R, OUT, [(None, None, 1, TRANSPORT)]))
    res = xmit(k, count=3, size=100)
    outer = IP(res.packets[0][0])
    assert (outer.src, outer.dst) == (L, R)
    assert bytes(scapy_sa().decrypt(outer)[UDP].payload) == bytes(range(100))
    x = state(k, 0x1000)
    # xfrm4_transport_output pulled the IP header: skb->len is the UDP segment (8 + 100)
    assert (x.curlft.bytes, x.curlft.packets) == (3 * 108, 3)


def test_curlft_grows_with_the_inner_packet_in_tunnel_mode(k, nl):
    tunnel_pair(nl)
    xmit(k, count=4, size=100)
    x = state(k, 0x1000)
    assert (x.curlft.bytes, x.curlft.packets) == (4 * 128, 4)      # IP 20 + UDP 8 + 100
    assert x.curlft.use_time == x.lastused == k.clock.wall()


def test_soft_then_hard_packet_limit_send_expire_once_and_remove_the_state(k, nl):
    mon = Nl(k, groups=(G.EXPIRE,), pid=77)
    tunnel_pair(nl, lft=lifetime(soft_packets=3, hard_packets=5))
    res = xmit(k, count=4)
    assert res.sent == 4
    exp = [m for d in mon.recv_all() for m in messages(d) if m[0] == X.XfrmMsg.EXPIRE]
    assert len(exp) == 1 and exp[0][4][16 + 224] == 0                # hard = 0, once
    res = xmit(k, count=3)
    d = res.to_dict()["batches"]
    assert [b["count"] for b in d] == [1, 1, 1]
    assert d[0]["result"] == "sent" and d[0]["seq"] == {"0x00001000": [5, 5]}
    assert d[1]["reason"] == "XfrmOutStateExpired" and d[1]["errno"] == "EINVAL"
    k.run_timers()
    exp = [m for d in mon.recv_all() for m in messages(d) if m[0] == X.XfrmMsg.EXPIRE]
    assert [m[4][16 + 224] for m in exp] == [1]                      # hard = 1
    assert state(k, 0x1000) is None
    # the third packet found no state any more and no key manager: ESRCH
    assert d[2]["reason"] == "XfrmOutPolError" and d[2]["errno"] == "ESRCH"
    assert xfrm_mib(ns(k))["XfrmOutStateExpired"] == 1


def test_soft_and_hard_byte_limits(k, nl):
    mon = Nl(k, groups=(G.EXPIRE,), pid=77)
    tunnel_pair(nl, lft=lifetime(soft_bytes=300, hard_bytes=500))
    res = xmit(k, count=6, size=100)          # 128 bytes each: 128, 256, 384, 512
    b = res.to_dict()["batches"]
    assert b[0]["count"] == 4 and b[1]["reason"] == "XfrmOutStateExpired"
    k.run_timers()
    hards = [m[4][16 + 224] for d in mon.recv_all() for m in messages(d) if m[0] == X.XfrmMsg.EXPIRE]
    assert hards == [0, 1]


def test_sequence_overflow_without_esn_drops(k, nl):
    nl.ok(sa(L, R, 0x1000, esn=(0, 0xFFFFFFFE, 0, 0, 0)))
    nl.ok(policy(L, R, OUT, [(L, R, 1, TUNNEL)]))
    d = xmit(k, count=3).to_dict()["batches"]
    assert d[0]["seq"] == {"0x00001000": [0xFFFFFFFF, 0xFFFFFFFF]}
    assert d[1]["count"] == 2 and d[1]["reason"] == "XfrmOutStateSeqError"
    assert d[1]["errno"] == "EOVERFLOW"
    assert xfrm_mib(ns(k))["XfrmOutStateSeqError"] == 2
    assert state(k, 0x1000).replay_esn.oseq == 0xFFFFFFFF


def test_oseq_may_wrap_wraps(k, nl):
    nl.ok(sa(L, R, 0x1000, esn=(0, 0xFFFFFFFF, 0, 0, 0), extra_flags=X.XFRM_SA_XFLAG_OSEQ_MAY_WRAP))
    nl.ok(policy(L, R, OUT, [(L, R, 1, TUNNEL)]))
    d = xmit(k, count=1).to_dict()["batches"]
    assert d[0]["result"] == "sent" and d[0]["seq"] == {"0x00001000": [0, 0]}


def test_esn_carries_into_the_high_word_and_scapy_decrypts(k, nl):
    nl.ok(sa(L, R, 0x1000, flags=X.XFRM_STATE_ESN, esn=(32, 0xFFFFFFFF, 0, 0, 0)))
    nl.ok(policy(L, R, OUT, [(L, R, 1, TUNNEL)]))
    res = xmit(k, count=2)
    assert res.to_dict()["batches"][0]["seq"] == {"0x00001000": [1 << 32, (1 << 32) + 1]}
    x = state(k, 0x1000)
    assert (x.replay_esn.oseq_hi, x.replay_esn.oseq) == (1, 1)
    outer = IP(res.packets[0][0])
    assert outer[ESP].seq == 0
    # the high word is not on the wire but in the ICV's AAD: scapy decrypts with esn=1
    inner = scapy_sa(esn=True).decrypt(outer, esn_en=True, esn=1)
    assert inner[UDP].dport == 2000


def test_policy_block_is_eperm(k, nl):
    nl.ok(policy(L, R, OUT, [], action=X.XFRM_POLICY_BLOCK))
    [b] = xmit(k, count=2).to_dict()["batches"]
    assert (b["reason"], b["errno"], b["count"]) == ("XfrmOutPolBlock", "EPERM", 2)
    assert xfrm_mib(ns(k))["XfrmOutPolBlock"] == 2


def test_no_policy_sends_in_clear(k, nl):
    res = xmit(k, count=2)
    [b] = res.to_dict()["batches"]
    assert b["path"] == "clear" and b["dev"] == "eth2" and res.sent == 2
    assert IP(res.packets[0][0])[UDP].dport == 2000


def test_no_state_sends_one_acquire_and_blackholes(k, nl):
    acq = Nl(k, groups=(G.ACQUIRE,), pid=78)
    nl.ok(policy(L, R, OUT, [(L, R, 7, TUNNEL)]))
    d = xmit(k, count=3).to_dict()["batches"]
    assert d[0]["acquire"] == [7] and d[0]["reason"] == "XfrmOutNoStates"
    assert d[0]["errno"] == "none"                   # blackholed: the sender sees no error
    assert d[1]["count"] == 2 and "acquire" not in d[1]
    acquires = [m for x in acq.recv_all() for m in messages(x) if m[0] == X.XfrmMsg.ACQUIRE]
    assert len(acquires) == 1
    assert xfrm_mib(ns(k))["XfrmOutNoStates"] == 3


def test_no_key_manager_is_esrch(k, nl):
    nl.ok(policy(L, R, OUT, [(L, R, 7, TUNNEL)]))
    [b] = xmit(k).to_dict()["batches"]
    assert (b["reason"], b["errno"]) == ("XfrmOutPolError", "ESRCH")


def test_in_sa_is_not_used_for_output(k, nl):
    nl.ok(sa(L, R, 0x1000, dir=X.XFRM_SA_DIR_IN, replay_window=32))
    nl.ok(policy(L, R, OUT, [(L, R, 1, TUNNEL)]))
    [b] = xmit(k).to_dict()["batches"]
    assert b["reason"] == "XfrmOutStateDirError"


def test_cbc_states_are_numbered_and_counted_without_ciphertext(k, nl):
    nl.ok(sa(L, R, 0x1000, alg=CBC))
    nl.ok(policy(L, R, OUT, [(L, R, 1, TUNNEL)]))
    res = xmit(k, count=2)
    [b] = res.to_dict()["batches"]
    assert b["seq"] == {"0x00001000": [1, 2]} and "not modelled" in b["sas"][0]["crypto"]
    assert res.packets[0][1] is False
    assert state(k, 0x1000).curlft.packets == 2


def test_no_route_is_enetunreach():
    k = Kernel(ManualClock(), topology=load_topology("bare"))
    [b] = xfrm_xmit(k.netns("default"), L, R, 17, count=1).to_dict()["batches"]
    assert (b["reason"], b["errno"]) == ("no route", "ENETUNREACH")


def test_proc_net_xfrm_stat(k, nl):
    nl.ok(policy(L, R, OUT, [], action=X.XFRM_POLICY_BLOCK))
    xmit(k, count=3)
    err, text = vfs.read_file(k, ns(k), "/proc/net/xfrm_stat")
    assert err == 0
    lines = text.splitlines()
    assert len(lines) == 32 and lines[0] == "XfrmInError             \t0"
    assert "XfrmOutPolBlock         \t3" in lines


def test_aevent_on_output_sequence(k, nl):
    mon = Nl(k, groups=(G.AEVENTS,), pid=79)
    nl.ok(sa(L, R, 0x1000, extra=b""))
    x = state(k, 0x1000)
    x.replay_maxdiff = 2
    nl.ok(policy(L, R, OUT, [(L, R, 1, TUNNEL)]))
    xmit(k, count=4)
    ae = [m for d in mon.recv_all() for m in messages(d) if m[0] == X.XfrmMsg.NEWAE]
    assert len(ae) == 2                       # at oseq 2 and 4 (replay_maxdiff 2)


# -- offload ------------------------------------------------------------------------------------

NL, NR = "203.0.113.1", "203.0.113.2"          # nsim0's subnet
IN_ = X.XFRM_OFFLOAD_INBOUND
PKT = X.XFRM_OFFLOAD_PACKET


def dev(k, name):
    return ns(k).links.by_name(name)


def nsim_debugfs_first_line(k):
    return dev(k, "nsim0").xfrmdev_ops.debugfs().splitlines()[0]


def test_crypto_offload_on_netdevsim_counts_tx_and_still_decrypts(k, nl):
    nl.ok(sa(NL, NR, 0x1000, offload=(dev(k, "nsim0").ifindex, 0)))
    nl.ok(policy(NL, NR, OUT, [(NL, NR, 1, TUNNEL)]))
    res = xmit(k, count=3, src=NL, dst=NR)
    [b] = res.to_dict()["batches"]
    assert b["sas"][0]["path"] == "crypto-offload" and b["sas"][0]["dev"] == "nsim0"
    assert b["seq"] == {"0x00001000": [1, 3]}
    assert nsim_debugfs_first_line(k) == "SA count=1 tx=3"
    assert scapy_sa().decrypt(IP(res.packets[2][0]))[UDP].dport == 2000
    assert state(k, 0x1000).curlft.packets == 3      # crypto offload: the core still counts


def test_route_out_of_another_device_takes_the_software_path(k, nl):
    # offloaded to nsim0, but 198.51.100.2 is reached through eth2
    nl.ok(sa(L, R, 0x1000, offload=(dev(k, "nsim0").ifindex, 0)))
    nl.ok(policy(L, R, OUT, [(L, R, 1, TUNNEL)]))
    [b] = xmit(k, count=2).to_dict()["batches"]
    hop = b["sas"][0]
    assert hop["path"] == "software" and hop["fallback"] == "route leaves through eth2, not nsim0"
    assert nsim_debugfs_first_line(k) == "SA count=1 tx=0"


def test_packet_larger_than_the_state_mtu_takes_the_software_path(k, nl):
    nl.ok(sa(NL, NR, 0x1000, offload=(dev(k, "nsim0").ifindex, 0)))
    nl.ok(policy(NL, NR, OUT, [(NL, NR, 1, TUNNEL)]))
    # esp4_get_mtu(1500), tunnel, GCM: ((1500 - 36 - 16) & ~3) - 2 = 1446
    [ok] = xmit(k, count=1, src=NL, dst=NR, size=1446 - 28).to_dict()["batches"]
    [big] = xmit(k, count=1, src=NL, dst=NR, size=1447 - 28).to_dict()["batches"]
    assert ok["sas"][0]["path"] == "crypto-offload"
    assert big["sas"][0]["fallback"] == "1447 bytes exceed the state's MTU 1446"
    assert nsim_debugfs_first_line(k) == "SA count=1 tx=1"


def test_mlx5_crypto_esn_advance_reprograms_when_the_window_crosses(k, nl):
    nl.ok(sa(L, R, 0x1000, flags=X.XFRM_STATE_ESN, esn=(32, 0x7FFFFFD0, 0, 0, 0),
             offload=(dev(k, "eth2").ifindex, 0)))
    nl.ok(policy(L, R, OUT, [(L, R, 1, TUNNEL)]))
    ops = dev(k, "eth2").xfrmdev_ops
    x = state(k, 0x1000)
    hw = ops.sadb[x.xso.offload_handle]
    assert (hw["overlap"], hw["esn_updates"]) == (0, 0)
    [b] = xmit(k, count=0x4E).to_dict()["batches"]            # oseq 0x7fffffd1 … 0x8000001e
    assert b["sas"][0]["path"] == "crypto-offload"
    assert hw["esn"] == x.replay_esn.oseq == 0x8000001E     # called on every packet
    assert (hw["overlap"], hw["esn_updates"]) == (0, 0)     # bottom 0x7fffffff < MID
    xmit(k, count=1)                                         # bottom reaches 0x80000000
    assert (hw["overlap"], hw["esn_updates"]) == (1, 1)
    x.replay_esn.oseq = 0xFFFFFFF0                           # (2^31 packets later)
    xmit(k, count=0x30)                                      # wraps into high word 1
    assert (x.replay_esn.oseq_hi, x.replay_esn.oseq) == (1, 0x20)
    assert (hw["overlap"], hw["esn_updates"]) == (0, 2)


def test_mlx5_packet_offload_numbers_in_hardware_and_its_counters_expire_the_state(k, nl):
    mon = Nl(k, groups=(G.EXPIRE,), pid=77)
    ifx = dev(k, "eth2").ifindex
    nl.ok(sa(L, R, 0x1000, offload=(ifx, PKT), lft=lifetime(soft_packets=3, hard_packets=5)))
    nl.ok(policy(L, R, OUT, [(L, R, 1, TUNNEL)], offload=(ifx, PKT)))
    res = xmit(k, count=5)
    [b] = res.to_dict()["batches"]
    hop = b["sas"][0]
    assert (hop["path"], hop["numbered_by"], b["seq"]) == ("packet-offload", "hardware",
                                                          {"0x00001000": [1, 5]})
    x = state(k, 0x1000)
    assert x.replay[0] == 0                                  # the software oseq never moved
    assert IP(res.packets[4][0])[ESP].seq == 5
    k.run_timers()
    hards = [m[4][16 + 224] for d in mon.recv_all() for m in messages(d)
             if m[0] == X.XfrmMsg.EXPIRE]
    assert hards == [0, 1] and state(k, 0x1000) is None


def test_soe_packet_offload_is_numbered_by_the_core(k, nl):
    ifx = dev(k, "soe2").ifindex
    s, d = "203.0.113.129", "203.0.113.130"
    nl.ok(sa(s, d, 0x1000, offload=(ifx, PKT)))
    nl.ok(policy(s, d, OUT, [(s, d, 1, TUNNEL)], offload=(ifx, PKT)))
    res = xfrm_xmit(ns(k), s, d, 17, 1, 2, 10, count=3, keep_packets=True)
    [b] = res.to_dict()["batches"]
    assert (b["sas"][0]["path"], b["sas"][0]["numbered_by"]) == ("packet-offload", "core")
    assert state(k, 0x1000).replay[0] == 3 and state(k, 0x1000).curlft.packets == 3
    assert IP(res.packets[2][0])[ESP].seq == 3


def test_packet_offload_refused_by_offload_ok_is_ehostunreach(k, nl):
    # packet-offloaded to soe2, but the destination routes through eth2
    ifx = dev(k, "soe2").ifindex
    nl.ok(sa(L, R, 0x1000, offload=(ifx, PKT)))
    nl.ok(policy(L, R, OUT, [(L, R, 1, TUNNEL)], offload=(ifx, PKT)))
    [b] = xmit(k).to_dict()["batches"]
    assert (b["reason"], b["errno"]) == ("XfrmOutError", "EHOSTUNREACH")


AB_MIXED = {"netns": [{"name": "default", "device": [
    {"name": "nsimA", "kind": "netdevsim", "nic": "netdevsim0", "master": "bond0"},
    {"name": "mlxB", "kind": "mlx5", "nic": "mlx5-0", "master": "bond0",
     "capabilities": {"crypto": False}},
    {"name": "bond0", "kind": "bond", "mode": "active-backup", "addresses": ["192.0.2.1/24"]},
]}]}


def test_active_backup_failover_is_software_until_the_state_is_re_added():
    from xfrmd.services import handle
    from xfrmd.topology import from_dict
    k = Kernel(ManualClock(), topology=from_dict(AB_MIXED))
    nl = Nl(k)
    bond = ns(k).links.by_name("bond0")
    nl.ok(sa("192.0.2.1", "192.0.2.2", 0x1000, offload=(bond.ifindex, 0)))
    nl.ok(policy("192.0.2.1", "192.0.2.2", OUT, [("192.0.2.1", "192.0.2.2", 1, TUNNEL)]))

    def send():
        [b] = xfrm_xmit(ns(k), "192.0.2.1", "192.0.2.2", 17, count=2).to_dict()["batches"]
        return b["sas"][0]

    def carrier(name, on):
        assert handle(k, "default", {"op": "link_carrier", "dev": name, "on": on})["errno"] == 0
    hop = send()
    assert (hop["path"], hop["slave"]) == ("crypto-offload", "nsimA")
    carrier("nsimA", False)                     # mlxB (no crypto offload) becomes active
    hop = send()
    assert hop["path"] == "software" and "bonding: xdo_dev_offload_ok refused" in hop["fallback"]
    carrier("nsimA", True)
    carrier("mlxB", False)                      # back to nsimA: add_sa_all re-adds the state
    hop = send()
    assert (hop["path"], hop["slave"]) == ("crypto-offload", "nsimA")
    assert dev(k, "nsimA").xfrmdev_ops.debugfs().splitlines()[0] == "SA count=1 tx=4"
