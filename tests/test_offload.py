"""XFRMA_OFFLOAD_DEV on the default topology's devices: the core path (kernel order, crypto
fallback, readback) and every acceptance rule and refusal of the netdevsim, mlx5-like and
airoha-soe drivers, with their own messages; capacity limits with nothing half-installed."""
from __future__ import annotations

import errno as E
import struct

import pytest

from netlink_codec import netlink as N
from netlink_codec import xfrm as X
from xfrmd.clock import ManualClock
from xfrmd.kernel import Kernel
from xfrmd.topology import load_topology

from .sad_helpers import A, M, Nl, algo, algo2, attrs_of, messages, msg, selector, usersa_info

GCM = N.nla(A.ALG_AEAD, algo2("rfc4106(gcm(aes))", bytes(range(20)), 128))
GCM256 = N.nla(A.ALG_AEAD, algo2("rfc4106(gcm(aes))", bytes(36), 128))
GCM96 = N.nla(A.ALG_AEAD, algo2("rfc4106(gcm(aes))", bytes(20), 96))
CBC_SHA256 = (N.nla(A.ALG_CRYPT, algo("cbc(aes)", bytes(16)))
              + N.nla(A.ALG_AUTH_TRUNC, algo2("hmac(sha256)", bytes(32), 128)))
CBC_SHA1 = (N.nla(A.ALG_CRYPT, algo("cbc(aes)", bytes(16)))
            + N.nla(A.ALG_AUTH_TRUNC, algo2("hmac(sha1)", bytes(20), 96)))
IN, PACKET = X.XFRM_OFFLOAD_INBOUND, X.XFRM_OFFLOAD_PACKET
INF = X.XFRM_INF


@pytest.fixture
def k():
    return Kernel(ManualClock(), topology=load_topology("default"))


@pytest.fixture
def nl(k):
    return Nl(k)


def ifindex(k, name):
    return k.netns("default").links.by_name(name).ifindex


def off(k, dev, flags=0):
    return N.nla(A.OFFLOAD_DEV, struct.pack("=iB3x", ifindex(k, dev) if isinstance(dev, str) else dev, flags))


def sa(k, dev, oflags=0, *attrs, spi=0x100, src="198.51.100.1", dst="198.51.100.2", **kw):
    """A NEWSA offloaded to ``dev`` with XFRM_OFFLOAD_* ``oflags`` (first attr: algorithms)."""
    kw.setdefault("replay_window", 0 if not oflags & IN else 32)
    kw.setdefault("reqid", 1)
    return msg(M.NEWSA, usersa_info(src=src, dst=dst, spi=spi, **kw) + (attrs or (GCM,))[0]
               + b"".join(attrs[1:]) + off(k, dev, oflags))


def sad(nl):
    nl.k.deliver(nl.s, msg(M.GETSA, b"", N.NLM_F_REQUEST | N.NLM_F_DUMP))
    out = []
    for d in nl.recv_all():
        out += [m for m in messages(d) if m[0] == M.NEWSA]
    return out


def offload_attr(m):
    raw = m[4] if len(m) > 4 else m[-1]
    a = attrs_of(raw, 224)
    return struct.unpack("=iB", a[A.OFFLOAD_DEV][:5]) if A.OFFLOAD_DEV in a else None


# -- the core path ------------------------------------------------------------------------

def test_crypto_offload_reads_back(k, nl):
    assert nl.errno_of(sa(k, "nsim0", 0)) == (0, None)
    assert nl.errno_of(sa(k, "nsim0", IN, spi=0x101, src="198.51.100.2", dst="198.51.100.1")) == (0, None)
    got = sorted(offload_attr(m) for m in sad(nl))
    assert got == [(ifindex(k, "nsim0"), 0), (ifindex(k, "nsim0"), IN)]


@pytest.mark.parametrize("dev", ["dummy0", "lo"])
def test_no_offload_device_crypto_falls_back_packet_fails(k, nl, dev):
    assert nl.errno_of(sa(k, dev, 0)) == (0, None)
    assert offload_attr(sad(nl)[0]) is None              # software: nothing reads back
    assert nl.errno_of(sa(k, dev, PACKET, spi=0x200)) == (-E.EINVAL, None)
    assert len(sad(nl)) == 1


def test_unknown_ifindex_uses_the_route_device(k, nl):
    # 203.0.113.2 is on nsim0's subnet: the route lookup picks nsim0 and offloads there
    assert nl.errno_of(sa(k, 9999, 0, src="203.0.113.1", dst="203.0.113.2")) == (0, None)
    assert offload_attr(sad(nl)[0]) == (ifindex(k, "nsim0"), 0)


@pytest.mark.parametrize("flags, extra, message", [
    (0x10, {}, "Unrecognized flags in offload request"),
    (IN, {"dir": X.XFRM_SA_DIR_OUT}, "Mismatched SA and offload direction"),
    (0, {"dir": X.XFRM_SA_DIR_IN}, "Mismatched SA and offload direction"),
    (IN, {"if_id": 5}, "XFRM if_id is not supported in RX path"),
    (0, {"tfcpad": 16}, "TFC padding can't be offloaded"),
])
def test_core_refusals(k, nl, flags, extra, message):
    attrs = []
    if "dir" in extra:
        attrs.append(N.nla_u8(A.SA_DIR, extra["dir"]))
    if "if_id" in extra:
        attrs.append(N.nla_u32(A.IF_ID, extra["if_id"]))
    if "tfcpad" in extra:
        attrs.append(N.nla_u32(A.TFCPAD, extra["tfcpad"]))
    d = extra.get("dir")
    rw = 32 if d == X.XFRM_SA_DIR_IN or (d is None and flags & IN) else 0
    assert nl.errno_of(sa(k, "nsim0", flags, GCM, *attrs, replay_window=rw)) == (-E.EINVAL, message)
    assert sad(nl) == []


# -- netdevsim ------------------------------------------------------------------------------

@pytest.mark.parametrize("flags, attrs, kw, err", [
    (PACKET, (GCM,), {}, (-E.EINVAL, "netdevsim: Unsupported ipsec offload type")),
    (0, (CBC_SHA256,), {}, (-E.EINVAL, "netdevsim: Failed to get key data for SA table")),
    (0, (GCM96,), {}, (-E.EINVAL, "netdevsim: Failed to get key data for SA table")),
    (0, (N.nla(A.ALG_AUTH, algo("hmac(sha1)", bytes(20))),), {"proto": X.IPPROTO_AH},
     (-E.EINVAL, "Type doesn't support offload")),
    (0, (GCM, N.nla(A.REPLAY_ESN_VAL, struct.pack("=6I", 1, 0, 0, 0, 0, 32) + bytes(4))),
     {"flags": X.XFRM_STATE_ESN}, (-E.EINVAL, "Device doesn't support offload with ESN")),
])
def test_netdevsim_refusals(k, nl, flags, attrs, kw, err):
    assert nl.errno_of(sa(k, "nsim0", flags, *attrs, **kw)) == err
    assert sad(nl) == []
    dev = k.netns("default").links.by_name("nsim0")
    assert dev.xfrmdev_ops.count == 0


def test_netdevsim_33_sas_then_enospc_and_nothing_half_installed(k, nl):
    for i in range(33):
        assert nl.errno_of(sa(k, "nsim0", 0, spi=0x1000 + i)) == (0, None)
    assert nl.errno_of(sa(k, "nsim0", 0, spi=0x2000)) == (-E.ENOSPC, "netdevsim: No space for SA in Rx table!")
    assert len(sad(nl)) == 33
    # a delete frees the slot
    nl.k.deliver(nl.s, msg(M.DELSA, struct.pack("=16s4sHBx", bytes([198, 51, 100, 2]) + bytes(12),
                                                 struct.pack(">I", 0x1000), 2, 50)))
    nl.recv_all()
    assert nl.errno_of(sa(k, "nsim0", 0, spi=0x2000)) == (0, None)


def test_netdevsim_debugfs_text(k, nl):
    key = b"1234567890123456dcba"
    a = N.nla(A.ALG_AEAD, algo2("rfc4106(gcm(aes))", key, 128))
    assert nl.errno_of(sa(k, "nsim0", 0, a, spi=9, src="203.0.113.1", dst="203.0.113.2")) == (0, None)
    assert nl.errno_of(sa(k, "nsim0", IN, a, spi=9, src="203.0.113.2", dst="203.0.113.1")) == (0, None)
    from xfrmd import vfs
    import devices.services  # noqa: F401  (registers the files)
    err, text = vfs.read_file(k, k.netns("default"),
                              "/sys/kernel/debug/netdevsim/netdevsim0/ports/0/ipsec")
    assert err == 0
    assert text == ("SA count=2 tx=0\n"
                    "sa[0] tx ipaddr=203.0.113.2\n"
                    "sa[0]    spi=0x00000009 proto=0x32 salt=0x61626364 crypt=1\n"
                    "sa[0]    key=0x34333231 38373635 32313039 36353433\n"
                    "sa[1] rx ipaddr=203.0.113.1\n"
                    "sa[1]    spi=0x00000009 proto=0x32 salt=0x61626364 crypt=1\n"
                    "sa[1]    key=0x34333231 38373635 32313039 36353433\n")


# -- mlx5-like --------------------------------------------------------------------------------

LFT_BAD_BYTES = (100, 50, INF, INF, 0, 0, 0, 0)
LFT_ZERO_PKT = (INF, INF, 0, INF, 0, 0, 0, 0)


@pytest.mark.parametrize("flags, attrs, kw, message", [
    (0, (CBC_SHA256,), {}, "Cannot offload authenticated xfrm states"),
    (0, (N.nla(A.ALG_CRYPT, algo("cbc(aes)", bytes(16))),), {}, "Only AES-GCM-ICV16 xfrm state may be offloaded"),
    # ealgo is SADB_X_EALG_AES_GCM_ICV12 for a 96-bit ICV: the ICV length check is never reached
    (0, (GCM96,), {}, "Only AES-GCM-ICV16 xfrm state may be offloaded"),
    (0, (N.nla(A.ALG_AEAD, algo2("rfc4309(ccm(aes))", bytes(19), 128)),), {},
     "Only AES-GCM-ICV16 xfrm state may be offloaded"),
    (0, (N.nla(A.ALG_AEAD, algo2("rfc4106(gcm(aes))", bytes(28), 128)),), {},
     "Cannot offload xfrm states with AEAD key length other than 128/256 bit"),
    (PACKET, (GCM,), {"reqid": 0}, "Cannot offload without reqid"),
    (PACKET, (GCM,), {"lft": LFT_BAD_BYTES}, "Hard byte limit must be greater than soft one"),
    (PACKET, (GCM,), {"lft": LFT_ZERO_PKT}, "Soft/hard packet limits can't be 0"),
    (0, (GCM, N.nla(A.ENCAP, struct.pack("=HHH2x16s", 2, 4500, 4500, bytes(16)))), {"mode": 0},
     "Encapsulation is supported in packet offload mode only"),
    (PACKET, (GCM, N.nla(A.ENCAP, struct.pack("=HHH2x16s", 2, 4500, 4500, bytes(16)))), {},
     "Encapsulation is supported in transport mode only"),
    (0, (GCM,), {"sel": selector(proto=1, family=2)}, "Device does not support upper protocol other than TCP/UDP"),
])
def test_mlx5_refusals(k, nl, flags, attrs, kw, message):
    assert nl.errno_of(sa(k, "eth2", flags, *attrs, **kw)) == (-E.EINVAL, "mlx5_core: " + message)
    assert sad(nl) == []


@pytest.mark.parametrize("flags, attrs", [(0, (GCM,)), (PACKET, (GCM,)), (0, (GCM256,)),
                                          (PACKET | IN, (GCM,))])
def test_mlx5_accepts(k, nl, flags, attrs):
    kw = {"src": "198.51.100.2", "dst": "198.51.100.1"} if flags & IN else {}
    assert nl.errno_of(sa(k, "eth2", flags, *attrs, **kw)) == (0, None)
    assert offload_attr(sad(nl)[0]) == (ifindex(k, "eth2"), flags)


def test_mlx5_without_packet_capability(k, nl):
    k.netns("default").links.by_name("eth2").xfrmdev_ops.caps["packet"] = False
    assert nl.errno_of(sa(k, "eth2", PACKET)) == (-E.EINVAL, "mlx5_core: Packet offload is not supported")


# -- airoha-soe ---------------------------------------------------------------------------------

SOE_SRC, SOE_DST = "203.0.113.129", "203.0.113.130"


def soe(k, dev, oflags=PACKET, *attrs, **kw):
    kw.setdefault("src", SOE_SRC)
    kw.setdefault("dst", SOE_DST)
    return sa(k, dev, oflags, *attrs, **kw)


@pytest.mark.parametrize("flags, attrs, kw, err", [
    (0, (GCM,), {}, (-E.EOPNOTSUPP, None)),        # crypto: EOPNOTSUPP → software fallback (no error)
    (PACKET, (GCM,), {"mode": 0}, (-E.EOPNOTSUPP, "airoha_eth: SOE supports tunnel mode only")),
    (PACKET, (N.nla(A.ALG_AEAD, algo2("rfc4309(ccm(aes))", bytes(19), 128)),), {},
     (-E.EOPNOTSUPP, "airoha_eth: SOE supports rfc4106(gcm(aes)) AEAD only")),
    (PACKET, (GCM96,), {}, None),
    (PACKET, (CBC_SHA1,), {}, None),
    (PACKET, (CBC_SHA256,), {}, None),
    # byte/packet limits are programmed into the SA (fbfe8f9's airoha_soe_build_sa)
    (PACKET, (GCM,), {"lft": (1000, 2000, INF, INF, 0, 0, 0, 0)}, None),
    (PACKET, (GCM,), {"lft": (INF, INF, INF, INF, 0, 0, 10, 20)},
     (-E.EOPNOTSUPP, "airoha_eth: SOE does not support use-time lifetime limits")),
    (PACKET, (GCM,), {"flags": X.XFRM_STATE_NOECN},
     (-E.EOPNOTSUPP, "airoha_eth: SOE cannot disable ECN processing")),
])
def test_soe_rules(k, nl, flags, attrs, kw, err):
    r = nl.errno_of(soe(k, "soe2", flags, *attrs, **kw))
    if err is None:
        assert r == (0, None)
        assert offload_attr(sad(nl)[0]) == (ifindex(k, "soe2"), PACKET)
    elif err == (-E.EOPNOTSUPP, None):
        # crypto fell back to software; the driver's message rides on the success ACK
        assert r == (0, "airoha_eth: SOE supports XFRM packet offload only")
        assert offload_attr(sad(nl)[0]) is None
    else:
        assert r == err
        assert sad(nl) == []


def test_soe_v6_refused(k, nl):
    assert nl.errno_of(soe(k, "soe2", PACKET, src="2001:db8:3::1", dst="2001:db8:3::2")) == \
        (-E.EOPNOTSUPP, "airoha_eth: SOE bring-up supports IPv4 outer tunnel only")


def test_soe_engine_has_32_slots_shared_by_its_ports(k, nl):
    for i in range(32):
        assert nl.errno_of(soe(k, "soe0" if i % 2 else "soe2", PACKET, spi=0x100 + i)) == (0, None)
    assert nl.errno_of(soe(k, "soe1", PACKET, spi=0x999)) == (-E.ENOSPC, "Device failed to offload this state")
    assert len(sad(nl)) == 32


def test_soe_feature_change_busy_while_sas_exist(k, nl):
    from devices.features import set_features
    dev = k.netns("default").links.by_name("soe2")
    assert nl.errno_of(soe(k, "soe2")) == (0, None)
    assert set_features(dev, {"esp-hw-offload": False}) == (E.EBUSY, None)
    assert dev.features.active("esp-hw-offload")
    nl.k.deliver(nl.s, msg(M.FLUSHSA, bytes([0])))
    nl.recv_all()
    assert set_features(dev, {"esp-hw-offload": False}) == (0, None)
    # xfrm_dev_state_add looks at xfrmdev_ops, never at features, and the SOE's add path
    # has no feature check either: the state is accepted, and now pins the feature
    assert nl.errno_of(soe(k, "soe2", PACKET, spi=0x777)) == (0, None)
    assert set_features(dev, {"esp-hw-offload": True}) == (E.EBUSY, None)


def test_soe_feature_off_flushes_the_ports_policies(k, nl):
    from devices.features import set_features
    links = k.netns("default").links
    assert nl.errno_of(policy(k, "soe2", 1)) == (0, None)
    assert set_features(links.by_name("soe0"), {"esp-hw-offload": False}) == (0, None)
    assert len(k.netns("default").xfrm.policy_all) == 1       # another port: untouched
    assert set_features(links.by_name("soe2"), {"esp-hw-offload": False}) == (0, None)
    assert len(k.netns("default").xfrm.policy_all) == 0


def test_down_without_esp_hw_offload_flushes_nothing(k, nl):
    """``xfrm_dev_down`` acts only while NETIF_F_HW_ESP is on."""
    from devices.features import set_features
    from devices.netdev import IFF_UP, call_netdevice_notifiers
    dev = k.netns("default").links.by_name("soe2")
    assert set_features(dev, {"esp-hw-offload": False}) == (0, None)
    assert nl.errno_of(soe(k, "soe2", PACKET, spi=0x778)) == (0, None)
    dev.flags &= ~IFF_UP
    call_netdevice_notifiers("NETDEV_DOWN", dev)
    assert [offload_attr(m) for m in sad(nl)] == [(dev.ifindex, PACKET)]


# -- policies -----------------------------------------------------------------------------------

def policy(k, dev, dir, flags=PACKET, tmpl_reqid=1, prio=0):
    sel = struct.pack("=16s16sHHHHHBBB3xiI", bytes([198, 51, 100, 2]) + bytes(12),
                      bytes([198, 51, 100, 1]) + bytes(12), 0, 0, 0, 0, 2, 32, 32, 0, 0, 0)
    info = sel + struct.pack("=8Q4QIIBBBB4x", INF, INF, INF, INF, 0, 0, 0, 0, 0, 0, 0, 0,
                             prio, 0, dir, 0, 0, 0)
    tmpl = struct.pack("=16s4sB3xH2x16sIBBBxIII", bytes([198, 51, 100, 2]) + bytes(12), bytes(4),
                       50, 2, bytes([198, 51, 100, 1]) + bytes(12), tmpl_reqid, 1, 0, 0,
                       0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF)
    return msg(M.NEWPOLICY, info + N.nla(A.TMPL, tmpl) + off(k, dev, flags))


@pytest.mark.parametrize("dev, dir, flags, err", [
    ("eth2", 1, PACKET, (0, None)),
    ("eth2", 0, PACKET, (0, None)),
    ("eth2", 2, PACKET, (-E.EINVAL, "mlx5_core: Cannot offload forward policy")),
    ("eth2", 1, 0, (-E.EINVAL, "Unrecognized flags in offload request")),
    ("nsim0", 1, PACKET, (-E.EINVAL, "Policy offload is not supported")),
    ("soe2", 1, PACKET, (0, None)),
    ("soe2", 0, PACKET, (-E.EOPNOTSUPP, "airoha_eth: SOE requires software inbound XFRM policies")),
    ("soe2", 2, PACKET, (-E.EOPNOTSUPP, "airoha_eth: SOE offloads outbound policies only")),
])
def test_policy_offload(k, nl, dev, dir, flags, err):
    assert nl.errno_of(policy(k, dev, dir, flags)) == err
    spd = k.netns("default").xfrm.policy_all
    assert len(spd) == (1 if err[0] == 0 else 0)


# -- device lifecycle ---------------------------------------------------------------------------

def test_device_going_down_or_away_flushes_its_offloaded_states(k, nl):
    from devices.netdev import IFF_UP, call_netdevice_notifiers
    assert nl.errno_of(sa(k, "nsim0", 0)) == (0, None)
    assert nl.errno_of(sa(k, "eth2", 0, spi=0x300)) == (0, None)
    assert nl.errno_of(sa(k, "dummy0", 0, spi=0x400)) == (0, None)   # software
    links = k.netns("default").links
    nsim = links.by_name("nsim0")
    nsim.flags &= ~IFF_UP
    call_netdevice_notifiers("NETDEV_DOWN", nsim)
    assert len(sad(nl)) == 2
    assert nsim.xfrmdev_ops.count == 0
    links.unregister(links.by_name("eth2"))
    assert len(sad(nl)) == 1 and offload_attr(sad(nl)[0]) is None


# -- hardware counters: update_stats and the emulated traffic op ----------------------------

def traffic(k, dev, spi, packets, nbytes=0):
    from xfrmd import services
    return services.handle(k, "default", {"op": "offload_traffic", "dev": dev, "spi": spi,
                                          "packets": packets, "bytes": nbytes})


def counters(nl):
    """(curlft bytes, curlft packets, stats replay, stats integrity_failed) per SA dumped."""
    out = []
    for m in sad(nl):
        body = m[4][16:]
        b, p = struct.unpack_from("=QQ", body, 160)
        _win, replay, integ = struct.unpack_from("=III", body, 192)
        out.append((b, p, replay, integ))
    return out


def test_mlx5_packet_offload_counters_come_from_the_hardware(k, nl):
    assert nl.errno_of(sa(k, "eth2", PACKET, spi=0x77)) == (0, None)
    assert counters(nl) == [(0, 0, 0, 0)]
    # 5 frames of 700 bytes on the wire: the payload estimate drops 14 + 20 header bytes each
    assert traffic(k, "eth2", 0x77, 5, 3500) == {"errno": 0}
    assert counters(nl) == [(3500 - 5 * 34, 5, 0, 0)]
    # read again without traffic: the delta since the last read is zero, nothing doubles
    assert counters(nl) == [(3330, 5, 0, 0)]
    assert traffic(k, "eth2", 0x77, 1, 134) == {"errno": 0}
    assert counters(nl) == [(3430, 6, 0, 0)]


def test_mlx5_rx_drops_land_in_xfrm_stats(k, nl):
    assert nl.errno_of(sa(k, "eth2", PACKET | IN, spi=0x78, src="198.51.100.2",
                          dst="198.51.100.1")) == (0, None)
    dev = k.netns("default").links.by_name("eth2")
    from xfrmd.xfrm.sadb import sad as sad_of
    (x,) = sad_of(k.netns("default").xfrm).all.values()
    dev.xfrmdev_ops.hw_traffic(dev, x, 10, 1340, replay_drops=2, auth_drops=3)
    assert counters(nl) == [(1000, 10, 2, 3)]        # drops are not good packets


def test_mlx5_crypto_rx_still_reports_integrity_failures(k, nl):
    assert nl.errno_of(sa(k, "eth2", IN, spi=0x7d, src="198.51.100.2",
                          dst="198.51.100.1")) == (0, None)
    dev = k.netns("default").links.by_name("eth2")
    from xfrmd.xfrm.sadb import sad as sad_of
    (x,) = sad_of(k.netns("default").xfrm).all.values()
    dev.xfrmdev_ops.hw_traffic(dev, x, 10, 1340, replay_drops=2, auth_drops=3)
    assert counters(nl) == [(0, 0, 0, 3)]


def test_mlx5_crypto_offload_keeps_software_counters(k, nl):
    assert nl.errno_of(sa(k, "eth2", 0, spi=0x79)) == (0, None)
    assert traffic(k, "eth2", 0x79, 5, 700) == {"errno": 0}
    assert counters(nl) == [(0, 0, 0, 0)]       # mlx5e_xfrm_update_stats: packet offload only


def test_traffic_op_refusals(k, nl):
    assert nl.errno_of(sa(k, "nsim0", IN, spi=0x7a, src="198.51.100.2",
                          dst="198.51.100.1")) == (0, None)
    assert traffic(k, "nsim0", 0x7a, 1) == {
        "errno": E.EOPNOTSUPP, "error": "xfrmd: netdevsim counts transmitted packets only: "
        "this SA is offloaded dir in; send through its dir out partner (SA 0x7a reqid 1 on "
        "nsim0)"}
    assert traffic(k, "nsim0", 0x7b, 1)["errno"] == E.ENOENT
    assert traffic(k, "lo", 0x7a, 1)["errno"] == E.ENODEV
    assert traffic(k, "nope", 0x7a, 1)["errno"] == E.ENODEV


def test_netdevsim_tx_counter_counts_transmitted_packets(k, nl):
    assert nl.errno_of(sa(k, "nsim0", 0, spi=0x7c)) == (0, None)
    assert traffic(k, "nsim0", 0x7c, 4) == {"errno": 0}
    from xfrmd import vfs
    import devices.services  # noqa: F401
    err, text = vfs.read_file(k, k.netns("default"),
                              "/sys/kernel/debug/netdevsim/netdevsim0/ports/0/ipsec")
    assert text.splitlines()[0] == "SA count=1 tx=4"
    # crypto offload: the stack keeps lifetimes itself, netdevsim has no update_stats
    assert counters(nl) == [(0, 0, 0, 0)]


def test_mlx5_policy_without_template_reads_reqid_zero(k, nl):
    """``mlx5e_xfrm_validate_policy`` reads xfrm_vec[0].reqid even with no template: 0."""
    sel = struct.pack("=16s16sHHHHHBBB3xiI", bytes(16), bytes(16), 0, 0, 0, 0, 2, 0, 0, 0, 0, 0)
    info = sel + struct.pack("=8Q4QIIBBBB4x", INF, INF, INF, INF, 0, 0, 0, 0, 0, 0, 0, 0,
                             0, 0, 1, 0, 0, 0)
    assert nl.errno_of(msg(M.NEWPOLICY, info + off(k, "eth2", PACKET))) == (
        -E.EINVAL, "mlx5_core: Unsupported policy with reqid 0 without at least one of upper "
                   "protocol or ip addr(s) different than 0")
    assert len(k.netns("default").xfrm.policy_all) == 0


@pytest.mark.parametrize("dir, flags", [(0, IN | PACKET), (1, PACKET)])
def test_offloaded_policy_reads_back_its_device(k, nl, dir, flags):
    """``copy_user_offload`` on xp->xdo: INBOUND for an in policy, PACKET always."""
    assert nl.errno_of(policy(k, "eth2", dir)) == (0, None)
    nl.k.deliver(nl.s, msg(M.GETPOLICY, b"", N.NLM_F_REQUEST | N.NLM_F_DUMP))
    pols = [m for d in nl.recv_all() for m in messages(d) if m[0] == M.NEWPOLICY]
    assert len(pols) == 1
    a = attrs_of(pols[0][4], 168)       # xfrm_userpolicy_info
    assert a[A.OFFLOAD_DEV] == struct.pack("=iB3x", ifindex(k, "eth2"), flags)


def test_acquire_under_a_packet_offloaded_policy_binds_the_larval_state(k, nl):
    """``xfrm_state_find``: the larval state takes the policy's device with
    XFRM_DEV_OFFLOAD_FLAG_ACQ; mlx5e_xfrm_add_state accepts it without programming it."""
    from types import SimpleNamespace
    from xfrmd.xfrm import offload
    assert nl.errno_of(policy(k, "eth2", 1)) == (0, None)
    (pol,) = k.netns("default").xfrm.policy_all.values()
    mlx5 = k.netns("default").links.by_name("eth2").xfrmdev_ops
    x = SimpleNamespace(xso=None)
    assert offload.xfrm_dev_state_acquire(x, pol) == 0
    assert (x.xso.dev.name, x.xso.dir, x.xso.type, x.xso.flags) == (
        "eth2", offload.XFRM_DEV_OFFLOAD_OUT, offload.XFRM_DEV_OFFLOAD_PACKET,
        offload.XFRM_DEV_OFFLOAD_FLAG_ACQ)
    assert mlx5.table(pol.xdo.dev) == []                # nothing in the hardware SADB
    offload.xfrm_dev_state_acquire_abort(x)
    assert x.xso is None


def test_acquire_under_a_software_policy_leaves_the_state_alone(k, nl):
    from types import SimpleNamespace
    from xfrmd.xfrm import offload
    x = SimpleNamespace(xso=None)
    assert offload.xfrm_dev_state_acquire(x, SimpleNamespace(xdo=None)) == 0
    assert x.xso is None


def test_mlx5_eswitch_mode_change_in_progress(k, nl):
    """mlx5e_xfrm_add_state / add_policy: mlx5_eswitch_block_mode fails → EBUSY with no
    driver message, so the core's weak one shows."""
    k.netns("default").links.by_name("eth2").xfrmdev_ops.caps["eswitch_mode_change"] = True
    assert nl.errno_of(sa(k, "eth2", PACKET)) == (-E.EBUSY, "Device failed to offload this state")
    assert nl.errno_of(policy(k, "eth2", 1)) == (-E.EBUSY, "Device failed to offload this policy")
    assert sad(nl) == []


@pytest.mark.parametrize("mode, err", [
    (1, (-E.EINVAL, "mlx5_core: Packet offload tunnel mode is disabled due to encap settings")),
    (0, (0, None))])
def test_mlx5_eswitch_encap_blocks_packet_tunnel_mode(k, nl, mode, err):
    k.netns("default").links.by_name("eth2").xfrmdev_ops.caps["eswitch_encap"] = True
    assert nl.errno_of(sa(k, "eth2", PACKET, mode=mode)) == err


def test_unknown_ifindex_route_lookup_follows_the_rules(k, nl):
    """The fallback route lookup is the full one (``__xfrm_dst_lookup``): a rule sending
    198.18.0.0/24 to table 220, whose route leaves through nsim0, decides the device."""
    import struct
    from netlink_codec import netlink as N
    from netlink_codec.netlink import encode_msg, nla, nla_u32
    s = k.socket(N.NETLINK_ROUTE)
    k.bind(s)
    net = bytes([198, 18, 0, 0])
    # fib_rule_hdr: family, dst_len, src_len, tos, table, res1, res2, action (FR_ACT_TO_TBL)
    rule = struct.pack("=BBBBBBBBI", 2, 24, 0, 0, 0, 0, 0, 1, 0) + nla(1, net) \
        + nla_u32(15, 220) + nla_u32(6, 100)             # FRA_DST, FRA_TABLE, FRA_PRIORITY
    route = struct.pack("=BBBBBBBBI", 2, 24, 0, 0, 252, 4, 253, 1, 0) + nla(1, net) \
        + nla_u32(15, 220) + nla_u32(4, ifindex(k, "nsim0"))   # RTA_DST, RTA_TABLE, RTA_OIF
    for t, body in ((32, rule), (24, route)):
        k.deliver(s, encode_msg(t, N.NLM_F_REQUEST | N.NLM_F_ACK | N.NLM_F_CREATE, 1, 0, body))
        ack = k.recv(s)
        assert struct.unpack_from("=i", ack, 16)[0] == 0
    assert nl.errno_of(sa(k, 9999, 0, src="203.0.113.1", dst="198.18.0.2")) == (0, None)
    assert offload_attr(sad(nl)[0]) == (ifindex(k, "nsim0"), 0)
